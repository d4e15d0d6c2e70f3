"""A workflow job's ``aggregate_result``, computed once when the job ends (``engine.finalize``).

Results are read a chunk at a time (``store.results.job_elements``) and folded element by element,
so the aggregate of a 100,000-point sweep never needs every result in memory. A result that lacks
a field is counted and reported in the warnings this returns (they go to the job's ``warnings``):
it never raises, since raising would fail the whole job with ``aggregate_failed``.
"""

from __future__ import annotations

import bisect
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.jobs.workflows.benchmark import BenchmarkFold
from computalot.jobs.workflows.map_reduce import MapReduceFold
from computalot.jobs.workflows.sweep import SweepFold
from computalot.store.models import Job, Task
from computalot.store.results import job_elements


async def _task_ids(db: AsyncSession, job: Job, indexes: list[int]) -> dict[int, str]:
    """The id of the task that ran each element index (a batched task runs several)."""
    if not indexes:
        return {}
    rows = (
        await db.execute(
            select(Task.element_start, Task.id)
            .where(Task.job_id == job.id, Task.account_id == job.account_id)
            .order_by(Task.element_start)
        )
    ).all()
    starts = [start for start, _ in rows]
    out = {}
    for index in indexes:
        at = bisect.bisect_right(starts, index) - 1
        if at >= 0:
            out[index] = rows[at][1]
    return out


async def workflow_aggregate(db: AsyncSession, job: Job) -> tuple[Any, list[str]]:
    """(aggregate, warnings) of a sweep, map_reduce or benchmark job."""
    spec = job.spec
    flow = spec["workflow"]
    kind = spec.get("kind", "single")
    fold: SweepFold | MapReduceFold | BenchmarkFold
    if flow["type"] == "sweep":
        fold = SweepFold(flow)
    elif flow["type"] == "benchmark":
        fold = BenchmarkFold(flow)
    else:
        fold = MapReduceFold(flow, kind, job.payload or {}, spec.get("fan_out") or {})
    unreadable = 0
    async for e in job_elements(db, job, items=True, decode=True):
        unreadable += bool(e.warning)
        fold.add(e.index, e.status, None if e.warning else e.result, e.item)
    if isinstance(fold, SweepFold):
        ids = await _task_ids(db, job, [index for _k, index, _p in fold.top()])
        aggregate, warnings = fold.result(ids)
    else:
        aggregate, warnings = fold.result()
    if unreadable:
        warnings.append(
            f"{unreadable} stored results could not be read back and were left out of "
            "aggregate_result"
        )
    return aggregate, warnings
