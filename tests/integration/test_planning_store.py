"""Planning in the store on both backends, without Ray: a big job's rows written in chunks,
then ``queued`` with its event; a job that ends while planning keeps no queued task; a planner
that died is taken over and the rows are resumed, never written twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from computalot.jobs.planning import Planner, Planning, plan_input, replan
from computalot.states import JobStatus, TaskStatus
from computalot.store.db import Store
from computalot.store.models import Event, Job, Task
from computalot.timeutil import utcnow
from tests.support.store_rows import job_row, new_member

N = 23


class Kicks:
    def __init__(self) -> None:
        self.kicked: list[bool] = []
        self.announced: list[str] = []

    def kick(self, blocked: bool = False) -> None:
        self.kicked.append(blocked)

    def announce(self, job_id: str) -> None:
        self.announced.append(job_id)


async def planning_job(store: Store, planner_id: str, lease_s: float = 30.0) -> Planning:
    """A stored ``planning`` job of N ``by`` elements, none of its rows written yet."""
    account_id = await new_member(store, "plan")
    stored = plan_input({"x": list(range(N))}, {"by": "x"}, None)
    job = job_row(
        account_id,
        status=JobStatus.PLANNING,
        spec={"kind": "by", "fan_out": {"by": "x"}, "runner_command": ["true"]},
        payload={"x": None},
        n_total=N,
        n_queued=0,
        planner_id=planner_id,
        planner_lease_until=utcnow() + timedelta(seconds=lease_s),
        plan_input=stored,
    )
    async with store.sessions() as db:
        db.add(job)
        await db.commit()
    return Planning(job.id, account_id, stored, 0, False)


async def job_and_tasks(store: Store, job_id: str) -> tuple[Job, dict[str, int], list[int]]:
    async with store.sessions() as db:
        job = await db.get(Job, job_id, populate_existing=True)
        assert job is not None
        counts = dict(
            (
                await db.execute(
                    select(Task.status, func.count())
                    .where(Task.job_id == job_id)
                    .group_by(Task.status)
                )
            )
            .tuples()
            .all()
        )
        query = select(Task.index).where(Task.job_id == job_id).order_by(Task.index)
        indexes = list((await db.execute(query)).scalars())
    return job, counts, indexes


async def test_rows_are_written_in_chunks_then_the_job_is_queued(store: Store) -> None:
    engine = Kicks()
    planner = Planner(store, engine, chunk_rows=5)
    planning = await planning_job(store, planner.id)
    await planner._run(planning)
    job, counts, indexes = await job_and_tasks(store, planning.job_id)
    assert job.status == JobStatus.QUEUED
    assert (job.n_total, job.n_queued, job.planned_tasks) == (N, N, N)
    assert job.planner_id is None and job.planner_lease_until is None
    assert counts == {TaskStatus.QUEUED: N}
    assert indexes == list(range(N))
    assert engine.kicked == [False]
    assert engine.announced == [planning.job_id]
    async with store.sessions() as db:
        events = await db.execute(select(Event.event, Event.data).where(Event.job_id == job.id))
        ((name, data),) = [tuple(e) for e in events]
        assert name == "job" and data["id"] == job.id and data["status"] == "queued"
        assert data["task_counts"]["total"] == N and data["task_counts"]["queued"] == N


async def test_a_job_cancelled_while_planning_keeps_no_queued_task(store: Store) -> None:
    planner = Planner(store, None, chunk_rows=5)
    planning = await planning_job(store, planner.id)
    tasks = replan(planning.stored)
    assert await planner._write_chunk(planning, 0, tasks[:5])
    assert await planner._write_chunk(planning, 5, tasks[5:10])
    async with store.sessions() as db:
        # A cancel that ends the job but leaves the queued rows (as a writer that cancels
        # tasks before the job could): the planner's next chunk must clean up.
        await db.execute(
            update(Job).where(Job.id == planning.job_id).values(status=JobStatus.CANCELLED)
        )
        await db.commit()
    later = Planning(planning.job_id, planning.account_id, planning.stored, 10, False)
    await planner._run(later)
    job, counts, _ = await job_and_tasks(store, planning.job_id)
    assert job.status == JobStatus.CANCELLED
    assert counts == {TaskStatus.CANCELLED: 10}
    assert (job.n_total, job.n_queued, job.n_cancelled) == (10, 0, 10)
    assert job.planner_id is None


async def test_a_dead_planners_job_is_taken_over_and_resumed(store: Store) -> None:
    dead = Planner(store, None, chunk_rows=4)
    planning = await planning_job(store, dead.id, lease_s=-1)
    tasks = replan(planning.stored)
    assert await dead._write_chunk(planning, 0, tasks[:4])
    async with store.sessions() as db:  # the dead planner's last lease has run out
        past = utcnow() - timedelta(seconds=1)
        await db.execute(
            update(Job).where(Job.id == planning.job_id).values(planner_lease_until=past)
        )
        await db.commit()
    engine = Kicks()
    rescuer = Planner(store, engine, chunk_rows=4)
    other = Planner(store, None)
    assert await rescuer.resume_stale() >= 1
    assert await other.resume_stale() == 0  # only one process takes a stale lease
    await _drain(rescuer)
    job, counts, indexes = await job_and_tasks(store, planning.job_id)
    assert job.status == JobStatus.QUEUED
    assert indexes == list(range(N))
    assert counts == {TaskStatus.QUEUED: N}
    assert job.n_queued == N
    # The dead planner coming back writes nothing more.
    assert not await dead._write_chunk(planning, 4, tasks[4:8])


async def _drain(planner: Planner) -> Any:
    import asyncio

    while planner.tasks:
        await asyncio.gather(*planner.tasks)
