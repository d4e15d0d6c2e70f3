"""Who is calling: a bearer token resolved to an account and the credential that proved it.

The store finds a credential by its token's hash (``store.accounts.find_credential``); deciding
whether that credential still proves anything (revoked, expired, the wrong kind) is this
module's job (docs/llms-full.md, "Auth").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from computalot.errors import Unauthorized
from computalot.ids import hash_token, token_kind
from computalot.store.accounts import find_credential
from computalot.store.models import ApiKey, WalletSession
from computalot.timeutil import utcnow


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and the credential that proved it."""

    account_id: str
    role: str
    name: str
    credential: str  # "flk" | "fls" | "flt"
    credential_id: str

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "member")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def authenticate(session: AsyncSession, token: str) -> Principal:
    """Resolve a bearer token to a :class:`Principal` or raise 401 (one query)."""
    kind = token_kind(token)
    if kind is None:
        raise Unauthorized("malformed token")
    digest = hash_token(token)
    if kind == "flk":
        found = await find_credential(session, ApiKey, digest)
        if found is None:
            raise Unauthorized("unknown API key")
        key, account = found
        if key.revoked_at is not None:
            raise Unauthorized(
                "API key was revoked", recommended_action="ask an admin for a new key"
            )
        return Principal(account.id, account.role, account.name, "flk", key.id)
    if kind == "fls":
        found_session = await find_credential(session, WalletSession, digest)
        if found_session is None:
            raise Unauthorized("unknown wallet session")
        sess, account = found_session
        if sess.expires_at <= utcnow():
            raise Unauthorized(
                "wallet session expired", recommended_action="sign a new wallet challenge"
            )
        return Principal(account.id, account.role, account.name, "fls", sess.id)
    raise Unauthorized("task tokens are only valid for a running task's KV and artifact routes")
