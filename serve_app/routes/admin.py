"""Admin routes: accounts, keys, wallet whitelist, credit grants, feedback (docs/llms-full.md, "Auth")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from computalot.auth.siwe import chain_id, normalize_address
from computalot.schemas.accounts import (
    CreateAccount,
    CreateKey,
    Grant,
    WhitelistWallet,
    account_out,
    key_out,
)
from computalot.store import accounts as store
from computalot.store.feedback import feedback_out, list_feedback
from computalot.timeutil import iso
from serve_app.deps import Admin, Db
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], route_class=StrictJSONRoute)


@router.get("/accounts")
async def admin_list_accounts(_admin: Admin, db: Db) -> dict[str, Any]:
    return {"accounts": [account_out(a) for a in await store.list_accounts(db)]}


@router.post("/accounts", status_code=201)
async def admin_create_account(body: CreateAccount, _admin: Admin, db: Db) -> dict[str, Any]:
    account = await store.create_account(db, name=body.name, role=body.role)
    key, token = await store.create_key(db, account.id, name="initial")
    if body.credit_usd:
        await store.grant_credit(db, account.id, body.credit_usd, "initial credit")
    await db.commit()
    return {"account": account_out(account), "key": key_out(key, token)}


@router.get("/accounts/{account_id}/keys")
async def admin_list_keys(account_id: str, _admin: Admin, db: Db) -> dict[str, Any]:
    await store.get_account(db, account_id)
    return {"keys": [key_out(k) for k in await store.list_keys(db, account_id)]}


@router.post("/accounts/{account_id}/keys", status_code=201)
async def admin_create_key(
    account_id: str, _admin: Admin, db: Db, body: CreateKey | None = None
) -> dict[str, Any]:
    key, token = await store.create_key(db, account_id, name=body.name if body else None)
    await db.commit()
    return {"key": key_out(key, token)}


@router.post("/keys/{key_id}/revoke")
async def admin_revoke_key(key_id: str, request: Request, _admin: Admin, db: Db) -> dict[str, Any]:
    key = await store.revoke_key(db, key_id)
    await db.commit()
    # This replica refuses it at once; the others within a second (serve_app.auth_cache).
    request.app.state.auth_cache.forget_credential(key.id)
    return {"key": key_out(key)}


@router.post("/wallets", status_code=201)
async def admin_whitelist_wallet(body: WhitelistWallet, _admin: Admin, db: Db) -> dict[str, Any]:
    chain_id(body.chain)
    entry = await store.whitelist_wallet(
        db,
        wallet_address=normalize_address(body.wallet_address),
        chain=body.chain,
        role=body.role,
        name=body.name,
    )
    await db.commit()
    return {
        "wallet": {
            "wallet_address": entry.wallet_address,
            "chain": entry.chain,
            "role": entry.role,
            "name": entry.name,
            "created_at": iso(entry.created_at),
        }
    }


@router.post("/accounts/{account_id}/grants", status_code=201)
async def admin_grant(account_id: str, body: Grant, _admin: Admin, db: Db) -> dict[str, Any]:
    entry = await store.grant_credit(db, account_id, body.amount_usd, body.memo)
    await db.commit()
    return {
        "entry": {
            "id": entry.id,
            "kind": entry.kind,
            "amount_usd": float(entry.amount_usd),
            "account_id": entry.account_id,
            "memo": entry.memo,
            "created_at": iso(entry.created_at),
        }
    }


@router.get("/feedback")
async def admin_list_feedback(
    _admin: Admin, db: Db, limit: int = Query(default=100, ge=1, le=1000)
) -> dict[str, Any]:
    return {"feedback": [feedback_out(f) for f in await list_feedback(db, limit)]}
