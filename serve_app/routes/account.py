"""The caller's own account, and the rotation of its callback secret."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request

from computalot.errors import NotFound
from computalot.schemas.accounts import account_out
from computalot.store import hot_reads
from computalot.store.accounts import get_account
from serve_app.deps import Caller, Db, Writer, get_store
from serve_app.responses import FastJSONResponse
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1", tags=["account"], route_class=StrictJSONRoute)


@router.get("/account")
async def read_account(caller: Caller, request: Request) -> FastJSONResponse:
    """One Core read of the account's columns (``store.hot_reads``), no ORM object."""
    account = await hot_reads.run(get_store(request).engine, hot_reads.account, caller.account_id)
    if account is None:
        raise NotFound(f"account {caller.account_id} not found")
    return FastJSONResponse(account_out(account))  # type: ignore[arg-type]


@router.post("/account/callback_secret/rotate")
async def rotate_callback_secret(caller: Writer, db: Db) -> dict[str, Any]:
    """A new ``callback_secret``; the old one stops signing at once (docs/llms-full.md,
    "Callbacks"): a callback is signed with the secret current when it is sent, retries too."""
    account = await get_account(db, caller.account_id)
    account.callback_secret = secrets.token_hex(32)
    await db.commit()
    return account_out(account)
