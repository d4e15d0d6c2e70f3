"""The caller's own account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from computalot.schemas.accounts import account_out
from computalot.store.accounts import get_account
from serve_app.deps import Caller, Db
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1", tags=["account"], route_class=StrictJSONRoute)


@router.get("/account")
async def read_account(caller: Caller, db: Db) -> dict[str, Any]:
    return account_out(await get_account(db, caller.account_id))
