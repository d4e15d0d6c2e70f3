"""Results in the store on both backends, without Ray: the worker's text stored and read back
unchanged, pages by bytes, the per-job cap held in the recording transaction, an aggregate
that cannot be computed, and rows that cannot be read back."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text

from computalot.engine import claiming, settling
from computalot.engine import rows as engine_rows
from computalot.engine.attempt import Outcome
from computalot.engine.outcomes import judge_outcome
from computalot.engine.result_file import prepare_result
from computalot.jobs.aggregate import copied_aggregate
from computalot.store.db import Store
from computalot.store.events import write_events
from computalot.store.models import Job, Task
from computalot.store.results import RESULT_TEXT, results_page
from serve_app.raw_response import render_raw
from tests.support.store_rows import items_job


async def running_job(store: Store, n: int, **spec: Any) -> Job:
    """A job of ``n`` single-element tasks, all claimed (attempt 1 running)."""
    job = await items_job(store, n, owner="results", spec=spec)
    async with store.sessions() as db:
        await claiming.claim_tasks(
            db, {job.id: n}, "epoch", engine_rows.JobCache(), {job.id: "queued"}
        )
        await db.commit()
    return job


async def record(
    store: Store,
    job: Job,
    files: dict[int, str],
    *,
    job_cap: int | None = None,
    apart: bool = False,
) -> None:
    """Record attempt 1 of the tasks at these indices as exited 0 with these result files;
    ``apart``: each text comes as run_task's second return value does (UTF-8 bytes in a numpy
    array), not inside the outcome."""
    async with store.sessions() as db:
        ids = await db.execute(select(Task.index, Task.id).where(Task.job_id == job.id))
        by_index = dict(ids.tuples().all())
        found = await engine_rows.load_task_rows(db, [by_index[i] for i in files])
        info = (await engine_rows.JobCache().load(db, [job.id]))[job.id]
        judged = []
        for index, raw in files.items():
            fields = prepare_result(raw.encode(), batched=False, element_count=1, max_bytes=1 << 20)
            data = None
            if apart:
                data = np.frombuffer(fields.pop("result_text").encode(), dtype=np.uint8)
                fields["result_in_ref"] = True
            outcome = Outcome(status="ok", exit_code=0, **fields)
            verdict = judge_outcome(outcome, data)
            judged.append(settling.Judged(info, found[by_index[index]], 1, verdict, outcome))
        events = await settling.apply_verdicts(
            db, judged, lost_budget=1, max_job_result_bytes=job_cap
        )
        await write_events(db, events)
        await db.commit()


async def reread(store: Store, job: Job) -> Job:
    async with store.sessions() as db:
        fresh = await db.get(Job, job.id)
        assert fresh is not None
        return fresh


async def aggregate_of(store: Store, job: Job) -> Any:
    async with store.sessions() as db:
        return await db.scalar(select(Job.aggregate_result).where(Job.id == job.id))


async def test_the_workers_text_is_stored_once_and_read_back_unchanged(store: Store) -> None:
    job = await running_job(store, 4)
    files = {i: json.dumps({"i": i, "pad": "é" * 100, "_quality": 0.5}) for i in range(4)}
    await record(store, job, files)
    stored = prepare_result(files[0].encode(), batched=False, element_count=1, max_bytes=1 << 20)
    async with store.sessions() as db:
        rows = await db.execute(
            select(Task.index, RESULT_TEXT, Task.result_bytes).where(Task.job_id == job.id)
        )
        texts = {index: (raw, size) for index, raw, size in rows.tuples()}
    assert texts[0] == (stored["result_text"], stored["result_bytes"])
    assert stored["result_bytes"] == len(stored["result_text"].encode())  # bytes, not characters
    done = await reread(store, job)
    assert done.status == "completed" and await aggregate_of(store, done) is None  # on read
    assert done.result_bytes == 4 * stored["result_bytes"]
    async with store.sessions() as db:
        pages: list[list[Any]] = []
        cursor = None
        while True:
            page, cursor = await results_page(
                db, done, limit=3, cursor=cursor, total=4, max_bytes=2 * stored["result_bytes"]
            )
            pages.append(json.loads(render_raw(page)))
            if cursor is None:
                break
        aggregate, omitted = await copied_aggregate(db, done, max_bytes=done.result_bytes)
        assert omitted is None
        assert json.loads(render_raw(aggregate)) == [{"i": i, "pad": "é" * 100} for i in range(4)]
        _none, omitted = await copied_aggregate(db, done, max_bytes=done.result_bytes - 1)
        assert omitted is not None and omitted["reason"] == "too_large"
    assert [len(p) for p in pages] == [2, 2]  # by bytes: two results a page, under limit=3
    elements = [e for page in pages for e in page]
    assert [e["result"]["i"] for e in elements] == [0, 1, 2, 3]
    assert all(e["result_quality"] == 0.5 for e in elements)


async def test_a_big_text_handed_over_as_bytes_is_stored_as_the_same_text(store: Store) -> None:
    """SQLite writes it into the row through incremental blob I/O (``store.bigtext``),
    PostgreSQL as text; both read it back as the worker wrote it, raw and decoded."""
    job = await running_job(store, 2)
    files = {i: json.dumps({"i": i, "pad": "€" * 50_000}) for i in range(2)}
    await record(store, job, files, apart=True)
    done = await reread(store, job)
    assert done.status == "completed"
    async with store.sessions() as db:
        rows = await db.execute(
            select(Task.index, RESULT_TEXT, Task.result_bytes, Task.result).where(
                Task.job_id == job.id
            )
        )
        sizes = []
        for index, raw, size, decoded in rows.tuples():
            want = prepare_result(
                files[index].encode(), batched=False, element_count=1, max_bytes=1 << 20
            )
            assert (raw, size) == (want["result_text"], want["result_bytes"])
            sizes.append(size)
            assert decoded == json.loads(files[index])
        page, _cursor = await results_page(
            db, done, limit=5, cursor=None, total=2, max_bytes=1 << 30
        )
        aggregate, _omitted = await copied_aggregate(db, done, max_bytes=1 << 30)
    assert [e["result"]["i"] for e in json.loads(render_raw(page))] == [0, 1]
    assert json.loads(render_raw(aggregate)) == [json.loads(files[i]) for i in range(2)]
    assert done.result_bytes == sum(sizes)
    assert sizes[0] == len('{"i":0,"pad":""}') + 3 * 50_000  # UTF-8: 3 bytes a euro sign


async def test_the_job_cap_holds_within_and_across_transactions(store: Store) -> None:
    job = await running_job(store, 4)
    body = json.dumps({"pad": "x" * 90})  # 100 bytes as stored
    await record(store, job, {0: body, 1: body, 2: body}, job_cap=250)
    async with store.sessions() as db:
        rows = await db.execute(
            select(Task.index, Task.status, Task.error, Task.result_bytes).where(
                Task.job_id == job.id
            )
        )
        tasks = {index: (status, error, size) for index, status, error, size in rows.tuples()}
    assert [tasks[i][0] for i in range(3)] == ["completed", "completed", "failed"]
    assert tasks[2][1]["code"] == "result_too_large" and tasks[2][2] is None
    assert (await reread(store, job)).result_bytes == 200
    await record(store, job, {3: json.dumps({"a": 1}) + " " * 10}, job_cap=250)  # 7 bytes fit
    done = await reread(store, job)
    assert done.result_bytes == 207 and done.status == "partial"


async def test_an_aggregate_that_cannot_be_computed_fails_its_job_alone(store: Store) -> None:
    """A chunks job's weight comes from each element's chunk; these rows have none."""
    job = await running_job(store, 2, kind="chunks", merge_strategy="weighted_avg")
    other = await running_job(store, 1, merge_strategy="weighted_avg")
    await record(store, job, {0: '{"v": 1}', 1: '{"v": 2}'})
    await record(store, other, {0: '{"v": 3}'})
    failed = await reread(store, job)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error["code"] == "aggregate_failed"
    assert "KeyError" in failed.error["message"] and failed.recommended_action
    fine = await reread(store, other)
    assert fine.status == "completed"
    assert await aggregate_of(store, other) == {"v": 3.0, "_weight_total": 1.0, "_n": 1}


async def test_rows_that_cannot_be_read_back_are_null_with_a_warning(store: Store) -> None:
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL's json type refuses text that is not JSON")
    job = await running_job(store, 3, merge_strategy="weighted_avg")
    await record(store, job, {0: '{"v": 1}', 1: '{"v": 2}'})
    async with store.engine.begin() as conn:  # a row edited by hand, stored before measuring
        await conn.execute(
            text(
                "UPDATE tasks SET result = '{oops', result_bytes = NULL WHERE job_id = :j AND "
                '"index" = 1'
            ),
            {"j": job.id},
        )
    await record(store, job, {2: '{"v": 4}'})
    done = await reread(store, job)
    assert done.status == "completed"
    assert await aggregate_of(store, done) == {"v": 2.5, "_weight_total": 2.0, "_n": 2}
    assert any("could not be read back" in w for w in done.warnings)
    async with store.sessions() as db:
        page, _cursor = await results_page(db, done, limit=10, cursor=None, total=3, max_bytes=1000)
    assert [e["result"] is None for e in page] == [False, True, False]
    assert "could not be read back" in page[1]["result_warnings"][-1]
