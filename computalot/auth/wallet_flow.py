"""Wallet sign-in: challenge → personal_sign → verify → ``fls_`` session (docs/llms-full.md, "Auth").

A challenge is single-use (consumed with a compare-and-set on ``used_at``), expires, and only
admin-whitelisted wallets get a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlparse

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.auth import siwe
from computalot.errors import Forbidden, Unauthorized
from computalot.ids import new_id
from computalot.store.accounts import account_for_wallet, create_account, create_wallet_session
from computalot.store.models import Account, WalletChallenge, WalletSession, WalletWhitelist
from computalot.timeutil import utcnow


@dataclass
class VerifiedSession:
    token: str
    session: WalletSession
    account: Account


def siwe_domain(public_url: str) -> str:
    parsed = urlparse(public_url)
    return parsed.netloc or "localhost"


async def create_challenge(
    db: AsyncSession, *, wallet_address: str, chain: str, public_url: str, ttl_s: int
) -> WalletChallenge:
    address = siwe.normalize_address(wallet_address)
    chain = chain.strip().lower()
    siwe.chain_id(chain)
    now = utcnow()
    nonce = siwe.new_nonce()
    message = siwe.build_message(
        domain=siwe_domain(public_url),
        uri=public_url,
        address=address,
        chain=chain,
        nonce=nonce,
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    challenge = WalletChallenge(
        id=new_id("wch"),
        wallet_address=address,
        chain=chain,
        nonce=nonce,
        message=message,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    db.add(challenge)
    await db.flush()
    return challenge


async def verify_challenge(
    db: AsyncSession,
    *,
    challenge_id: str,
    wallet_address: str,
    signature: str,
    public_url: str,
    session_ttl_s: int,
) -> VerifiedSession:
    """A wallet session for a signed challenge: the challenge is consumed (single use), then
    only a whitelisted wallet gets an account (made on its first sign-in) and a session."""
    address = siwe.normalize_address(wallet_address)
    challenge = await _consume(db, challenge_id, address, signature, public_url)
    entry = await db.get(WalletWhitelist, (challenge.chain, address))
    if entry is None:
        await db.commit()  # the challenge stays consumed
        raise Forbidden(
            "wallet is not whitelisted",
            recommended_action="ask an admin to whitelist this wallet (beta access is admin-granted)",
        )
    account = await account_for_wallet(db, wallet_address=address, chain=challenge.chain)
    if account is None:
        account = await create_account(
            db,
            name=entry.name or f"wallet {address[:10]}",
            role=entry.role,
            wallet_address=address,
            chain=challenge.chain,
        )
    sess, token = await create_wallet_session(db, account.id, session_ttl_s)
    return VerifiedSession(token=token, session=sess, account=account)


def _used() -> Unauthorized:
    return Unauthorized("challenge was already used", recommended_action="request a new challenge")


async def _consume(
    db: AsyncSession, challenge_id: str, address: str, signature: str, public_url: str
) -> WalletChallenge:
    """The wallet's challenge, checked (unused, unexpired, signed by ``address`` for this
    domain) and marked used with a compare-and-set, so two verifies never both succeed."""
    challenge = await db.get(WalletChallenge, challenge_id)
    if challenge is None or challenge.wallet_address != address:
        raise Unauthorized(
            "unknown challenge for this wallet", recommended_action="request a new challenge"
        )
    now = utcnow()
    if challenge.used_at is not None:
        raise _used()
    if challenge.expires_at <= now:
        raise Unauthorized("challenge expired", recommended_action="request a new challenge")
    siwe.verify_signed_message(
        message=challenge.message,
        signature=signature,
        expected_address=address,
        expected_domain=siwe_domain(public_url),
        expected_chain_id=siwe.chain_id(challenge.chain),
        expected_nonce=challenge.nonce,
        now=now,
    )
    consumed = await db.execute(
        update(WalletChallenge)
        .where(WalletChallenge.id == challenge.id, WalletChallenge.used_at.is_(None))
        .values(used_at=now)
    )
    if consumed.rowcount != 1:  # type: ignore[attr-defined]
        raise _used()
    return challenge
