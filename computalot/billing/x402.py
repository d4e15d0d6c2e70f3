"""x402 v2 payment requirements and payment headers (docs/llms-full.md, "Billing").

What a stock x402 client reads from a 402 answer (the ``PAYMENT-REQUIRED`` header: base64 JSON
``{"x402Version": 2, "resource", "accepts": [...]}``) and what it sends back
(``PAYMENT-SIGNATURE``, or ``X-PAYMENT``: base64 JSON ``{"x402Version", "accepted", "payload":
{"authorization", "signature"}}``). Only the ``exact`` scheme with an EIP-3009
``transferWithAuthorization`` is offered: USDC on Base (Sepolia by default), configured by the
``COMPUTALOT_X402_*`` settings. The server side needs no x402 package, only these shapes.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import Any

from computalot.settings import Settings

X402_VERSION = 2
SCHEME = "exact"
#: The request headers that may carry a payment (v2 first, the v1 name too).
PAYMENT_HEADERS = ("PAYMENT-SIGNATURE", "X-PAYMENT")
PAYMENT_RESPONSE_HEADER = "PAYMENT-RESPONSE"
#: A payment header longer than this is not an x402 payload (ours are about 1.5 KB).
MAX_HEADER_CHARS = 16 * 1024


class PaymentHeaderError(ValueError):
    """The payment header is not base64 JSON of an x402 payload; ``reason`` is x402's code."""

    def __init__(self, message: str, reason: str = "invalid_payload") -> None:
        super().__init__(message)
        self.reason = reason


def to_atomic(amount_usd: Decimal, decimals: int) -> str:
    """USD as the asset's smallest unit (USDC has 6 decimals: $1.25 -> "1250000"); rounded
    up, so a quote never asks for less than its price."""
    scaled = amount_usd.scaleb(decimals)
    whole = int(scaled.to_integral_value(rounding="ROUND_CEILING"))
    return str(whole)


def from_atomic(value: int, decimals: int) -> Decimal:
    """The asset's smallest unit as USD (6 places at most, the ledger's precision)."""
    return (Decimal(value).scaleb(-decimals)).quantize(Decimal("0.000001"), rounding="ROUND_FLOOR")


def pay_url(settings: Settings, quote_id: str) -> str:
    return f"{settings.resolved_public_url}/api/v1/account/quotes/{quote_id}/pay/x402"


def requirements(
    settings: Settings,
    *,
    quote_id: str,
    amount_atomic: str,
    network: str,
    asset: str,
    pay_to: str,
    description: str,
) -> dict[str, Any]:
    """The x402 v2 ``PaymentRequired`` object for one quote (``error`` is added on refusals).

    ``extra`` carries the token's EIP-712 domain (``name``, ``version``) the client signs
    under, and ``quoteId``, which the client copies back in ``accepted``: that is how a payment
    sent to the route that answered 402 finds its quote."""
    return {
        "x402Version": X402_VERSION,
        "resource": {
            "url": pay_url(settings, quote_id),
            "description": description,
            "mimeType": "application/json",
        },
        "accepts": [
            {
                "scheme": SCHEME,
                "network": network,
                "asset": asset,
                "amount": amount_atomic,
                "payTo": pay_to,
                "maxTimeoutSeconds": settings.x402_max_timeout_s,
                "extra": {
                    "name": settings.x402_asset_name,
                    "version": settings.x402_asset_version,
                    "quoteId": quote_id,
                },
            }
        ],
    }


def payment_header(headers: Any) -> tuple[str, str] | None:
    """``(name, value)`` of the payment header a request carries, or ``None``."""
    for name in PAYMENT_HEADERS:
        value = headers.get(name)
        if value:
            return name, value
    return None


def decode_payment(value: str) -> dict[str, Any]:
    """The x402 payment payload in a ``PAYMENT-SIGNATURE``/``X-PAYMENT`` value.

    Checks the shape only (the facilitator checks the meaning): a v2 payload with
    ``accepted`` and an EIP-3009 ``payload.authorization`` and ``payload.signature``."""
    if len(value) > MAX_HEADER_CHARS:
        raise PaymentHeaderError("the payment header is too long")
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
        data = json.loads(raw)
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise PaymentHeaderError("the payment header is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise PaymentHeaderError("the payment payload is not a JSON object")
    if data.get("x402Version") != X402_VERSION:
        raise PaymentHeaderError(
            f"x402Version must be {X402_VERSION}", reason="invalid_x402_version"
        )
    accepted = data.get("accepted")
    payload = data.get("payload")
    if not isinstance(accepted, dict) or not isinstance(payload, dict):
        raise PaymentHeaderError("the payment payload needs 'accepted' and 'payload' objects")
    auth = payload.get("authorization")
    if not isinstance(auth, dict) or not isinstance(payload.get("signature"), str):
        raise PaymentHeaderError(
            "payload needs an EIP-3009 'authorization' and a 'signature'",
            reason="unsupported_scheme",
        )
    for key in ("from", "to", "value", "validAfter", "validBefore", "nonce"):
        if not isinstance(auth.get(key), str):
            raise PaymentHeaderError(f"payload.authorization.{key} must be a string")
    return data


def quote_id_of(payment: dict[str, Any]) -> str | None:
    """The quote a payment was made for (``accepted.extra.quoteId``)."""
    extra = payment.get("accepted", {}).get("extra")
    quote_id = extra.get("quoteId") if isinstance(extra, dict) else None
    return quote_id if isinstance(quote_id, str) else None


def encode_settlement(settlement: dict[str, Any]) -> str:
    """The ``PAYMENT-RESPONSE`` header value (base64 JSON of x402's ``SettleResponse``)."""
    return base64.b64encode(json.dumps(settlement, separators=(",", ":")).encode()).decode()
