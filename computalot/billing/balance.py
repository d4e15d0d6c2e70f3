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

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.store.models import Hold, LedgerEntry

OPEN = "open"
SETTLED = "settled"
MICRO = Decimal("0.000001")


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


LEDGER_SUM = (
    select(func.coalesce(func.sum(LedgerEntry.amount_usd), 0))
    .where(LedgerEntry.account_id == bindparam("account"))
    .scalar_subquery()
)
HELD_SUM = (
    select(func.coalesce(func.sum(Hold.amount_usd), 0))
    .where(Hold.account_id == bindparam("account"), Hold.status == OPEN)
    .scalar_subquery()
)
#: Both sums in one statement (a submit reads them on its hot path).
BALANCE_QUERY = select(LEDGER_SUM, HELD_SUM)


async def balance(db: AsyncSession, account_id: str) -> Balance:
    ledger, held = (await db.execute(BALANCE_QUERY, {"account": account_id})).one()
    return Balance(_money(ledger), _money(held))


def _money(value: object) -> Decimal:
    """A sum as the backend returns it (PostgreSQL: Decimal; SQLite: a float or an int),
    to the ledger's 6 places."""
    return Decimal(str(value)).quantize(MICRO)


async def available_usd(db: AsyncSession, account_id: str) -> Decimal:
    """Ledger minus open holds."""
    return (await balance(db, account_id)).available_usd
