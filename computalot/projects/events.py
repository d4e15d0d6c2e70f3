"""A project's stream events (``GET /projects/:name/stream``; docs/llms-full.md, "Projects").

``push``, ``init``, ``node``, ``status`` and ``kv`` events are written in the transaction of the
change they report (the caller commits), so an event is never lost or ahead of its state. Their
ids are the stream's ``id:``; like job events (``computalot.store.events``) they must become
visible in id order, so on PostgreSQL every writer first takes one transaction-level advisory
lock (SQLite has one writer at a time already).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.store.models import ProjectEvent
from computalot.timeutil import utcnow

#: The event names a project stream carries.
PROJECT_EVENTS = ("push", "init", "node", "status", "kv")
#: Key of the PostgreSQL advisory lock every project event writer holds until its commit.
PROJECT_EVENT_LOCK = 0x636F6D705F707276  # "comp_prv"
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


async def write_project_event(
    db: AsyncSession, project_id: str, account_id: str, event: str, data: dict[str, Any]
) -> None:
    """Store one event of the project's stream in ``db``'s transaction."""
    if event not in PROJECT_EVENTS:
        raise ValueError(f"unknown project event {event!r}; one of {PROJECT_EVENTS}")
    conn = await db.connection()
    if conn.dialect.name == "postgresql":
        await conn.execute(_LOCK, {"key": PROJECT_EVENT_LOCK})
    await conn.execute(
        insert(ProjectEvent),
        [
            {
                "project_id": project_id,
                "account_id": account_id,
                "event": event,
                "data": data,
                "created_at": utcnow(),
            }
        ],
    )


async def project_events_after(
    db: AsyncSession, project_id: str, after: int, limit: int = 200
) -> list[tuple[int, str, Any]]:
    """``(id, event, data)`` of the project's events with ``id > after``, oldest first."""
    query = (
        select(ProjectEvent.id, ProjectEvent.event, ProjectEvent.data)
        .where(ProjectEvent.project_id == project_id, ProjectEvent.id > after)
        .order_by(ProjectEvent.id)
        .limit(limit)
    )
    return [(int(i), str(e), d) for i, e, d in (await db.execute(query)).all()]
