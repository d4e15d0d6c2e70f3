"""The caller's money: balance, holds and ledger (docs/llms-full.md, "Billing")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from computalot.billing.balance import balance
from computalot.billing.ledger import entry_out, hold_out, list_holds, list_ledger
from serve_app.deps import Caller, Db
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/account", tags=["billing"], route_class=StrictJSONRoute)


@router.get("/balance")
async def read_balance(caller: Caller, db: Db) -> dict[str, Any]:
    """``ledger_balance_usd`` (sum of the ledger), ``held_usd`` (open holds) and
    ``available_usd`` (their difference: what new holds may take)."""
    return (await balance(db, caller.account_id)).out()


@router.get("/holds")
async def read_holds(
    caller: Caller,
    db: Db,
    status: str | None = Query(default=None, max_length=16),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None),
) -> dict[str, Any]:
    holds, following = await list_holds(
        db, caller.account_id, status=status, limit=limit, cursor=cursor
    )
    return {"holds": [hold_out(h) for h in holds], "next_cursor": following}


@router.get("/ledger")
async def read_ledger(
    caller: Caller,
    db: Db,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None),
) -> dict[str, Any]:
    entries, following = await list_ledger(db, caller.account_id, limit=limit, cursor=cursor)
    return {"entries": [entry_out(e) for e in entries], "next_cursor": following}
