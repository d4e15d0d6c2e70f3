"""Who is calling: a bearer token resolved to an account and the credential that proved it.

The store finds a credential by its token's hash (``store.accounts.find_credential``); deciding
whether that credential still proves anything (revoked, expired, the wrong kind) is this
module's job (docs/llms-full.md, "Auth").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.auth.task_tokens import BadTaskToken, is_task_token, verify_task_token
from computalot.errors import Unauthorized
from computalot.ids import hash_token, token_kind
from computalot.states import TaskStatus
from computalot.store.accounts import find_credential
from computalot.store.models import Account, ApiKey, Job, Task, WalletSession
from computalot.timeutil import utcnow

#: What a task token may do (docs/llms-full.md, "Environment"); every other route refuses it.
TASK_TOKEN_ROUTES = "its project's KV and artifact uploads"


@dataclass(frozen=True)
class TaskScope:
    """The one running attempt a task token (``flt_``) speaks for, and its project."""

    project_id: str
    job_id: str
    task_id: str
    attempt: int


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and the credential that proved it."""

    account_id: str
    role: str
    name: str
    credential: str  # "flk" | "fls" | "flt"
    credential_id: str
    #: Set for a task token only: it acts as the job's account, for that project alone.
    task_scope: TaskScope | None = None
    #: A wallet session's end: a per-replica cache (``serve_app.auth_cache``) keeps it no longer.
    expires_at: datetime | None = field(default=None, compare=False, repr=False)

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "member")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def authenticate(
    session: AsyncSession, token: str, *, task_tokens: str | None = None
) -> Principal:
    """Resolve a bearer token to a :class:`Principal` or raise 401 (one query).

    A task token (``flt_``) is refused unless the route opted in: ``task_tokens`` is then the
    platform's task token secret (``serve_app.deps``), so no route takes one by accident."""
    if is_task_token(token):
        if task_tokens is None:
            raise _task_token_refused()
        return await authenticate_task(session, token, task_tokens)
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
        return Principal(
            account.id, account.role, account.name, "fls", sess.id, expires_at=sess.expires_at
        )
    raise _task_token_refused()


def _task_token_refused() -> Unauthorized:
    return Unauthorized(
        f"a task token (flt_) is only accepted for {TASK_TOKEN_ROUTES}",
        recommended_action="call this route with an API key (flk_) or a wallet session (fls_)",
    )


async def authenticate_task(session: AsyncSession, token: str, secret: str) -> Principal:
    """A task token whose attempt is running now, as a :class:`Principal` of the job's
    account scoped to the job's project; 401 otherwise (also once the task has ended)."""
    try:
        claim = verify_task_token(secret, token)
    except BadTaskToken as exc:
        raise Unauthorized(str(exc)) from None
    query = (
        select(Task.status, Task.attempt, Job.id, Job.project_id, Account)
        .join(Job, Job.id == Task.job_id)
        .join(Account, Account.id == Task.account_id)
        .where(Task.id == claim.task_id)
    )
    row = (await session.execute(query)).first()
    if row is None or row[3] is None:
        raise Unauthorized("task token names no task of a project job")
    status, attempt, job_id, project_id, account = row
    assert project_id is not None
    if status != TaskStatus.RUNNING or attempt != claim.attempt:
        raise Unauthorized(
            "task token expired: its task attempt is no longer running",
            recommended_action="a task token is only good while its task runs",
        )
    scope = TaskScope(project_id, job_id, claim.task_id, claim.attempt)
    return Principal(account.id, account.role, account.name, "flt", claim.task_id, scope)
