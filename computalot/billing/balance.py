"""An account's money: the ledger's sum, what open holds set aside, and what is left
(docs/llms-full.md, "Billing").

``ledger_balance_usd`` is the sum of every ledger entry (grants and credits positive, debits
negative); ``held_usd`` the sum of the account's open holds; ``available_usd`` the difference,
which a submit's hold may not take below zero. Both sums read an index each
(``ix_ledger_account_amount``, ``ix_holds_account_status``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.store.models import Hold, LedgerEntry

OPEN = "open"
SETTLED = "settled"


@dataclass(frozen=True)
class Balance:
    ledger_usd: Decimal
    held_usd: Decimal

    @property
    def available_usd(self) -> Decimal:
        return self.ledger_usd - self.held_usd

    def out(self) -> dict[str, Any]:
        """``GET /account/balance``: JSON numbers."""
        return {
            "ledger_balance_usd": float(self.ledger_usd),
            "held_usd": float(self.held_usd),
            "available_usd": float(self.available_usd),
        }


async def ledger_usd(db: AsyncSession, account_id: str) -> Decimal:
    query = select(func.coalesce(func.sum(LedgerEntry.amount_usd), 0)).where(
        LedgerEntry.account_id == account_id
    )
    return Decimal((await db.execute(query)).scalar_one())


async def held_usd(db: AsyncSession, account_id: str) -> Decimal:
    query = select(func.coalesce(func.sum(Hold.amount_usd), 0)).where(
        Hold.account_id == account_id, Hold.status == OPEN
    )
    return Decimal((await db.execute(query)).scalar_one())


async def balance(db: AsyncSession, account_id: str) -> Balance:
    return Balance(await ledger_usd(db, account_id), await held_usd(db, account_id))


async def available_usd(db: AsyncSession, account_id: str) -> Decimal:
    """Ledger minus open holds."""
    return (await balance(db, account_id)).available_usd
