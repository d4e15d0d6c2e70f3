"""Per-account quotas on open work (429 ``quota_exceeded``; docs/llms-full.md, "Limits").

One request must not be able to bury the platform: a 1.8 KB batch of 10 jobs × 100,000 chunks
once made a million tasks. Two operator-set limits (``COMPUTALOT_MAX_QUEUED_TASKS_PER_ACCOUNT``,
``COMPUTALOT_MAX_OPEN_JOBS_PER_ACCOUNT``) bound what an account may have unfinished at once;
``details`` name the limit, its value and the account's current use.

A ``planning`` job counts with all of its tasks, written or not (its ``n_total`` is set when it
is accepted). The check runs in the submit's transaction after the new job row is written, so
concurrent submits of one account cannot both slip under a limit: on SQLite that write holds the
database's write lock until commit; on PostgreSQL an advisory lock per account orders them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.errors import QuotaExceeded
from computalot.states import OPEN_JOB
from computalot.store.models import Job

ACCOUNT_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
#: High 32 bits of the advisory lock key for account quotas (the low 32 are the account's).
LOCK_SPACE = 0x71756F74  # "quot"


@dataclass(frozen=True)
class Quotas:
    max_queued_tasks: int
    max_open_jobs: int


async def lock_account(db: AsyncSession, account_id: str) -> None:
    """Order this account's concurrent submits (PostgreSQL; SQLite's write lock does it)."""
    conn = await db.connection()
    if conn.dialect.name == "postgresql":
        key = (LOCK_SPACE << 32) | zlib.crc32(account_id.encode())
        await conn.execute(ACCOUNT_LOCK, {"key": key - (1 << 63)})


async def check_quotas(db: AsyncSession, account_id: str, quotas: Quotas, new_tasks: int) -> None:
    """Raise :class:`QuotaExceeded` if the account's open work, the new job included (its row
    is already flushed in this transaction, with ``new_tasks`` tasks), is over a quota."""
    unfinished = Job.n_total - Job.n_completed - Job.n_failed - Job.n_cancelled
    row = (
        await db.execute(
            select(func.count(), func.coalesce(func.sum(unfinished), 0)).where(
                Job.account_id == account_id, Job.status.in_(OPEN_JOB)
            )
        )
    ).one()
    open_jobs, tasks = int(row[0]), int(row[1])
    if open_jobs > quotas.max_open_jobs:
        raise _exceeded(
            "open_jobs",
            quotas.max_open_jobs,
            open_jobs - 1,
            f"at most {quotas.max_open_jobs} unfinished jobs per account; "
            f"this account has {open_jobs - 1}",
        )
    if tasks > quotas.max_queued_tasks:
        raise _exceeded(
            "queued_tasks",
            quotas.max_queued_tasks,
            tasks - new_tasks,
            f"at most {quotas.max_queued_tasks} unfinished tasks per account; this account has "
            f"{tasks - new_tasks} and the job would add {new_tasks}",
        )


def _exceeded(name: str, limit: int, current: int, message: str) -> QuotaExceeded:
    return QuotaExceeded(
        f"quota {name} reached: {message}",
        details=[{"loc": ["quota", name], "msg": message, "limit": limit, "current": current}],
    )
