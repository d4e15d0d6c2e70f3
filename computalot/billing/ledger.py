"""The account's ledger and holds as pages, newest first (docs/llms-full.md, "Billing").

Ledger entries: ``grant`` (an admin's credit, the first admin's starting credit), ``credit``
(a paid top-up) and ``debit`` (a job's settled usage, one per job that used anything); amounts
are signed, debits negative, so the balance is their sum. Both lists page with the one cursor
codec (``computalot.cursors``) on (created_at, id).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.billing.balance import OPEN, SETTLED
from computalot.errors import field_error
from computalot.store.models import Hold, LedgerEntry
from computalot.store.paging import newest_first
from computalot.timeutil import iso

HOLD_STATUSES = (OPEN, SETTLED)


async def list_ledger(
    db: AsyncSession, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[LedgerEntry], str | None]:
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    return await newest_first(db, LedgerEntry, query, limit=limit, cursor=cursor)


async def list_holds(
    db: AsyncSession, account_id: str, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[Hold], str | None]:
    query = select(Hold).where(Hold.account_id == account_id)
    if status:
        if status not in HOLD_STATUSES:
            raise field_error(["status"], f"must be one of {', '.join(HOLD_STATUSES)}")
        query = query.where(Hold.status == status)
    return await newest_first(db, Hold, query, limit=limit, cursor=cursor)


def entry_out(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount_usd": float(entry.amount_usd),
        "job_id": entry.job_id,
        "created_at": iso(entry.created_at),
        "memo": entry.memo,
    }


def hold_out(hold: Hold) -> dict[str, Any]:
    """A hold: ``amount_usd`` set aside; once ``settled``, ``settled_usd`` charged (its ledger
    entry ``ledger_entry_id``) and ``released_usd`` given back."""
    settled = hold.settled_usd
    return {
        "id": hold.id,
        "job_id": hold.job_id,
        "status": hold.status,
        "amount_usd": float(hold.amount_usd),
        "usd_per_hour": float(hold.usd_per_hour),
        "billed_s": hold.billed_s,
        "settled_usd": None if settled is None else float(settled),
        "released_usd": None if settled is None else float(hold.amount_usd - settled),
        "ledger_entry_id": hold.ledger_id,
        "created_at": iso(hold.created_at),
        "settled_at": iso(hold.settled_at) if hold.settled_at else None,
    }
