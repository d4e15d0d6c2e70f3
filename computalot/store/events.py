"""Writing job events (SPEC §5.8), shared by their two writers.

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
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.store.models import Event
from computalot.timeutil import utcnow

EVENTS: Table = Event.__table__  # type: ignore[assignment]
#: ``(job_id, account_id, event name, data)``
EventRow = tuple[str, str, str, Any]
#: Key of the PostgreSQL advisory lock every event writer holds until its commit.
EVENT_WRITER_LOCK = 0x636F6D705F657674  # "comp_evt"
WRITER_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
INSERT_EVENTS = insert(EVENTS)


async def write_events(db: AsyncSession, events: Iterable[EventRow]) -> None:
    """Insert ``events`` in order in ``db``'s transaction (the caller commits)."""
    created_at = utcnow()
    rows = [
        {"job_id": j, "account_id": a, "event": name, "data": data, "created_at": created_at}
        for j, a, name, data in events
    ]
    if not rows:
        return
    conn = await db.connection()
    if conn.dialect.name == "postgresql":
        await conn.execute(WRITER_LOCK, {"key": EVENT_WRITER_LOCK})
    await conn.execute(INSERT_EVENTS, rows)
