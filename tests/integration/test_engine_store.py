"""The dispatcher's store operations on both backends: claim, settle, retry, finalise.

These are the Core SQL statements of the dispatcher's hot path (``UPDATE … RETURNING`` with a
limited subquery, executemany compare-and-set updates, counter increments), run against SQLite
and real PostgreSQL without Ray, so a statement only one backend accepts fails here.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from computalot.engine import claiming, settling
from computalot.engine import rows as engine_rows
from computalot.engine.attempt import Outcome
from computalot.engine.finalize import finalize_job
from computalot.engine.outcomes import infrastructure_loss, judge_outcome
from computalot.engine.result_file import prepare_result
from computalot.jobs.aggregate import copied_aggregate
from computalot.jobs.merge import ElementResult, merge_results
from computalot.store.db import Store
from computalot.store.models import Job, Task
from computalot.store.results import job_elements
from serve_app.raw_response import render_raw
from tests.support.store_rows import items_job, job_row, new_member, task_row

EPOCH = "epoch-test"


async def make_job(store: Store, n: int, *, max_retries: int = 0) -> Job:
    return await items_job(
        store, n, owner="engine", spec={"merge_strategy": "collect"}, max_retries=max_retries
    )


async def claim(store: Store, job: Job, count: int, cache: engine_rows.JobCache) -> tuple[Any, Any]:
    async with store.sessions() as db:
        runnable = {job.id: job for job in await claiming.runnable_jobs(db)}
        statuses = {job.id: runnable[job.id].status} if job.id in runnable else {}
        launches, events = await claiming.claim_tasks(db, {job.id: count}, EPOCH, cache, statuses)
        await db.commit()
    return launches, events


async def settle_outcomes(
    store: Store, job: Job, cache: engine_rows.JobCache, outcomes: list[tuple[Any, int, Any]]
) -> list[Any]:
    """``outcomes``: (task id, attempt, Outcome or Verdict) as the dispatcher would see."""
    async with store.sessions() as db:
        found = await engine_rows.load_task_rows(db, [task_id for task_id, _a, _o in outcomes])
        jobs = await cache.load(db, [job.id])
        judged = []
        for task_id, attempt, outcome in outcomes:
            task = found[task_id]
            if isinstance(outcome, Outcome):
                verdict = judge_outcome(outcome)
            else:
                verdict, outcome = outcome, None
            judged.append(settling.Judged(jobs[job.id], task, attempt, verdict, outcome))
        events = await settling.apply_verdicts(db, judged, lost_budget=1)
        await db.commit()
    return events


def ok(i: int) -> Outcome:
    """A run_task outcome whose result file held ``{"y": 2i}`` (read as the worker reads it)."""
    result = prepare_result(
        json.dumps({"y": 2 * i}).encode(), batched=False, element_count=1, max_bytes=1 << 20
    )
    return Outcome(status="ok", exit_code=0, **result)


async def counters(store: Store, job_id: str) -> dict[str, Any]:
    async with store.sessions() as db:
        job = await db.get(Job, job_id)
        assert job is not None
        return {
            "status": job.status,
            "queued": job.n_queued,
            "running": job.n_running,
            "completed": job.n_completed,
            "failed": job.n_failed,
        }


async def test_claim_takes_queued_tasks_in_index_order_once(store: Store) -> None:
    job = await make_job(store, 5)
    cache = engine_rows.JobCache()
    launches, events = await claim(store, job, 3, cache)
    assert [(t.index, attempt) for _j, t, attempt in launches] == [(0, 1), (1, 1), (2, 1)]
    assert all(t.item == [{"i": t.index}] and t.status == "running" for _j, t, _a in launches)
    assert {name for _j, _a, name, _d in events} == {"task", "job"}  # the job started too
    assert await counters(store, job.id) == {
        "status": "running",
        "queued": 2,
        "running": 3,
        "completed": 0,
        "failed": 0,
    }
    more, _events = await claim(store, job, 5, cache)
    assert [t.index for _j, t, _a in more] == [3, 4]
    nothing, _events = await claim(store, job, 5, cache)
    assert nothing == []
    async with store.sessions() as db:
        epochs = set(
            (await db.execute(select(Task.run_epoch).where(Task.job_id == job.id))).scalars()
        )
    assert epochs == {EPOCH}


async def test_retry_stale_outcome_and_finalisation(store: Store) -> None:
    job = await make_job(store, 3, max_retries=1)
    cache = engine_rows.JobCache()
    launches, _events = await claim(store, job, 3, cache)
    t0, t1, t2 = (t for _j, t, _a in launches)
    failed = Outcome(status="exit_nonzero", exit_code=3, error="exited with code 3")
    events = await settle_outcomes(store, job, cache, [(t0.id, 1, ok(0)), (t1.id, 1, failed)])
    names = [name for _j, _a, name, _d in events]
    assert names.count("result") == 1 and names.count("retry") == 1
    assert await counters(store, job.id) == {
        "status": "running",
        "queued": 1,
        "running": 1,
        "completed": 1,
        "failed": 0,
    }
    # A second report of an attempt that was already settled changes nothing.
    assert await settle_outcomes(store, job, cache, [(t0.id, 1, failed)]) == []
    retried, _events = await claim(store, job, 5, cache)
    assert [(t.id, attempt) for _j, t, attempt in retried] == [(t1.id, 2)]
    lost = infrastructure_loss("worker lost: test")
    events = await settle_outcomes(store, job, cache, [(t2.id, 1, lost), (t1.id, 2, ok(1))])
    # t2 lost its worker: retried on the infrastructure budget, not the user's retries
    assert [d["task_id"] for _j, _a, name, d in events if name == "retry"] == [t2.id]
    again, _events = await claim(store, job, 5, cache)
    assert [(t.id, attempt) for _j, t, attempt in again] == [(t2.id, 2)]
    events = await settle_outcomes(store, job, cache, [(t2.id, 2, ok(2))])
    end = [d for _j, _a, name, d in events if name == "end"]
    assert len(end) == 1 and end[0]["status"] == "completed"
    async with store.sessions() as db:
        done = await db.get(Job, job.id)
        assert done is not None
        aggregate, omitted = await copied_aggregate(db, done, max_bytes=1 << 20)
        assert json.loads(render_raw(aggregate)) == [{"y": 0}, {"y": 2}, {"y": 4}]
        assert omitted is None and done.result_bytes == 3 * len('{"y":0}')
        tasks = {
            t.index: t
            for t in (await db.execute(select(Task).where(Task.job_id == job.id))).scalars()
        }
    assert tasks[0].result == {"y": 0} and tasks[0].result_quality == 1.0
    assert tasks[0].result_bytes == len('{"y":0}')
    assert tasks[1].attempt == 2 and tasks[1].error is None and tasks[1].exit_code == 0
    assert tasks[2].lost_attempts == 1 and tasks[2].status == "completed"


async def test_job_cache_reads_immutable_fields_once_and_forgets(store: Store) -> None:
    job = await make_job(store, 1)
    cache = engine_rows.JobCache(limit=2)
    async with store.sessions() as db:
        first = await cache.load(db, [job.id, "job_missing"])
        assert list(first) == [job.id]
        assert first[job.id].spec["runner_command"] == ["true"]
        assert first[job.id].max_retries == 0
        other = await make_job(store, 1)
        third = await make_job(store, 1)
        both = await cache.load(db, [other.id, third.id])  # over the limit: starts afresh
        assert set(both) == {other.id, third.id} and job.id not in cache.jobs
    cache.forget([other.id])
    assert set(cache.jobs) == {third.id}


async def test_collect_aggregate_matches_the_general_merge(store: Store) -> None:
    """The ``collect`` aggregate built on read gives exactly what merge_results("collect") gives
    over the decoded elements, for single and batched tasks, completed, failed and cancelled
    ones; finalising stores none and names the first failure."""
    account_id = await new_member(store, "collect")
    job = job_row(
        account_id,
        type="structured_runner",
        status="running",
        spec={"kind": "by", "fan_out": {"by": "x"}, "merge_strategy": "collect"},
        payload={"x": None},
        n_total=4,
        n_completed=2,
        n_failed=1,
        n_cancelled=1,
    )
    rows = [  # (status, element_start, count, batched, item, result)
        (
            "completed",
            0,
            3,
            True,
            [0, 1, 2],
            {"elements": [{"result": {"y": v}} for v in (0, 2, 4)]},
        ),
        ("failed", 3, 2, True, [3, 4], None),
        ("completed", 5, 1, False, [5], {"y": 10}),
        ("cancelled", 6, 2, True, [6, 7], None),
    ]
    async with store.sessions() as db:
        db.add(job)
        await db.flush()
        for index, (status, start, count, batched, item, result) in enumerate(rows):
            error = {"code": "exit_nonzero", "message": "boom"} if status == "failed" else None
            db.add(
                task_row(
                    job,
                    index,
                    status=status,
                    attempt=1,
                    element_start=start,
                    element_count=count,
                    batched=batched,
                    item=item,
                    result=result,
                    error=error,
                )
            )
        await db.commit()
    async with store.sessions() as db:
        loaded = await db.get(Job, job.id)
        assert loaded is not None
        elements = [
            ElementResult(e.index, e.status, e.result, e.item)
            async for e in job_elements(db, loaded, items=True, decode=True)
        ]
        general = merge_results(
            "collect", elements, kind="by", base_payload={"x": None}, fan_out={"by": "x"}
        )
        finished = await finalize_job(db, loaded)
        assert finished is not None and finished.status == "partial"
        assert finished.aggregate_result is None  # a copy of the results: built on read
        assert finished.error is not None
        assert finished.error["message"] == "1 of 4 tasks failed; first failure (task 1): boom"
        direct, omitted = await copied_aggregate(db, finished, max_bytes=1 << 20)
        assert omitted is None
        assert (
            json.loads(render_raw(direct))
            == general
            == [{"y": 0}, {"y": 2}, {"y": 4}, None, None, {"y": 10}, None, None]
        )
