"""Job counters and the end of a job, moved in the transaction of the task rows they count.

Every status change is a compare-and-set (``WHERE status = …``); a job's ``n_*`` counters move
with SQL increments in the same transaction, and the ``UPDATE … RETURNING`` that moves them
says at once whether the job has ended.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate

from computalot.billing.holds import settle_job
from computalot.engine.finalize import finalize_job
from computalot.engine.rows import JOBS, chunked
from computalot.states import JobStatus, TaskStatus, job_is_terminal
from computalot.store.events import EventRow, Events
from computalot.store.models import Job
from computalot.views import job_out

COUNTER: dict[str, str] = {
    TaskStatus.QUEUED: "n_queued",
    TaskStatus.RUNNING: "n_running",
    TaskStatus.COMPLETED: "n_completed",
    TaskStatus.FAILED: "n_failed",
    TaskStatus.CANCELLED: "n_cancelled",
}


class JobProgress(NamedTuple):
    """What deciding whether a job has ended needs of it."""

    status: str
    total: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int

    def all_settled(self) -> bool:
        return self.completed + self.failed + self.cancelled >= self.total

    def needs_finalizing(self) -> bool:
        return not job_is_terminal(self.status) and self.all_settled()

    def cancel_settled(self) -> bool:
        """A cancelled job whose last queued or running task just ended: its ``end`` is due."""
        return self.status == JobStatus.CANCELLED and self.queued == 0 and self.running == 0


PROGRESS = (
    JOBS.c.status,
    JOBS.c.n_total,
    JOBS.c.n_queued,
    JOBS.c.n_running,
    JOBS.c.n_completed,
    JOBS.c.n_failed,
    JOBS.c.n_cancelled,
)
PROGRESS_QUERY = select(JOBS.c.id, *PROGRESS).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
#: One statement per set of counter columns; at most 2**5 of them.
_BUMPS: dict[tuple[str, ...], ReturningUpdate[Any]] = {}


def _bump_statement(columns: tuple[str, ...]) -> ReturningUpdate[Any]:
    """``UPDATE jobs SET col = col + :d_col … WHERE id = :b_job RETURNING progress``, built once
    per set of counter columns."""
    statement = _BUMPS.get(columns)
    if statement is None:
        statement = _BUMPS[columns] = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("b_job"))
            .values({col: JOBS.c[col] + bindparam(f"d_{col}") for col in columns})
            .returning(*PROGRESS)
        )
    return statement


async def bump_counters(
    db: AsyncSession, deltas: dict[str, dict[str, int]]
) -> dict[str, JobProgress]:
    """One Core UPDATE per job: ``deltas[job][task status]`` is added to that status's counter.

    Returns each bumped job's progress as the UPDATE left it (``RETURNING``), so
    :func:`finish_if_done` need not read it again.
    """
    conn = await db.connection()
    after: dict[str, JobProgress] = {}
    for job_id, delta in deltas.items():
        values = {COUNTER[k]: v for k, v in sorted(delta.items()) if v}
        if values:
            params: dict[str, Any] = {f"d_{col}": v for col, v in values.items()}
            params["b_job"] = job_id
            row = (await conn.execute(_bump_statement(tuple(values)), params)).first()
            if row is not None:
                after[job_id] = JobProgress(*row)
    return after


async def read_progress(db: AsyncSession, job_ids: list[str]) -> dict[str, JobProgress]:
    conn = await db.connection()
    progress: dict[str, JobProgress] = {}
    for chunk in chunked(job_ids):
        for job_id, *row in (await conn.execute(PROGRESS_QUERY, {"ids": chunk})).tuples():
            progress[job_id] = JobProgress(*row)
    return progress


def end_events(job: Job) -> list[EventRow]:
    """A job's final snapshot and its ``end`` (streams close on it: always its last event)."""
    snapshot = job_out(job)
    return [
        EventRow(job.id, job.account_id, "job", snapshot),
        EventRow(job.id, job.account_id, "end", snapshot),
    ]


async def job_ended(db: AsyncSession, job: Job) -> list[EventRow]:
    """The job ended and nothing of it runs any more: its hold settles to what its attempts ran
    (``computalot.billing.holds``, once however many paths get here), then its ``end``."""
    await settle_job(db, job.id)
    return end_events(job)


async def finish_if_done(
    db: AsyncSession, job_ids: set[str], known: dict[str, JobProgress] | None = None
) -> Events:
    """Finalise the jobs among ``job_ids`` whose every task ended; end cancelled ones.

    ``known`` holds progress this transaction's counter moves returned (``bump_counters``); the
    other jobs' counters are read with one Core select per chunk. A job cancelled while tasks
    ran (``cancelling``) gets its ``end`` from the move that settles its last task, so only
    ``known`` jobs are looked at for that: a cancelled job's counters reach zero once.
    """
    known = known or {}
    progress = {j: known[j] for j in job_ids if j in known}
    missing = [j for j in job_ids if j not in known]
    if missing:
        progress.update(await read_progress(db, missing))
    events: Events = []
    for job_id, p in progress.items():
        if not (p.needs_finalizing() or (job_id in known and p.cancel_settled())):
            continue
        # The counters moved in Core: a Job already in this session must be re-read, not reused.
        job = await db.get(Job, job_id, populate_existing=True)
        if job is None:
            continue
        if p.needs_finalizing():
            finished = await finalize_job(db, job)
            if finished is not None:
                events += await job_ended(db, finished)
        else:
            events += await job_ended(db, job)
    return events
