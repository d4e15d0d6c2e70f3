"""Job finalisation: terminal status, error summary and ``aggregate_result`` (SPEC §5.2, §5.6)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from computalot.jobs.merge import ElementResult, merge_results
from computalot.schemas.states import TERMINAL_JOB
from computalot.store.models import Job, Task
from computalot.timeutil import utcnow


def final_status(job: Job) -> str:
    if job.cancel_requested and job.n_completed < job.n_total:
        return "cancelled"
    if job.n_failed == 0 and job.n_cancelled == 0:
        return "completed"
    if job.n_completed > 0:
        return "partial"
    return "failed"


def _failure(index: int, status: str, error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A failed task's error with its index (the job error names the first one)."""
    return {"task_index": index, **error} if status == "failed" and error else None


async def _elements(
    db: AsyncSession, job: Job
) -> tuple[list[ElementResult], dict[str, Any] | None]:
    """Every element's outcome with its fan-out value (``keyed`` and ``weighted_avg`` read it)."""
    query = (
        select(
            Task.index,
            Task.status,
            Task.element_start,
            Task.element_count,
            Task.batched,
            Task.item,
            Task.result,
            Task.error,
        )
        .where(Task.job_id == job.id)
        .order_by(Task.element_start)
    )
    elements: list[ElementResult] = []
    first_error: dict[str, Any] | None = None
    for index, status, start, count, batched, item, result, error in (
        await db.execute(query)
    ).tuples():
        first_error = first_error or _failure(index, status, error)
        items = item if isinstance(item, list) else [item]
        if batched:
            stored = (result or {}).get("elements") if isinstance(result, dict) else None
            for i in range(count):
                value = stored[i]["result"] if status == "completed" and stored else None
                delta = items[i] if i < len(items) else None
                elements.append(ElementResult(start + i, status, value, delta))
        else:
            delta = items[0] if items else None
            elements.append(
                ElementResult(start, status, result if status == "completed" else None, delta)
            )
    return elements, first_error


async def _collected(db: AsyncSession, job: Job) -> tuple[list[Any], dict[str, Any] | None]:
    """``collect``'s aggregate straight from the task rows: every element's result (null unless
    completed) in element order. Same answer as ``merge_results("collect", …)`` without an
    object per element (a third of finalising a 100,000-element job)."""
    query = (
        select(Task.index, Task.status, Task.element_count, Task.batched, Task.result, Task.error)
        .where(Task.job_id == job.id)
        .order_by(Task.element_start)
    )
    out: list[Any] = []
    first_error: dict[str, Any] | None = None
    for index, status, count, batched, result, error in (await db.execute(query)).tuples():
        first_error = first_error or _failure(index, status, error)
        completed = status == "completed"
        if not batched:
            out.append(result if completed else None)
            continue
        stored = (result or {}).get("elements") if completed and isinstance(result, dict) else None
        if not stored:
            out.extend([None] * count)
            continue
        values = [element["result"] for element in stored[:count]]
        out.extend(values + [None] * (count - len(values)))
    return out, first_error


async def finalize_job(db: AsyncSession, job: Job) -> Job | None:
    """Move ``job`` to its terminal state (compare-and-set); None if already terminal."""
    status = final_status(job)
    aggregate: Any = None
    spec = job.spec
    strategy = spec.get("merge_strategy") or "collect"
    if strategy == "collect":
        aggregate, first_error = await _collected(db, job)
    else:
        elements, first_error = await _elements(db, job)
        if status in ("completed", "partial"):
            aggregate = merge_results(
                strategy,
                elements,
                kind=spec.get("kind", "single"),
                base_payload=job.payload,
                fan_out=spec.get("fan_out") or None,
                merge_key=spec.get("merge_key"),
                weight_field=spec.get("weight_field"),
            )
    if status not in ("completed", "partial"):
        aggregate = None
    elif spec.get("kind") == "single":
        aggregate = aggregate[0] if isinstance(aggregate, list) and aggregate else aggregate
    error = None
    action = None
    if status in ("failed", "partial") and job.error is None:
        failed = job.n_failed
        detail = ""
        if first_error:
            detail = (
                f"; first failure (task {first_error['task_index']}): {first_error.get('message')}"
            )
            action = first_error.get("recommended_action")
        error = {
            "code": "tasks_failed",
            "message": f"{failed} of {job.n_total} tasks failed{detail}",
        }
    elif status == "cancelled":
        error = {"code": "cancelled", "message": "job was cancelled"}
        action = "resubmit the job if it was cancelled by mistake"
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "aggregate_result": aggregate,
    }
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
        .where(Task.job_id == job.id, Task.status == "queued")
        .values(status="cancelled", finished_at=now)
    )
    n = cancelled.rowcount  # type: ignore[attr-defined]
    changed = await db.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.not_in(TERMINAL_JOB))
        .values(
            status="failed",
            finished_at=now,
            error={"code": code, "message": message},
            recommended_action=action,
            n_queued=Job.n_queued - n,
            n_cancelled=Job.n_cancelled + n,
            blocked=False,
        )
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]
