"""Billing: prices, holds, the ledger, quotes and x402 top-ups (docs/llms-full.md, "Billing")."""
