"""Job finalisation: terminal status, error summary and ``aggregate_result`` (docs/llms-full.md,
"Merge strategies" and "Timeouts, retries and cancel").

Finalising reads no result of a ``collect`` or ``keyed`` job: their aggregate is a copy of the
results, built when it is read (``jobs.aggregate``). A computed aggregate (``weighted_avg``) is
stored; if it cannot be computed from the job's data, the job fails alone with
``aggregate_failed`` instead of failing every dispatcher cycle that tries to finalise it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from computalot.jobs.aggregate import COPY_STRATEGIES, computed_aggregate, strategy_of
from computalot.states import TERMINAL_JOB, JobStatus, TaskStatus
from computalot.store.models import Job, Task
from computalot.timeutil import utcnow

log = logging.getLogger("computalot.dispatcher")

AGGREGATE_FAILED_ACTION = (
    "check that the results have the fields merge_strategy needs (numbers for weighted_avg), "
    "or resubmit with merge_strategy collect; every result is in GET /api/v1/results/:id"
)


def final_status(job: Job) -> JobStatus:
    if job.cancel_requested and job.n_completed < job.n_total:
        return JobStatus.CANCELLED
    if job.n_failed == 0 and job.n_cancelled == 0:
        return JobStatus.COMPLETED
    if job.n_completed > 0:
        return JobStatus.PARTIAL
    return JobStatus.FAILED


async def _first_failure(db: AsyncSession, job: Job) -> dict[str, Any] | None:
    """The first failed task's error with its index (the job error names it)."""
    query = (
        select(Task.index, Task.error)
        .where(Task.job_id == job.id, Task.status == TaskStatus.FAILED)
        .order_by(Task.index)
        .limit(1)
    )
    row = (await db.execute(query)).first()
    if row is None or not isinstance(row.error, dict):
        return None
    return {"task_index": row.index, **row.error}


async def finalize_job(db: AsyncSession, job: Job) -> Job | None:
    """Move ``job`` to its terminal state (compare-and-set); None if already terminal."""
    status = final_status(job)
    aggregate: Any = None
    error = None
    action = None
    warnings: list[str] = []
    if (
        status in (JobStatus.COMPLETED, JobStatus.PARTIAL)
        and strategy_of(job) not in COPY_STRATEGIES
    ):
        try:
            aggregate, warnings = await computed_aggregate(db, job)
        except Exception as exc:
            log.warning("job %s: aggregate failed: %s", job.id, exc)
            status = JobStatus.FAILED
            error = {
                "code": "aggregate_failed",
                "message": f"the job's aggregate_result could not be computed: "
                f"{type(exc).__name__}: {str(exc)[:300]}",
            }
            action = AGGREGATE_FAILED_ACTION
    if status in (JobStatus.FAILED, JobStatus.PARTIAL) and job.error is None and error is None:
        first_error = await _first_failure(db, job)
        detail = ""
        if first_error:
            detail = (
                f"; first failure (task {first_error['task_index']}): {first_error.get('message')}"
            )
            action = first_error.get("recommended_action")
        error = {
            "code": "tasks_failed",
            "message": f"{job.n_failed} of {job.n_total} tasks failed{detail}",
        }
    elif status == JobStatus.CANCELLED:
        error = {"code": "cancelled", "message": "job was cancelled"}
        action = "resubmit the job if it was cancelled by mistake"
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "aggregate_result": aggregate,
    }
    if warnings:
        values["warnings"] = list(job.warnings or []) + warnings
    if error is not None:
        values["error"] = error
        values["recommended_action"] = action
    changed = await db.execute(
        update(Job).where(Job.id == job.id, Job.status.not_in(TERMINAL_JOB)).values(**values)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    for key, value in values.items():
        set_committed_value(job, key, value)  # already written by the UPDATE above
    return job


async def fail_job(db: AsyncSession, job: Job, code: str, message: str, action: str) -> bool:
    """End a job that never ran (e.g. a failed dependency): its queued tasks are cancelled."""
    now = utcnow()
    cancelled = await db.execute(
        update(Task)
        .where(Task.job_id == job.id, Task.status == TaskStatus.QUEUED)
        .values(status=TaskStatus.CANCELLED, finished_at=now)
    )
    n = cancelled.rowcount  # type: ignore[attr-defined]
    changed = await db.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.not_in(TERMINAL_JOB))
        .values(
            status=JobStatus.FAILED,
            finished_at=now,
            error={"code": code, "message": message},
            recommended_action=action,
            n_queued=Job.n_queued - n,
            n_cancelled=Job.n_cancelled + n,
            # While planning: the rows written so far (no more are written after this).
            n_total=case((Job.status == JobStatus.PLANNING, Job.planned_tasks), else_=Job.n_total),
            blocked=False,
        )
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]
