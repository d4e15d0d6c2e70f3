"""``GET /projects/:name/stream``: a project's events as Server-Sent Events (docs/llms-full.md,
"Projects": push, init, node, status, kv).

Events are the ``project_events`` rows (``computalot.projects.events``); their id is the SSE
``id:``, and ``Last-Event-ID`` (or ``?after=``) resumes without loss or repeat. A fresh stream
(no cursor) opens with an id-less ``status`` snapshot and then sends what happens from then on;
``?after=0`` replays the project's whole history. A comment heartbeat every 15 s.

Many watchers stay cheap: one poller per replica (:class:`ProjectFeed`) reads the new events of
every watched project in one query, at most every POLL_S, and hands them to the streams'
bounded queues; a stream first catches up from the store (short sessions), then follows the
queue, de-duplicating by id, so the overlap neither repeats nor loses an event. No open stream
holds a database connection, and the poller stops when nobody watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from computalot.errors import field_error
from computalot.projects import service, warm_state
from computalot.projects.events import project_events_after
from computalot.store.db import Store
from computalot.store.jsoncodec import dumps
from computalot.store.models import ProjectEvent
from serve_app.deps import Caller, Db
from serve_app.routes.streams import MAX_EVENT_ID, SSE_HEADERS, resume_after
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], route_class=StrictJSONRoute)
log = logging.getLogger("computalot.api")

POLL_S = 0.5  # how often the replica's poller reads watched projects' new events (seconds)
HEARTBEAT_S = 15.0
PAGE = 500
MAX_PENDING = 2000  # a stream further behind drops its queue and catches up from the store


def frame(event_id: int, name: str, data: Any) -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {dumps(data)}\n\n"


@dataclass(eq=False)
class _Watcher:
    project_id: str
    last_id: int
    pending: deque[tuple[int, str, Any]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lagged: bool = True

    def offer(self, events: list[tuple[int, str, Any]]) -> None:
        if self.lagged:
            return
        if len(self.pending) + len(events) > MAX_PENDING:
            self.pending.clear()
            self.lagged = True
        else:
            self.pending.extend(events)
        self.wake.set()

    def frames(self, events: list[tuple[int, str, Any]]) -> str:
        out = []
        for event_id, name, data in events:
            if event_id > self.last_id:
                self.last_id = event_id
                out.append(frame(event_id, name, data))
        return "".join(out)


class ProjectFeed:
    """The replica's one poller of project events, shared by its open project streams."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.watchers: dict[str, set[_Watcher]] = {}
        self.cursor: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.reads = asyncio.Semaphore(4)  # catch-up reads at once
        #: Held by each poll and by adding a watcher: a poll that began without a watcher's
        #: project ends before that watcher's catch-up read begins, so what it skipped past
        #: was committed before that read (and is in it).
        self.lock = asyncio.Lock()

    async def subscribe(self, watcher: _Watcher) -> None:
        async with self.lock:
            self.watchers.setdefault(watcher.project_id, set()).add(watcher)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def unsubscribe(self, watcher: _Watcher) -> None:
        group = self.watchers.get(watcher.project_id)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self.watchers[watcher.project_id]

    async def _run(self) -> None:
        while self.watchers:
            try:
                await self._poll()
            except Exception as exc:  # the store is away: streams wait, the poller retries
                log.warning("project stream poll failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(POLL_S)
        self.task = None
        self.cursor = None  # the next poller starts from its first watchers

    async def _poll(self) -> None:
        async with self.lock:
            await self._read()

    async def _read(self) -> None:
        """Hand out the watched projects' events after the cursor. The newest id is read
        first: everything up to it is committed, so the cursor may move past it safely. The
        cursor starts at its first watchers' oldest position."""
        if not self.watchers:
            return
        if self.cursor is None:
            self.cursor = min(w.last_id for group in self.watchers.values() for w in group)
        async with self.store.sessions() as db:
            newest = int((await db.execute(select(func.max(ProjectEvent.id)))).scalar() or 0)
            ids = sorted(self.watchers)
            rows = (
                await db.execute(
                    select(
                        ProjectEvent.id,
                        ProjectEvent.project_id,
                        ProjectEvent.event,
                        ProjectEvent.data,
                    )
                    .where(ProjectEvent.project_id.in_(ids), ProjectEvent.id > self.cursor)
                    .order_by(ProjectEvent.id)
                    .limit(PAGE)
                )
            ).all()
        by_project: dict[str, list[tuple[int, str, Any]]] = {}
        for event_id, project_id, name, data in rows:
            by_project.setdefault(str(project_id), []).append((int(event_id), str(name), data))
        for project_id, events in by_project.items():
            for watcher in list(self.watchers.get(project_id, ())):
                watcher.offer(events)
        last = int(rows[-1][0]) if rows else self.cursor
        self.cursor = max(last, newest) if len(rows) < PAGE else last


def feed_of(request: Request) -> ProjectFeed:
    feed: ProjectFeed | None = getattr(request.app.state, "project_feed", None)
    if feed is None:
        feed = request.app.state.project_feed = ProjectFeed(request.app.state.store)
    return feed


async def _catch_up(feed: ProjectFeed, watcher: _Watcher) -> AsyncIterator[str]:
    """Stored events after the watcher's cursor, page by page; its queue is switched on first,
    so what the poller hands out meanwhile is kept (and de-duplicated by id)."""
    watcher.lagged = False
    watcher.pending.clear()
    while True:
        async with feed.reads, feed.store.sessions() as db:
            events = await project_events_after(db, watcher.project_id, watcher.last_id, PAGE)
        chunk = watcher.frames(events)
        if chunk:
            yield chunk
        if len(events) < PAGE:
            return


async def _body(feed: ProjectFeed, watcher: _Watcher, opening: str) -> AsyncIterator[str]:
    await feed.subscribe(watcher)
    try:
        if opening:
            yield opening
        while True:
            if watcher.lagged:
                async for chunk in _catch_up(feed, watcher):
                    yield chunk
                continue
            watcher.wake.clear()
            events = list(watcher.pending)
            watcher.pending.clear()
            chunk = watcher.frames(events)
            if chunk:
                yield chunk
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher.wake.wait(), HEARTBEAT_S)
                continue
            yield ": heartbeat\n\n"
    finally:
        feed.unsubscribe(watcher)


def _cursor(header: str | None, after: int | None) -> int:
    if header:
        return resume_after(header)
    if after is not None:
        if not 0 <= after <= MAX_EVENT_ID:
            raise field_error(["after"], "must be an event id (a non-negative integer)")
        return after
    return 0


async def _newest(db: Any, project_id: str) -> int:
    """The project's newest event id: a fresh stream starts after it (``?after=0`` replays)."""
    query = select(func.max(ProjectEvent.id)).where(ProjectEvent.project_id == project_id)
    return int((await db.execute(query)).scalar() or 0)


@router.get("/{name}/stream")
async def stream_project(
    name: str,
    request: Request,
    caller: Caller,
    db: Db,
    after: int | None = None,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    """SSE of the project's ``push``, ``init``, ``node``, ``status`` and ``kv`` events."""
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    fresh = not last_event_id and after is None
    cursor = await _newest(db, project.id) if fresh else _cursor(last_event_id, after)
    opening = ""
    if fresh:
        engine = request.app.state.engine
        total = len(await engine.nodes()) if engine is not None else 0
        status, _rows = await warm_state.status_of(db, project, revision, total)
        opening = f"event: status\ndata: {dumps(status)}\n\n"
    watcher = _Watcher(project.id, cursor)
    body = _body(feed_of(request), watcher, opening)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
