"""The caller's own account, and the rotation of its callback secret."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter

from computalot.schemas.accounts import account_out
from computalot.store.accounts import get_account
from serve_app.deps import Caller, Db, Writer
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1", tags=["account"], route_class=StrictJSONRoute)


@router.get("/account")
async def read_account(caller: Caller, db: Db) -> dict[str, Any]:
    return account_out(await get_account(db, caller.account_id))


@router.post("/account/callback_secret/rotate")
async def rotate_callback_secret(caller: Writer, db: Db) -> dict[str, Any]:
    """A new ``callback_secret``; the old one stops signing at once (docs/llms-full.md,
    "Callbacks"): a callback is signed with the secret current when it is sent, retries too."""
    account = await get_account(db, caller.account_id)
    account.callback_secret = secrets.token_hex(32)
    await db.commit()
    return account_out(account)
