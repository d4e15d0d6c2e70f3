"""Accounts, API keys, wallet sessions and the wallet whitelist.

Tokens are stored only as sha256 hashes; lookups go by hash (an index hit), and the final
comparison is constant-time.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.errors import NotFound, field_error
from computalot.ids import hash_token, new_id, new_secret_token, tokens_equal
from computalot.store.models import Account, ApiKey, LedgerEntry, WalletSession, WalletWhitelist
from computalot.timeutil import utcnow

CredentialT = TypeVar("CredentialT", ApiKey, WalletSession)

ROLES = ("admin", "member", "viewer")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise field_error(["role"], f"must be one of {', '.join(ROLES)}")
    return role


async def create_account(
    session: AsyncSession,
    *,
    name: str,
    role: str = "member",
    wallet_address: str | None = None,
    chain: str | None = None,
) -> Account:
    account = Account(
        id=new_id("acct"),
        name=name,
        role=check_role(role),
        wallet_address=wallet_address,
        chain=chain,
        callback_secret=secrets.token_hex(32),
        created_at=utcnow(),
    )
    session.add(account)
    await session.flush()
    return account


async def get_account(session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def list_accounts(session: AsyncSession) -> list[Account]:
    rows = await session.execute(select(Account).order_by(Account.created_at))
    return list(rows.scalars())


async def create_key(
    session: AsyncSession, account_id: str, name: str | None = None
) -> tuple[ApiKey, str]:
    """Issue an API key; the plain token is returned once and never stored."""
    await get_account(session, account_id)
    token = new_secret_token("flk")
    key = ApiKey(
        id=new_id("key"),
        account_id=account_id,
        name=name,
        token_hash=hash_token(token),
        prefix=token[:8],
        created_at=utcnow(),
    )
    session.add(key)
    await session.flush()
    return key, token


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    await session.flush()
    return key


async def list_keys(session: AsyncSession, account_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if account_id:
        query = query.where(ApiKey.account_id == account_id)
    return list((await session.execute(query)).scalars())


async def find_credential(
    session: AsyncSession, model: type[CredentialT], digest: str
) -> tuple[CredentialT, Account] | None:
    """The credential with this token hash and its account, in one query (one per request);
    whether it still proves anything is ``auth.principal``'s to judge."""
    row = (
        await session.execute(
            select(model, Account)
            .join(Account, Account.id == model.account_id)
            .where(model.token_hash == digest)
        )
    ).first()
    if row is None or not tokens_equal(row[0].token_hash, digest):
        return None
    return row[0], row[1]


async def create_wallet_session(
    session: AsyncSession, account_id: str, ttl_s: int
) -> tuple[WalletSession, str]:
    token = new_secret_token("fls")
    now = utcnow()
    sess = WalletSession(
        id=new_id("wss"),
        account_id=account_id,
        token_hash=hash_token(token),
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(sess)
    await session.flush()
    return sess, token


async def whitelist_wallet(
    session: AsyncSession,
    *,
    wallet_address: str,
    chain: str,
    role: str = "member",
    name: str | None = None,
) -> WalletWhitelist:
    existing = await session.get(WalletWhitelist, (chain, wallet_address))
    if existing is not None:
        existing.role = check_role(role)
        existing.name = name or existing.name
        await session.flush()
        return existing
    entry = WalletWhitelist(
        chain=chain,
        wallet_address=wallet_address,
        role=check_role(role),
        name=name,
        created_at=utcnow(),
    )
    session.add(entry)
    await session.flush()
    return entry


async def account_for_wallet(
    session: AsyncSession, *, wallet_address: str, chain: str
) -> Account | None:
    query = select(Account).where(Account.wallet_address == wallet_address, Account.chain == chain)
    return (await session.execute(query)).scalar_one_or_none()


async def grant_credit(
    session: AsyncSession, account_id: str, amount_usd: Decimal, memo: str | None = None
) -> LedgerEntry:
    check_usd(amount_usd, "amount_usd")
    await get_account(session, account_id)
    entry = LedgerEntry(
        id=new_id("led"),
        account_id=account_id,
        kind="grant",
        amount_usd=amount_usd,
        memo=memo or "admin grant",
        created_at=utcnow(),
    )
    session.add(entry)
    await session.flush()
    return entry


MAX_USD = Decimal("1000000000000")


def check_usd(amount: Decimal, field: str) -> Decimal:
    """Money fits the ledger's Numeric(18, 6): positive, below 10^12, at most 6 decimals."""
    if not amount.is_finite() or amount <= 0:
        raise field_error([field], "must be greater than 0")
    if amount >= MAX_USD:
        raise field_error([field], f"must be less than {MAX_USD}")
    if amount != amount.quantize(Decimal("0.000001")):
        raise field_error([field], "at most 6 decimal places")
    return amount
