"""Live events (progress, output) are written as a batch, and never after their job's end.

Store-level, on both backends: the event hub writes each flush as one multi-row statement; a
row of a job that has ended (final status, no attempt running) is dropped by the statement
itself, so a job's ``end`` stays its last event.
"""

from __future__ import annotations

from sqlalchemy import select

from computalot.states import JobStatus
from computalot.store.db import Store
from computalot.store.events import EventRow, write_events
from computalot.store.models import Event
from tests.support.store_rows import job_row, new_member


def progress(job_id: str, account_id: str, n: int) -> EventRow:
    data = {"task_id": f"tsk_{n}", "attempt": 1, "progress": {"step": n}}
    return EventRow(job_id, account_id, "progress", data)


async def test_a_batch_is_written_whole_and_an_ended_jobs_rows_are_dropped(store: Store) -> None:
    account_id = await new_member(store, "live")
    running = job_row(account_id, status=JobStatus.RUNNING, n_running=2)
    # Cancelled but an attempt still running: its live events are still wanted.
    stopping = job_row(account_id, status=JobStatus.CANCELLED, n_running=1)
    ended = job_row(account_id, status=JobStatus.COMPLETED, n_running=0)
    async with store.sessions() as db:
        db.add_all([running, stopping, ended])
        await db.commit()
    batch = [
        progress(job.id, account_id, n) for n in range(6) for job in (running, stopping, ended)
    ]
    async with store.sessions() as db:
        await write_events(db, batch, live=True)
        await db.commit()
    async with store.sessions() as db:
        query = select(Event.job_id, Event.data).order_by(Event.id)
        stored = [(job_id, data["progress"]["step"]) for job_id, data in await db.execute(query)]
    wanted = [(e.job_id, e.data["progress"]["step"]) for e in batch if e.job_id != ended.id]
    assert stored == wanted
