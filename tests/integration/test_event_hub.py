"""The event hub on a real SQLite store, outside Ray: its barrier orders a task's live events
before the status events the dispatcher writes after it (docs/llms-full.md, "Streaming")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from computalot.engine import hub as hub_module
from computalot.engine.hub import EventHub
from computalot.store.jobs import stream_events
from computalot.store.migrate import upgrade
from tests.support.store_rows import job_row, new_member


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EventHub]:
    monkeypatch.setenv("COMPUTALOT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("COMPUTALOT_DATABASE_URL", raising=False)
    event_hub = EventHub()
    await upgrade(event_hub.store.engine)
    yield event_hub
    event_hub._writer.cancel()
    await event_hub.store.close()


@pytest.fixture
async def job(hub: EventHub) -> tuple[str, str]:
    """(job id, owner) of a job in the hub's store."""
    owner = await new_member(hub.store, "hub")
    row = job_row(owner)
    async with hub.store.sessions() as db:
        db.add(row)
        await db.commit()
    return row.id, owner


def live(job_id: str, owner: str, n: int) -> tuple[str, str, str, int, str, dict[str, str]]:
    return (job_id, owner, "task-1", 1, "output", {"stream": "stdout", "text": f"line {n}\n"})


async def test_barrier_waits_for_the_events_it_counts_even_when_they_arrive_after_it(
    hub: EventHub, job: tuple[str, str]
) -> None:
    job_id, owner = job
    # Ray may start an async actor's calls out of order: the barrier can run before the live
    # events it must wait for have arrived.
    barrier = asyncio.create_task(hub.barrier("task-1", 1, 2))
    await asyncio.sleep(0.05)
    assert not barrier.done()
    hub.task_live(*live(job_id, owner, 1))
    await asyncio.sleep(0.1)
    assert not barrier.done(), "returned with one of two events stored"
    hub.task_live(*live(job_id, owner, 2))
    await asyncio.wait_for(barrier, 5)
    async with hub.store.sessions() as db:
        stored = await stream_events(db, owner, [job_id], after=0, limit=10)
    assert [row[3]["text"] for row in stored] == ["line 1\n", "line 2\n"]


async def test_barrier_counts_only_the_current_attempt(
    hub: EventHub, job: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, owner = job
    hub.task_live(*live(job_id, owner, 1))  # attempt 1
    await asyncio.wait_for(hub.barrier("task-1", 1, 1), 5)
    monkeypatch.setattr(hub_module, "BARRIER_TIMEOUT_S", 0.3)
    with pytest.raises(TimeoutError):  # attempt 2 sent one event that never arrived
        await hub.barrier("task-1", 2, 1)
    # a finished task's bookkeeping goes with its terminal status event
    await hub.written({job_id: 1}, ["task-1"])
    assert "task-1" not in hub.stored_live and "task-1" not in hub.tails


async def test_wait_any_names_the_jobs_with_news_since_the_callers_version(
    hub: EventHub, job: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, owner = job
    epoch, version, jobs = await hub.wait_any(None, 0, 5)
    assert jobs is None, "a caller of another epoch learns nothing about what changed"
    waiting = asyncio.create_task(hub.wait_any(epoch, version, 5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    hub.task_live(*live(job_id, owner, 1))  # stored by the hub's writer, then announced
    _epoch, version, jobs = await asyncio.wait_for(waiting, 5)
    assert jobs == [job_id]
    await hub.written({"job_other": 2, job_id: 1}, [])
    _epoch, latest, jobs = await hub.wait_any(epoch, version, 5)
    assert set(jobs or []) == {"job_other", job_id}
    assert await hub.wait_any(epoch, latest, 0.1) == (epoch, latest, [])
    monkeypatch.setattr(hub, "recent", hub.recent.__class__(hub.recent, maxlen=1))
    assert (await hub.wait_any(epoch, version, 5))[2] is None, "too far behind: unknown"


async def test_an_event_the_store_refuses_alone_is_dropped_and_the_rest_are_stored(
    hub: EventHub, job: tuple[str, str]
) -> None:
    job_id, owner = job
    hub.task_live(*live(job_id, owner, 1))
    # A value no JSON writer takes stands for anything the store refuses on its own.
    hub.task_live(job_id, owner, "task-1", 1, "progress", {"progress": {"bad": object()}})
    hub.task_live(*live(job_id, owner, 3))
    await asyncio.wait_for(hub.barrier("task-1", 1, 3), 10)
    async with hub.store.sessions() as db:
        stored = await stream_events(db, owner, [job_id], after=0, limit=10)
    assert [data["text"] for _id, _job, _name, data in stored] == ["line 1\n", "line 3\n"]
    health = await hub.ping()
    assert health["status"] == "ok" and health["dropped"] == 1


async def test_ping_says_stuck_while_writes_keep_failing(
    hub: EventHub, job: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, owner = job

    async def refuse(*_args: object) -> None:
        raise OSError("disk full")

    async def store_down() -> bool:
        return False

    monkeypatch.setattr(hub, "_write", refuse)
    monkeypatch.setattr(hub, "_store_answers", store_down)
    monkeypatch.setattr(hub_module, "STUCK_AFTER_S", 0.2)
    hub.task_live(*live(job_id, owner, 1))
    await asyncio.sleep(0.8)
    health = await hub.ping()
    assert health["status"].startswith("stuck: no live event stored"), health
    assert "disk full" in health["status"] and health["pending"] == 1


async def test_live_events_of_an_ended_job_are_never_stored(hub: EventHub) -> None:
    """A job's ``end`` is its last event: a live event arriving late (its attempt's barrier
    timed out) is dropped once the job has ended, but not while a cancelled job's attempt is
    still being recorded."""
    from sqlalchemy import update

    from computalot.store.models import Job

    owner = await new_member(hub.store, "hub-ended")
    row = job_row(owner, status="cancelled", n_running=1)
    async with hub.store.sessions() as db:
        db.add(row)
        await db.commit()
    hub.task_live(*live(row.id, owner, 1))  # the cancelled job's attempt still runs
    await asyncio.wait_for(hub.barrier("task-1", 1, 1), 5)
    async with hub.store.sessions() as db:
        await db.execute(update(Job).where(Job.id == row.id).values(n_running=0))
        await db.commit()
    hub.task_live(*live(row.id, owner, 2))  # after the job ended
    await asyncio.wait_for(hub.barrier("task-1", 1, 2), 5)
    async with hub.store.sessions() as db:
        stored = await stream_events(db, owner, [row.id], after=0, limit=10)
    assert [r[3]["text"] for r in stored] == ["line 1\n"]
