"""Start-up reconciliation: settle what a previous dispatcher left behind.

Attempts a dead incarnation left ``running`` (another ``run_epoch``) are requeued as an
infrastructure loss while their task's budget allows (``worker_lost_retries``), else failed with
``worker_lost``; an attempt of a job cancelled meanwhile is cancelled. Every open job's counters
are then recounted from its tasks, and jobs whose tasks all ended are finalised. No completed
task runs again.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.cancelling import CANCELLED
from computalot.engine.counters import COUNTER, JobProgress, finish_if_done, read_progress
from computalot.engine.rows import chunked, retry_event, task_event
from computalot.states import TERMINAL_JOB, JobStatus, TaskStatus
from computalot.store.events import Events
from computalot.store.models import Job, Task
from computalot.timeutil import utcnow

LOST = {"code": "worker_lost", "message": "dispatcher restarted during the attempt"}
LOST_FOR_GOOD = {
    "code": "worker_lost",
    "message": "the attempt was lost with its dispatcher too many times",
    "recommended_action": "resubmit the job",
}


async def _settle_stale(db: AsyncSession, epoch: str, lost_budget: int) -> tuple[Events, set[str]]:
    """Requeue, fail or cancel the attempts of earlier epochs; the events and their jobs."""
    query = select(Task).where(Task.status == TaskStatus.RUNNING, Task.run_epoch != epoch)
    stale = list((await db.execute(query)).scalars())
    cancelled = await _cancelled_jobs(db, {task.job_id for task in stale})
    events: Events = []
    now = utcnow()
    for task in stale:
        if task.job_id in cancelled:
            task.status, task.finished_at, task.error = TaskStatus.CANCELLED, now, CANCELLED
        else:
            task.lost_attempts += 1
            if task.lost_attempts <= lost_budget:
                task.status = TaskStatus.QUEUED
                events.append(retry_event(task, task.attempt, LOST))
            else:
                task.status, task.finished_at, task.error = TaskStatus.FAILED, now, LOST_FOR_GOOD
        events.append(task_event(task))
    await db.flush()
    return events, {task.job_id for task in stale}


async def _cancelled_jobs(db: AsyncSession, job_ids: set[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunked(sorted(job_ids)):
        query = select(Job.id).where(Job.id.in_(chunk), Job.status == JobStatus.CANCELLED)
        found.update((await db.execute(query)).scalars())
    return found


async def _recount(db: AsyncSession, job_ids: set[str]) -> None:
    """Set the counters of ``job_ids`` from their tasks: one grouped query per chunk."""
    counts: dict[str, dict[str, int]] = {job_id: {} for job_id in job_ids}
    for chunk in chunked(sorted(job_ids)):
        query = (
            select(Task.job_id, Task.status, func.count())
            .where(Task.job_id.in_(chunk))
            .group_by(Task.job_id, Task.status)
        )
        for job_id, status, n in (await db.execute(query)).tuples():
            counts[job_id][status] = int(n)
    jobs = [job for chunk in chunked(sorted(job_ids)) for job in await _jobs(db, chunk)]
    for job in jobs:
        for status, column in COUNTER.items():
            setattr(job, column, counts[job.id].get(status, 0))
    await db.flush()


async def _jobs(db: AsyncSession, ids: list[str]) -> list[Job]:
    return list((await db.execute(select(Job).where(Job.id.in_(ids)))).scalars())


async def reconcile(db: AsyncSession, epoch: str, *, lost_budget: int) -> Events:
    """Settle what a previous dispatcher left behind; no completed task runs again."""
    events, touched = await _settle_stale(db, epoch, lost_budget)
    open_jobs = set(
        (await db.execute(select(Job.id).where(Job.status.not_in(TERMINAL_JOB)))).scalars()
    )
    await _recount(db, open_jobs | touched)
    # A cancelled job whose last attempts were settled here ends now (its ``end`` is due).
    settled: dict[str, JobProgress] = {
        job_id: p
        for job_id, p in (await read_progress(db, sorted(touched - open_jobs))).items()
        if p.cancel_settled()
    }
    events += await finish_if_done(db, open_jobs | touched, known=settled)
    return events
