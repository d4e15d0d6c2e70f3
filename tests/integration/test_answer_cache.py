"""Encoded answers kept per replica (``serve_app.answers``) are byte-for-byte the answers built
from scratch, follow every change of the job's row, and are kept only for settled jobs, on
both backends (issue #18 §3)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from computalot import views
from computalot.errors import NotFound
from computalot.jobs.aggregate import copied_aggregate
from computalot.store import hot_reads
from computalot.store import jobs as orm_reads
from computalot.store import results as results_store
from computalot.store.db import Store
from computalot.store.jsoncodec import dumps_bytes
from computalot.store.models import Job, Task
from computalot.timeutil import utcnow
from serve_app.answer_cache import AnswerCache
from serve_app.answers import job_answer, jobs_answer, results_answer
from serve_app.raw_response import render_raw
from tests.support.store_rows import job_row, new_member, task_row

SPEC = {"kind": "items", "element_count": 3, "runner_command": ["python3", "r.py"]}


async def finished_job(store: Store, owner: str, **extra: Any) -> str:
    """A completed 3-task job with a result per task."""
    now = utcnow()
    job = job_row(
        owner,
        status="completed",
        spec=SPEC,
        n_total=3,
        n_completed=3,
        started_at=now,
        finished_at=now,
        **{"meta": {"m": 1}, **extra},
    )
    async with store.sessions() as db:
        db.add(job)
        await db.flush()
        db.add_all(
            task_row(job, i, status="completed", result={"v": i}, result_bytes=7) for i in range(3)
        )
        await db.commit()
    return job.id


async def from_scratch_job(store: Store, owner: str, job_id: str) -> bytes:
    async with store.sessions() as db:
        return dumps_bytes(views.job_out(await orm_reads.get_job(db, owner, job_id)))


async def from_scratch_results(store: Store, owner: str, job_id: str, limit: int) -> bytes:
    async with store.sessions() as db:
        job = await orm_reads.get_job(db, owner, job_id)
        counts = await results_store.element_counts(db, job)
        page, cursor = await results_store.results_page(
            db, job, limit=limit, cursor=None, total=sum(counts.values()), max_bytes=1 << 20
        )
        aggregate, omitted = await copied_aggregate(db, job, max_bytes=1 << 20)
        return render_raw(views.results_out(job, page, cursor, counts, aggregate, omitted))


async def test_job_answers_are_the_whole_answer_and_follow_the_row(store: Store) -> None:
    owner = await new_member(store, "ans")
    ids = [await finished_job(store, owner) for _ in range(3)]
    # orjson cannot write an integer beyond 64 bits: that job, and a list holding it, are
    # written whole by the standard library, as before.
    ids.append(await finished_job(store, owner, meta={"big": 2**70}))
    cache = AnswerCache()
    engine = store.engine
    for _round in range(2):  # built, then answered from the cache
        for job_id in ids:
            found = await hot_reads.run(engine, hot_reads.job_raw, owner, job_id)
            assert job_answer(cache, found) == await from_scratch_job(store, owner, job_id)
        for limit in (2, 10):
            found, cursor = await hot_reads.run(
                engine,
                hot_reads.list_jobs_raw,
                owner,
                status=None,
                project=None,
                tag=None,
                type=None,
                limit=limit,
                cursor=None,
            )
            async with store.sessions() as db:
                orm_page, orm_cursor = await orm_reads.list_jobs(
                    db,
                    owner,
                    status=None,
                    project=None,
                    tag=None,
                    type=None,
                    limit=limit,
                    cursor=None,
                )
            expected = {"jobs": [views.job_out(j) for j in orm_page], "next_cursor": orm_cursor}
            assert jobs_answer(cache, found, cursor) == dumps_bytes(expected)
    assert len(cache) == 3  # the job orjson cannot write is never kept

    async with store.sessions() as db:  # any column of the row moves: the next answer shows it
        await db.execute(update(Job).where(Job.id == ids[0]).values(warnings=["late"]))
        await db.commit()
    found = await hot_reads.run(engine, hot_reads.job_raw, owner, ids[0])
    answer = job_answer(cache, found)
    assert b'"warnings":["late"]' in answer
    assert answer == await from_scratch_job(store, owner, ids[0])


async def test_results_pages_of_settled_jobs_are_kept_while_the_row_holds(store: Store) -> None:
    owner, other = await new_member(store, "res"), await new_member(store, "other")
    job_id = await finished_job(store, owner)
    cache = AnswerCache()
    engine = store.engine

    async def answer(who: str = owner, limit: int = 2) -> bytes:
        return await hot_reads.run(
            engine,
            results_answer,
            who,
            job_id,
            limit=limit,
            cursor=None,
            page_bytes=1 << 20,
            cache=cache,
        )

    first = await answer()
    assert first == await from_scratch_results(store, owner, job_id, 2)
    assert b'"aggregate_result":[{"v":0},{"v":1},{"v":2}]' in first
    assert len(cache) == 1
    with pytest.raises(NotFound):  # the cache is asked only after the account-scoped read
        await answer(other)

    # A settled job's tasks do not change: the kept page is what answers (proof it is used).
    async with store.sessions() as db:
        await db.execute(update(Task).where(Task.job_id == job_id).values(result={"v": -1}))
        await db.commit()
    assert await answer() == first
    assert await answer(limit=3) == await from_scratch_results(store, owner, job_id, 3)

    # Anything that touches the job changes its row: the page is built again.
    async with store.sessions() as db:
        await db.execute(update(Job).where(Job.id == job_id).values(meta={"m": 2}))
        await db.commit()
    rebuilt = await answer()
    assert rebuilt != first
    assert rebuilt == await from_scratch_results(store, owner, job_id, 2)

    # Gone (retention deletes the tasks, then the job): 404, never the kept page.
    async with store.sessions() as db:
        await db.execute(Task.__table__.delete().where(Task.job_id == job_id))
        await db.execute(Job.__table__.delete().where(Job.id == job_id))
        await db.commit()
    with pytest.raises(NotFound):
        await answer()


async def test_results_of_unsettled_jobs_are_never_kept(store: Store) -> None:
    owner = await new_member(store, "run")
    engine = store.engine
    cache = AnswerCache()
    # Cancelled with a task still running: the job has ended but a task row will still move.
    job_id = await finished_job(store, owner)
    async with store.sessions() as db:
        await db.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="cancelled", n_completed=2, n_running=1)
        )
        await db.execute(
            update(Task).where(Task.job_id == job_id, Task.index == 2).values(status="running")
        )
        await db.commit()
    for _ in range(2):
        body = await hot_reads.run(
            engine,
            results_answer,
            owner,
            job_id,
            limit=10,
            cursor=None,
            page_bytes=1 << 20,
            cache=cache,
        )
        assert body == await from_scratch_results(store, owner, job_id, 10)
    assert len(cache) == 0
