"""The result cache in the store on both backends, without Ray: a planned (big) job's chunks
are answered from completed tasks of the same account, copied inside the database; a job all
of whose tasks are answered ends in its planner's last transaction with its ``end`` event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from computalot.jobs.planning import Planner, Planning, plan_input
from computalot.states import JobStatus, TaskStatus
from computalot.store.db import Store
from computalot.store.models import Event, Job, Task
from computalot.timeutil import utcnow
from tests.support.store_rows import job_row, new_member

N = 12
SPEC = {
    "kind": "by",
    "fan_out": {"by": "x"},
    "runner_command": ["python3", "r.py"],
    "cache": {"refresh": False, "max_age_s": None},
}


class Kicks:
    def __init__(self) -> None:
        self.announced: list[str] = []

    def kick(self, blocked: bool = False) -> None:
        pass

    def announce(self, job_id: str) -> None:
        self.announced.append(job_id)


async def planned(
    store: Store, planner: Planner, account_id: str, xs: list[int], **spec: Any
) -> str:
    """Plan a cache-enabled ``by`` job of ``xs`` to the end; its id."""
    stored = plan_input({"x": xs}, {"by": "x"}, None)
    job = job_row(
        account_id,
        status=JobStatus.PLANNING,
        spec={**SPEC, **spec},
        payload={"x": None},
        n_total=len(xs),
        n_queued=0,
        planner_id=planner.id,
        planner_lease_until=utcnow() + timedelta(seconds=30),
        plan_input=stored,
    )
    async with store.sessions() as db:
        db.add(job)
        await db.commit()
    await planner._run(Planning(job.id, account_id, stored, 0, False))
    return job.id


async def run_all(store: Store, job_id: str, failing: frozenset[int] = frozenset()) -> None:
    """Stand in for the dispatcher: every task ends, completed with a result (or failed)."""
    async with store.sessions() as db:
        tasks = (await db.execute(select(Task).where(Task.job_id == job_id))).scalars().all()
        for task in tasks:
            ok = task.index not in failing
            task.status = TaskStatus.COMPLETED if ok else TaskStatus.FAILED
            task.attempt = 1
            task.finished_at = utcnow()
            task.result = {"y": task.item[0] * 2} if ok else None
            task.result_bytes = 9 if ok else None
            task.billed_s = 1.5
        await db.commit()


async def rows(store: Store, job_id: str) -> tuple[Job, list[Task], list[str]]:
    async with store.sessions() as db:
        job = await db.get(Job, job_id, populate_existing=True)
        assert job is not None
        tasks = list(
            (await db.execute(select(Task).where(Task.job_id == job_id).order_by(Task.index)))
            .scalars()
            .all()
        )
        events = list(
            (await db.execute(select(Event.event).where(Event.job_id == job_id).order_by(Event.id)))
            .scalars()
            .all()
        )
    return job, tasks, events


async def test_a_planned_job_is_answered_from_completed_tasks(store: Store) -> None:
    engine = Kicks()
    planner = Planner(store, engine, chunk_rows=5)
    account = await new_member(store, "cache")
    first = await planned(store, planner, account, list(range(N)))
    job, tasks, _ = await rows(store, first)
    assert job.status == JobStatus.QUEUED and job.n_queued == N
    assert all(t.cache_key and t.cached_from is None for t in tasks)
    await run_all(store, first, failing=frozenset({3}))

    second = await planned(store, planner, account, list(range(N)))
    job, tasks, events = await rows(store, second)
    # task 3 failed: never an entry, so it is queued; every other one is answered
    assert [t.status for t in tasks].count(TaskStatus.COMPLETED) == N - 1
    assert tasks[3].status == TaskStatus.QUEUED and tasks[3].cache_key
    assert job.status == JobStatus.QUEUED
    assert (job.n_queued, job.n_completed, job.result_bytes) == (1, N - 1, 9 * (N - 1))
    hit = tasks[5]
    assert hit.result == {"y": 10} and hit.result_bytes == 9 and hit.billed_s == 0
    assert hit.attempt == 0 and hit.cache_key is None and hit.cached_from is not None
    assert hit.started_at == hit.finished_at == job.created_at  # answered at its submit
    assert events == ["job"]  # born completed: no task event of its own, and no end yet

    await run_all(store, second)  # task 3 completes now; its row is the entry for its key
    third = await planned(store, planner, account, list(range(N)))
    job, tasks, events = await rows(store, third)
    assert job.status == JobStatus.COMPLETED, job.status
    assert all(t.cached_from is not None for t in tasks)
    assert tasks[3].cached_from == (await rows(store, second))[1][3].id
    assert events[-2:] == ["job", "end"]
    assert third in engine.announced


async def test_other_accounts_refresh_and_max_age(store: Store) -> None:
    planner = Planner(store, Kicks(), chunk_rows=5)
    account = await new_member(store, "cache")
    source = await planned(store, planner, account, [100, 101])
    await run_all(store, source)

    stranger = await new_member(store, "other")
    theirs = await planned(store, planner, stranger, [100, 101])
    assert all(t.status == TaskStatus.QUEUED for t in (await rows(store, theirs))[1])

    refresh = {"cache": {"refresh": True, "max_age_s": None}}
    refreshed = await planned(store, planner, account, [100, 101], **refresh)
    assert all(t.status == TaskStatus.QUEUED for t in (await rows(store, refreshed))[1])

    async with store.sessions() as db:  # the entries finished an hour ago
        old = utcnow() - timedelta(hours=1)
        await db.execute(update(Task).where(Task.job_id == source).values(finished_at=old))
        await db.commit()
    young = {"cache": {"refresh": False, "max_age_s": 60}}
    aged = await planned(store, planner, account, [100, 101], **young)
    assert all(t.status == TaskStatus.QUEUED for t in (await rows(store, aged))[1])
    anyage = await planned(store, planner, account, [100, 101])
    job, tasks, _ = await rows(store, anyage)
    assert job.status == JobStatus.COMPLETED
    assert {t.cached_from for t in tasks} == {t.id for t in (await rows(store, source))[1]}
