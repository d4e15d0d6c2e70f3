"""Cancels, dependency release and start-up reconciliation (dispatcher side)."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.finalize import fail_job
from computalot.engine.quarantine import quarantine_job
from computalot.engine.records import (
    COUNTER,
    TASKS,
    Events,
    bump_counters,
    chunked,
    ending_tasks,
    finish_if_done,
    retry_event,
    task_event,
)
from computalot.states import TERMINAL_JOB
from computalot.store.jsoncodec import is_unusable
from computalot.store.models import Job, Task
from computalot.timeutil import utcnow
from computalot.views import job_out

CANCELLED = {"code": "cancelled", "message": "cancelled by request", "recommended_action": ""}
#: A job's queued tasks become cancelled in one statement (no ORM object per task: a cancelled
#: 100,000-task job would otherwise load every row).
CANCEL_QUEUED = ending_tasks(
    "cancelled", TASKS.c.job_id == bindparam("b_job"), TASKS.c.status == "queued"
).returning(TASKS.c.id, TASKS.c.index, TASKS.c.attempt)


async def cancel_queued(db: AsyncSession) -> tuple[list[str], Events]:
    """Apply pending cancels to queued tasks; return the jobs whose running tasks must stop."""
    query = select(Job.id, Job.account_id).where(
        Job.cancel_requested.is_(True), Job.status.not_in(TERMINAL_JOB)
    )
    jobs = (await db.execute(query)).tuples().all()
    events: Events = []
    now = utcnow()
    conn = await db.connection()
    for job_id, account_id in jobs:
        params = {"b_job": job_id, "b_now": now, "b_error": CANCELLED}
        rows = (await conn.execute(CANCEL_QUEUED, params)).tuples().all()
        for task_id, index, attempt in sorted(rows, key=lambda r: r[1]):
            data = {"task_id": task_id, "index": index, "status": "cancelled", "attempt": attempt}
            events.append((job_id, account_id, "task", data))
        if rows:
            await bump_counters(db, {job_id: {"queued": -len(rows), "cancelled": len(rows)}})
    events += await finish_if_done(db, {job_id for job_id, _account in jobs})
    return [job_id for job_id, _account in jobs], events


async def release_dependencies(db: AsyncSession) -> tuple[Events, bool]:
    """Unblock jobs whose dependencies all completed; fail those with a dependency gone bad.

    Two queries however many jobs wait (ids + dependency lists, then the dependencies'
    statuses); full rows are loaded only for the jobs that change. Also returns whether jobs
    are still waiting afterwards.
    """
    waiting = (
        (
            await db.execute(
                select(Job.id, Job.depends_on).where(
                    Job.blocked.is_(True), Job.status.not_in(TERMINAL_JOB)
                )
            )
        )
        .tuples()
        .all()
    )
    if not waiting:
        return [], False
    events: Events = []
    for job_id, deps in waiting:
        if is_unusable(deps) or not isinstance(deps, list):
            events += await quarantine_job(db, job_id, ["depends_on"])
    waiting = [(j, deps) for j, deps in waiting if isinstance(deps, list)]
    dep_ids = {d for _id, deps in waiting for d in deps}
    statuses: dict[str, str] = {}
    for chunk in chunked(list(dep_ids)):
        rows = await db.execute(select(Job.id, Job.status).where(Job.id.in_(chunk)))
        statuses.update(rows.tuples().all())
    still_waiting = False
    for job_id, depends_on in waiting:
        bad = [d for d in depends_on if statuses.get(d, "deleted") in BAD_ENDS]
        ready = all(statuses.get(d) == "completed" for d in depends_on)
        if not bad and not ready:
            still_waiting = True
            continue
        job = await db.get(Job, job_id)
        if job is None:
            continue
        if bad:
            culprit = bad[0]
            if await fail_job(
                db,
                job,
                "dependency_failed",
                f"dependency {culprit} ended {statuses.get(culprit, 'deleted')}",
                "fix and rerun the dependency, then resubmit this job",
            ):
                await db.refresh(job)
                snapshot = job_out(job)
                events += [
                    (job.id, job.account_id, "job", snapshot),
                    (job.id, job.account_id, "end", snapshot),
                ]
        else:
            job.blocked = False
            events.append(
                (
                    job.id,
                    job.account_id,
                    "job",
                    {"id": job.id, "status": job.status, "blocked": False},
                )
            )
    await db.flush()
    return events, still_waiting


BAD_ENDS = (TERMINAL_JOB - {"completed"}) | {"deleted"}


async def reconcile(db: AsyncSession, epoch: str, *, lost_budget: int) -> Events:
    """Settle what a previous dispatcher left behind; no completed task runs again."""
    events: Events = []
    stale = list(
        (
            await db.execute(select(Task).where(Task.status == "running", Task.run_epoch != epoch))
        ).scalars()
    )
    now = utcnow()
    touched: set[str] = set()
    for task in stale:
        task.lost_attempts += 1
        touched.add(task.job_id)
        if task.lost_attempts <= lost_budget:
            task.status = "queued"
            lost = {"code": "worker_lost", "message": "dispatcher restarted during the attempt"}
            events.append(retry_event(task, task.attempt, lost))
        else:
            task.status = "failed"
            task.finished_at = now
            task.error = {
                "code": "worker_lost",
                "message": "the attempt was lost with its dispatcher too many times",
                "recommended_action": "resubmit the job",
            }
        events.append(task_event(task))
    await db.flush()
    open_jobs = list(
        (await db.execute(select(Job).where(Job.status.not_in(TERMINAL_JOB)))).scalars()
    )
    for job in open_jobs:
        counts = dict(
            (
                await db.execute(
                    select(Task.status, func.count())
                    .where(Task.job_id == job.id)
                    .group_by(Task.status)
                )
            )
            .tuples()
            .all()
        )
        for status, column in COUNTER.items():
            setattr(job, column, int(counts.get(status, 0)))
        touched.add(job.id)
    await db.flush()
    events += await finish_if_done(db, touched)
    return events
