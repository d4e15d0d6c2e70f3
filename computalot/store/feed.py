"""Reads for an API replica's shared event feed (``serve_app.stream_feed``).

Unlike ``computalot.store.jobs`` these reads span accounts: the feed serves every open stream of
its replica, each authorised for its jobs when it opened (``jobs.get_job`` with the caller's
account) and re-checked while open (:func:`live_credentials`). What a read returns is handed
only to the streams of the job an event belongs to, so no account sees another's events.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computalot.states import TERMINAL_JOB
from computalot.store.jobs import StreamEvent
from computalot.store.models import ApiKey, Event, Job, WalletSession
from computalot.timeutil import utcnow

#: Most job ids in one ``IN (...)`` list; a feed watching more reads every new event instead.
MAX_IN_LIST = 500

# Built once with bound parameters: a feed reads many times a second, and building and
# caching a statement with a 100-id IN list cost more than running it.
_NEWEST = select(func.max(Event.id))
_AFTER = (
    select(Event.id, Event.job_id, Event.event, Event.data)
    .where(Event.id > bindparam("after"))
    .order_by(Event.id)
    .limit(bindparam("limit"))
)
_AFTER_OF_JOBS = _AFTER.where(Event.job_id.in_(bindparam("job_ids", expanding=True)))


async def newest_event_id(conn: AsyncConnection | AsyncSession) -> int:
    """The highest event id visible now (0 with none). Ids become visible in id order
    (``computalot.store.events``), so every event up to it is visible too."""
    return int(await conn.scalar(_NEWEST) or 0)


async def events_after(
    conn: AsyncConnection, job_ids: Collection[str], *, after: int, limit: int
) -> list[StreamEvent]:
    """``(id, job_id, event, data)`` of these jobs' events after ``after``, in id order.

    Past :data:`MAX_IN_LIST` jobs the read is not narrowed by job (every event after ``after``
    comes back; the caller drops what nobody watches), which keeps it one statement with one
    cursor."""
    params: dict[str, object] = {"after": after, "limit": limit}
    if len(job_ids) <= MAX_IN_LIST:
        params["job_ids"] = list(job_ids)
        rows = await conn.execute(_AFTER_OF_JOBS, params)
    else:
        rows = await conn.execute(_AFTER, params)
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def terminal_jobs(db: AsyncSession, job_ids: Collection[str]) -> dict[str, str]:
    """Those of these jobs that have ended, with their status (one statement per 500 ids): a
    terminal status and no attempt still running (a job cancelled while tasks ran ends when
    its last attempt is recorded: ``computalot.engine.cancelling``)."""
    ids = list(job_ids)
    out: dict[str, str] = {}
    for start in range(0, len(ids), MAX_IN_LIST):
        chunk = ids[start : start + MAX_IN_LIST]
        query = select(Job.id, Job.status).where(
            Job.id.in_(chunk), Job.status.in_(TERMINAL_JOB), Job.n_running == 0
        )
        out.update((job_id, status) for job_id, status in await db.execute(query))
    return out


async def live_credentials(
    db: AsyncSession, key_ids: Collection[str], session_ids: Collection[str]
) -> set[str]:
    """The ids among these API keys and wallet sessions that still authenticate: keys not
    revoked, sessions not expired (a deleted row is simply absent)."""
    out: set[str] = set()
    keys, sessions = list(key_ids), list(session_ids)
    for start in range(0, len(keys), MAX_IN_LIST):
        query = select(ApiKey.id).where(
            ApiKey.id.in_(keys[start : start + MAX_IN_LIST]), ApiKey.revoked_at.is_(None)
        )
        out.update((await db.execute(query)).scalars())
    now = utcnow()
    for start in range(0, len(sessions), MAX_IN_LIST):
        query = select(WalletSession.id).where(
            WalletSession.id.in_(sessions[start : start + MAX_IN_LIST]),
            WalletSession.expires_at > now,
        )
        out.update((await db.execute(query)).scalars())
    return out
