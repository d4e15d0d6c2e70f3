"""Cancelling a job (docs/llms-full.md, "Timeouts, retries and cancel").

A cancel answers at once: in the request's own transaction, :func:`cancel_job` moves the job to
``cancelled`` (a compare-and-set from any state that has not ended, ``planning`` included) and
its queued tasks with it, counters and events alongside, then the API tells the dispatcher. The
dispatcher stops the attempts still running (:func:`pending_cancels` names their jobs) and
records them as they end. The job's ``end`` event, which closes its streams, is written by
whichever transaction settles its last queued or running task (``counters.finish_if_done``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.counters import (
    JobProgress,
    bump_counters,
    finish_if_done,
    job_ended,
)
from computalot.engine.rows import JOBS, TASKS, ending_tasks, job_event
from computalot.states import TERMINAL_JOB, JobStatus, TaskStatus
from computalot.store.events import EventRow, Events
from computalot.store.models import Job
from computalot.timeutil import utcnow
from computalot.views import job_out

CANCELLED = {"code": "cancelled", "message": "cancelled by request", "recommended_action": ""}
JOB_CANCELLED = {"code": "cancelled", "message": "job was cancelled"}
JOB_CANCELLED_ACTION = "resubmit the job if it was cancelled by mistake"
#: A job's queued tasks become cancelled in one statement (no ORM object per task: a cancelled
#: 100,000-task job would otherwise load every row).
CANCEL_QUEUED = ending_tasks(
    TaskStatus.CANCELLED, TASKS.c.job_id == bindparam("b_job"), TASKS.c.status == TaskStatus.QUEUED
).returning(TASKS.c.id, TASKS.c.index, TASKS.c.attempt)
CANCEL_JOB = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_job"), JOBS.c.status.not_in(TERMINAL_JOB))
    .values(
        status=JobStatus.CANCELLED,
        cancel_requested=True,
        # A job cancelled while planning keeps the rows its planner wrote: no chunk is written
        # after this commits (each is a compare-and-set on ``planning``), so its total is those.
        n_total=case(
            (JOBS.c.status == JobStatus.PLANNING, JOBS.c.planned_tasks), else_=JOBS.c.n_total
        ),
        finished_at=bindparam("b_now", type_=JOBS.c.finished_at.type),
        error=JOB_CANCELLED,
        recommended_action=JOB_CANCELLED_ACTION,
    )
)


async def cancel_queued_tasks(
    db: AsyncSession, job_id: str, account_id: str, now: datetime
) -> tuple[Events, JobProgress | None]:
    """Cancel the job's queued tasks: their events, and the job's progress if any moved."""
    conn = await db.connection()
    params = {"b_job": job_id, "b_now": now, "b_error": CANCELLED}
    rows = (await conn.execute(CANCEL_QUEUED, params)).tuples().all()
    if not rows:
        return [], None
    events = [
        EventRow(
            job_id,
            account_id,
            "task",
            {
                "task_id": task_id,
                "index": index,
                "status": TaskStatus.CANCELLED,
                "attempt": attempt,
            },
        )
        for task_id, index, attempt in sorted(rows, key=lambda r: r[1])
    ]
    moved = await bump_counters(
        db, {job_id: {TaskStatus.QUEUED: -len(rows), TaskStatus.CANCELLED: len(rows)}}
    )
    return events, moved.get(job_id)


async def cancel_job(db: AsyncSession, job: Job) -> Events | None:
    """Cancel ``job`` now, in ``db``'s transaction (the caller writes the events and commits);
    None when it had already ended (it is returned unchanged)."""
    now = utcnow()
    conn = await db.connection()
    changed = await conn.execute(CANCEL_JOB, {"b_job": job.id, "b_now": now})
    if changed.rowcount != 1:
        return None
    events, _moved = await cancel_queued_tasks(db, job.id, job.account_id, now)
    await db.refresh(job)
    if job.n_running == 0 and job.n_queued == 0:
        return events + await job_ended(db, job)
    return [*events, job_event(job.id, job.account_id, job_out(job))]


PENDING_QUERY = select(JOBS.c.id, JOBS.c.account_id, JOBS.c.status).where(
    JOBS.c.cancel_requested.is_(True),
    or_(JOBS.c.status.not_in(TERMINAL_JOB), JOBS.c.n_queued > 0, JOBS.c.n_running > 0),
)


async def pending_cancels(db: AsyncSession) -> tuple[list[str], Events]:
    """Cancelled jobs with tasks left: their queued tasks are cancelled here; returns the jobs
    whose running attempts must be stopped, and the events to write.

    A job whose cancel was requested but not yet applied (``cancel_requested`` on a job that has
    not ended) is finalised here too."""
    jobs = (await (await db.connection()).execute(PENDING_QUERY)).tuples().all()
    events: Events = []
    progress: dict[str, JobProgress] = {}
    now = utcnow()
    for job_id, account_id, _status in jobs:
        cancelled, moved = await cancel_queued_tasks(db, job_id, account_id, now)
        events += cancelled
        if moved is not None:
            progress[job_id] = moved
    events += await finish_if_done(db, {job_id for job_id, *_rest in jobs}, known=progress)
    return [job_id for job_id, *_rest in jobs], events


async def cancel_requeued(
    db: AsyncSession, progress: dict[str, JobProgress], accounts: dict[str, str]
) -> Events:
    """Cancel the tasks a retry requeued in a job cancelled meanwhile; ``progress`` (what this
    transaction's counter moves returned) is updated in place. ``accounts``: job id -> account."""
    events: Events = []
    now = utcnow()
    for job_id, p in list(progress.items()):
        if p.status == JobStatus.CANCELLED and p.queued > 0:
            cancelled, moved = await cancel_queued_tasks(db, job_id, accounts[job_id], now)
            events += cancelled
            if moved is not None:
                progress[job_id] = moved
    return events
