"""A job's ``aggregate_result`` (docs/llms-full.md, "Merge strategies"): kept once, never a second copy of the results.

``collect`` and ``keyed`` aggregates are the results themselves, rearranged: they are not stored
but built from the task rows when ``GET /results`` answers its first page, as long as the job's
results come to at most ``results_page_bytes`` (``jobs.result_bytes``); a bigger job answers
``aggregate_result: null`` with ``aggregate_omitted`` saying why and how to page instead. An
aggregate computed from the results (``weighted_avg``; later sweep rankings) is small and is
stored when the job ends, computed with the results read a chunk at a time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from computalot.jobs.merge import ElementResult, WeightedAverage, merge_results
from computalot.jobs.workflows import WORKFLOW_TYPES
from computalot.jobs.workflows.aggregate import workflow_aggregate
from computalot.states import JobStatus
from computalot.store.models import Job
from computalot.store.results import job_elements, read_job_elements

#: Strategies whose aggregate is a copy of the results (built on read, never stored).
COPY_STRATEGIES = frozenset({"collect", "keyed"})
PAGE_ACTION = "read each element's result in results[], following next_cursor until it is null"


def strategy_of(job: Job) -> str:
    spec = job.spec if isinstance(job.spec, dict) else {}
    return str(spec.get("merge_strategy") or "collect")


def has_aggregate(job: Job) -> bool:
    """Only a job that completed (or partly) has an aggregate."""
    return job.status in (JobStatus.COMPLETED, JobStatus.PARTIAL)


async def copied_aggregate(
    db: AsyncSession | AsyncConnection, job: Job, *, max_bytes: int
) -> tuple[Any, dict[str, Any] | None]:
    """:func:`read_copied_aggregate` in one hop."""
    return await db.run_sync(read_copied_aggregate, job, max_bytes=max_bytes)


def read_copied_aggregate(
    db: Session | Connection, job: Any, *, max_bytes: int
) -> tuple[Any, dict[str, Any] | None]:
    """(``aggregate_result``, ``aggregate_omitted``) of a ``collect`` / ``keyed`` job.

    Results pass through as stored (``RawJSON``) where they can, so building the aggregate
    decodes only batched tasks' results."""
    if not has_aggregate(job):
        return None, None
    total = int(job.result_bytes or 0)
    if total > max_bytes:
        return None, {
            "reason": "too_large",
            "message": f"the job's results take {total} bytes, more than one answer carries "
            f"({max_bytes} bytes, results_page_bytes); its aggregate would repeat them all",
            "result_bytes": total,
            "limit_bytes": max_bytes,
            "recommended_action": PAGE_ACTION,
        }
    spec = job.spec
    strategy = strategy_of(job)
    elements = [
        ElementResult(e.index, e.status, e.result, e.item)
        for e in read_job_elements(db, job, items=strategy == "keyed", decode=False)
    ]
    try:
        aggregate = merge_results(
            strategy,
            elements,
            kind=spec.get("kind", "single"),
            base_payload=job.payload,
            fan_out=spec.get("fan_out") or None,
            merge_key=spec.get("merge_key"),
        )
    except Exception as exc:  # odd stored data: the results themselves are still readable
        return None, {
            "reason": "failed",
            "message": f"the aggregate could not be built: {type(exc).__name__}: {exc}"[:500],
            "recommended_action": PAGE_ACTION,
        }
    if spec.get("kind") == "single" and isinstance(aggregate, list):
        aggregate = aggregate[0] if aggregate else None
    return aggregate, None


async def computed_aggregate(db: AsyncSession, job: Job) -> tuple[Any, list[str]]:
    """The stored aggregate of a job whose strategy computes one (``weighted_avg``), and
    warnings for the job; raises on data the strategy cannot use (the caller fails the job)."""
    spec = job.spec
    strategy = strategy_of(job)
    if strategy in WORKFLOW_TYPES:  # sweep, map_reduce, benchmark: the job type's aggregate
        return await workflow_aggregate(db, job)
    if strategy != "weighted_avg":
        raise ValueError(f"unknown merge strategy {strategy!r}")
    average = WeightedAverage(
        spec.get("kind", "single"),
        job.payload,
        spec.get("fan_out") or None,
        spec.get("weight_field"),
    )
    unreadable = 0
    async for e in job_elements(db, job, items=True, decode=True):
        unreadable += bool(e.warning)
        average.add(ElementResult(e.index, e.status, e.result, e.item))
    warnings = []
    if unreadable:
        warnings.append(
            f"{unreadable} stored results could not be read back and were left out of "
            "aggregate_result"
        )
    return average.result(), warnings
