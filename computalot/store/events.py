"""Writing job events (docs/llms-full.md, "Streaming"), shared by their two writers.

The dispatcher writes status events (``job``, ``task``, ``retry``, ``result``, ``end``) in the
same transaction as the state change they report, so an event is never lost or ahead of its
state; the event hub writes live ``progress`` and ``output`` events. Streams read ``id > last``,
so ids must become visible in id order:

* SQLite has one writer at a time: a transaction holds the write lock from its first write to
  its commit, so ids handed out under the lock are committed in that order.
* PostgreSQL hands out sequence values at insert time and commits in any order; every event
  writer first takes one transaction-level advisory lock, which serialises them the same way.
  The dispatcher writes its events last, right before its commit, so the lock is held briefly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Table, and_, bindparam, exists, insert, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.states import TERMINAL_JOB
from computalot.store.models import Event, Job
from computalot.timeutil import utcnow

EVENTS: Table = Event.__table__  # type: ignore[assignment]


class EventRow(NamedTuple):
    """One job event to store: the dispatcher's status events and the hub's live events.

    ``event`` is the event's name (``job``, ``task``, ``retry``, ``result``, ``end``,
    ``progress``, ``output``); ``data`` its JSON object."""

    job_id: str
    account_id: str
    event: str
    data: dict[str, Any]


#: Events in the order they are to be written.
Events = list[EventRow]
#: Key of the PostgreSQL advisory lock every event writer holds until its commit.
EVENT_WRITER_LOCK = 0x636F6D705F657674  # "comp_evt"
WRITER_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
INSERT_EVENTS = insert(EVENTS)
JOBS: Table = Job.__table__  # type: ignore[assignment]
COLUMNS = ("job_id", "account_id", "event", "data", "created_at")
#: A live event is inserted only while its job has not ended: a job has ended (its ``end``
#: event is stored) once its status is final and no attempt of it is still running.
INSERT_LIVE = insert(EVENTS).from_select(
    list(COLUMNS),
    select(*(bindparam(c, type_=EVENTS.c[c].type) for c in COLUMNS)).where(
        ~exists(
            select(literal_column("1")).where(
                and_(
                    JOBS.c.id == bindparam("job_id"),
                    # Constants in the SQL text itself: the statement runs as an executemany,
                    # where expanding or literal-execute parameters are refused.
                    JOBS.c.status.in_([literal_column(f"'{s}'") for s in sorted(TERMINAL_JOB)]),
                    JOBS.c.n_running == literal_column("0"),
                )
            )
        )
    ),
)


def _rows(events: Iterable[EventRow]) -> list[dict[str, Any]]:
    created_at = utcnow()
    rows = [
        {"job_id": j, "account_id": a, "event": name, "data": data, "created_at": created_at}
        for j, a, name, data in events
    ]
    return rows


async def write_events(db: AsyncSession, events: Iterable[EventRow], *, live: bool = False) -> None:
    """Insert ``events`` in order in ``db``'s transaction (the caller commits).

    ``live``: they are a running task's progress and output (the event hub's), each dropped if
    its job has ended by the time it is written, so a job's ``end`` stays its last event."""
    rows = _rows(events)
    if not rows:
        return
    conn = await db.connection()
    if conn.dialect.name == "postgresql":
        await conn.execute(WRITER_LOCK, {"key": EVENT_WRITER_LOCK})
    await conn.execute(INSERT_LIVE if live else INSERT_EVENTS, rows)
