"""Callback delivery state in the store: which jobs are due, claiming one, recording an attempt.

The state lives on the job row (``callback_state``, ``callback_attempts``, ``callback_next_at``;
index ``ix_jobs_callback``), so a platform restart resumes pending deliveries where they were.
A job is *due* when its callback is ``pending``, the job is terminal with no attempt still
running (its counts are final) and ``callback_next_at`` is unset or past. Every API replica
looks; a replica *claims* a due job by a compare-and-set that moves ``callback_next_at`` a lease
ahead, so no other replica sends the same attempt while it is in flight; one that dies with a
claim lets the lease run out and another replica tries again. Recording an attempt is a
compare-and-set on ``callback_attempts`` and writes the job's ``callback`` event in the same
transaction. Nothing here touches the job's status: a callback never changes the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.states import TERMINAL_JOB
from computalot.store.events import EventRow, write_events
from computalot.store.models import Job
from computalot.timeutil import iso

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
#: How long a claim holds a job (seconds): longer than one attempt can take.
LEASE_S = 120.0


@dataclass(frozen=True)
class Due:
    """A job whose callback is due, as it was read (the claim compares against it)."""

    job_id: str
    attempts: int


def _due_clause(now: datetime) -> ColumnElement[bool]:
    return (
        (Job.callback_state == PENDING)
        & or_(Job.callback_next_at.is_(None), Job.callback_next_at <= now)
        & Job.status.in_(sorted(TERMINAL_JOB))
        & (Job.n_running == 0)
    )


async def due_jobs(db: AsyncSession, now: datetime, limit: int) -> list[Due]:
    """Jobs whose callback is due at ``now``, oldest-due first."""
    rows = await db.execute(
        select(Job.id, Job.callback_attempts)
        .where(_due_clause(now))
        .order_by(Job.callback_next_at)
        .limit(limit)
    )
    return [Due(job_id, attempts) for job_id, attempts in rows.tuples()]


async def claim(db: AsyncSession, due: Due, now: datetime) -> bool:
    """Take ``due`` for one attempt (the caller commits); False when another replica did."""
    moved = await db.execute(
        update(Job)
        .where(Job.id == due.job_id, Job.callback_attempts == due.attempts, _due_clause(now))
        .values(callback_next_at=now + timedelta(seconds=LEASE_S))
        .execution_options(synchronize_session=False)
    )
    return int(moved.rowcount) == 1  # type: ignore[attr-defined]


def next_state(attempt: int, delivered: bool, refused: bool, delays: tuple[float, ...]) -> str:
    """The state after attempt number ``attempt`` (1-based): tries are ``len(delays) + 1``."""
    if delivered:
        return DELIVERED
    if refused or attempt > len(delays):
        return FAILED
    return PENDING


async def record(
    db: AsyncSession,
    job: Job,
    attempt: int,
    state: str,
    next_at: datetime | None,
    outcome: dict[str, object],
) -> bool:
    """Store attempt ``attempt``'s outcome and its ``callback`` event (the caller commits);
    False when the claim was lost meanwhile (another replica recorded this attempt)."""
    moved = await db.execute(
        update(Job)
        .where(
            Job.id == job.id, Job.callback_attempts == attempt - 1, Job.callback_state == PENDING
        )
        .values(callback_attempts=attempt, callback_state=state, callback_next_at=next_at)
        .execution_options(synchronize_session=False)
    )
    if int(moved.rowcount) != 1:  # type: ignore[attr-defined]
        return False
    data = {"attempt": attempt, **outcome, "state": state, "next_at": iso(next_at)}
    await write_events(db, [EventRow(job.id, job.account_id, "callback", data)])
    return True
