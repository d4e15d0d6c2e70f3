"""Claiming queued tasks: which jobs have work, and the compare-and-set that starts attempts.

A claim marks the next queued tasks of a job (by index) running in one ``UPDATE … WHERE id IN
(…) RETURNING`` statement, moves the job's counters, and starts a queued job. Jobs still in
``planning`` (their tasks are being written) and cancelled jobs are never claimed from.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.counters import bump_counters, finish_if_done
from computalot.engine.outcomes import ACTIONS
from computalot.engine.rows import (
    CLAIMABLE_JOB,
    JOBS,
    TASK_ROW_HEAD,
    TASKS,
    JobCache,
    JobInfo,
    RunnableJob,
    TaskRow,
    ending_tasks,
    job_event,
    task_event,
)
from computalot.states import JobStatus, TaskStatus
from computalot.store.events import Events
from computalot.store.jsoncodec import is_unusable
from computalot.timeutil import utcnow

#: One attempt to launch: the job, its claimed task, the attempt number.
Launch = tuple[JobInfo, TaskRow, int]

RUNNABLE_QUERY = select(
    JOBS.c.id, JOBS.c.account_id, JOBS.c.priority, JOBS.c.created_at, JOBS.c.n_queued, JOBS.c.status
).where(
    JOBS.c.status.in_(CLAIMABLE_JOB),
    JOBS.c.blocked.is_(False),
    JOBS.c.cancel_requested.is_(False),
    JOBS.c.n_queued > 0,
)


async def runnable_jobs(db: AsyncSession) -> list[RunnableJob]:
    """Jobs with queued work the dispatcher may claim."""
    conn = await db.connection()
    return [RunnableJob(*row) for row in (await conn.execute(RUNNABLE_QUERY)).tuples()]


#: ``lost_attempts``: a retry after a lost node that no alive node can take is ``node_lost``.
CLAIM_RETURNING = (*TASK_ROW_HEAD, TASKS.c.item, TASKS.c.element_count, TASKS.c.lost_attempts)
#: The next ``b_count`` queued tasks of job ``b_job`` (by index) become running attempts.
CLAIM = (
    update(TASKS)
    .where(
        TASKS.c.id.in_(
            select(TASKS.c.id)
            .where(TASKS.c.job_id == bindparam("b_job"), TASKS.c.status == TaskStatus.QUEUED)
            .order_by(TASKS.c.index)
            .limit(bindparam("b_count"))
        ),
        TASKS.c.status == TaskStatus.QUEUED,
    )
    .values(
        status=TaskStatus.RUNNING,
        attempt=TASKS.c.attempt + 1,
        run_epoch=bindparam("b_epoch", type_=TASKS.c.run_epoch.type),
        started_at=bindparam("b_now", type_=TASKS.c.started_at.type),
        finished_at=None,
    )
    .returning(*CLAIM_RETURNING)
)
#: A claim's counters; START_JOB also starts a queued job (never one a cancel ended meanwhile).
MOVE_TO_RUNNING = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_job"))
    .values(
        n_queued=JOBS.c.n_queued - bindparam("b_n"),
        n_running=JOBS.c.n_running + bindparam("b_n"),
    )
)
START_JOB = MOVE_TO_RUNNING.values(
    status=case((JOBS.c.status == JobStatus.QUEUED, JobStatus.RUNNING), else_=JOBS.c.status),
    started_at=func.coalesce(JOBS.c.started_at, bindparam("b_now", type_=JOBS.c.started_at.type)),
)


async def claim_tasks(
    db: AsyncSession,
    grants: dict[str, int],
    epoch: str,
    jobs: JobCache,
    statuses: dict[str, str],
) -> tuple[list[Launch], Events]:
    """Mark up to ``grants[job]`` queued tasks of each job running; return what to launch.

    ``statuses`` holds each granted job's status as the runnable query saw it.
    """
    now = utcnow()
    launches: list[Launch] = []
    events: Events = []
    infos = await jobs.load(db, grants)
    conn = await db.connection()
    for job_id, count in grants.items():
        job = infos.get(job_id)
        if job is None:
            continue
        params = {"b_job": job_id, "b_count": count, "b_epoch": epoch, "b_now": now}
        rows = (await conn.execute(CLAIM, params)).tuples()
        tasks = sorted((TaskRow(*row) for row in rows), key=lambda t: t.index)
        if not tasks:
            continue
        events += [task_event(task) for task in tasks]
        move = {"b_job": job_id, "b_n": len(tasks)}
        if statuses.get(job_id) == JobStatus.QUEUED:
            await conn.execute(START_JOB, {**move, "b_now": now})
            events.append(
                job_event(job.id, job.account_id, {"id": job.id, "status": JobStatus.RUNNING})
            )
        else:
            await conn.execute(MOVE_TO_RUNNING, move)
        unreadable = [t for t in tasks if is_unusable(t.item)]
        launches += [(job, t, t.attempt) for t in tasks if t not in unreadable]
        if unreadable:
            events += await _fail_unreadable(db, job_id, unreadable, now)
    return launches, events


UNREADABLE_TASK = {
    "code": "unreadable_task",
    "message": "the task's stored element cannot be read back; it was not run",
    "recommended_action": ACTIONS["unreadable_task"],
}


class UnreadableTask(ValueError):
    """A claimed task whose payload cannot be built from its stored row: judged a failed
    attempt with code ``unreadable_task``, never retried as an infrastructure loss."""


FAIL_CLAIMED = ending_tasks(
    TaskStatus.FAILED, TASKS.c.id == bindparam("b_id"), TASKS.c.status == TaskStatus.RUNNING
)


async def _fail_unreadable(
    db: AsyncSession, job_id: str, tasks: list[TaskRow], now: datetime
) -> Events:
    """Fail claimed tasks whose element is unreadable instead of launching them (a row written
    before the doors measured depth, or edited by hand); the job goes on without them."""
    conn = await db.connection()
    await conn.execute(
        FAIL_CLAIMED, [{"b_id": t.id, "b_now": now, "b_error": UNREADABLE_TASK} for t in tasks]
    )
    events: Events = []
    for task in tasks:
        task.status = TaskStatus.FAILED
        events.append(task_event(task, error=UNREADABLE_TASK))
    progress = await bump_counters(
        db, {job_id: {TaskStatus.RUNNING: -len(tasks), TaskStatus.FAILED: len(tasks)}}
    )
    return events + await finish_if_done(db, {job_id}, known=progress)
