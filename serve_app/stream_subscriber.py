"""One open SSE stream (docs/llms-full.md, "Streaming (Server-Sent Events)"): what it has sent, its bounded queue, and its frames.

A stream first catches up from the store (its jobs' events after its cursor: ``Last-Event-ID``
or 0), in short sessions under the feed's small semaphore, then follows its replica's feed
(``serve_app.stream_feed``), which fills the queue. Events are de-duplicated by id, so the
overlap between the two neither repeats nor loses one. A client that reads slower than its jobs
write falls more than :data:`MAX_PENDING` events behind: the feed drops its queue (memory stays
bounded) and the stream catches up from the store again, from the last event it sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from computalot.errors import ComputalotError
from computalot.store import jobs as store
from computalot.store.jsoncodec import dumps
from computalot.views import event_data

if TYPE_CHECKING:
    from computalot.auth.principal import Principal
    from serve_app.stream_feed import StreamFeed

#: Events queued for one stream before it is told to catch up from the store instead.
MAX_PENDING = 2000
HEARTBEAT_S = 15.0
#: Events per catch-up read (one short session each).
PAGE = 500

#: ``(event id, job id, event name, SSE frame)``; the id is None for an id-less ``end``.
Item = tuple[int | None, str, str, str]


def frame(event: store.StreamEvent) -> str:
    event_id, job_id, name, data = event
    data = event_data(data)
    body = dumps({"job_id": job_id, **(data if isinstance(data, dict) else {"value": data})})
    return f"id: {event_id}\nevent: {name}\ndata: {body}\n\n"


def unnumbered(name: str, job: dict[str, Any]) -> str:
    """A frame without ``id:`` (a snapshot, or an ``end`` built from the stored job)."""
    return f"event: {name}\ndata: {dumps({'job_id': job['id'], **job})}\n\n"


def error_frame(error: ComputalotError) -> str:
    """The error envelope (``computalot.errors.envelope``) as an ``error`` event: the stream closes after it."""
    return f"event: error\ndata: {dumps(error.to_dict())}\n\n"


@dataclass(eq=False)
class Subscriber:
    """A stream's state, shared between its response (the reader) and the feed (the writer)."""

    account_id: str
    job_ids: frozenset[str]
    #: ``(token kind, id)`` of the credential that opened it: "flk" API key, "fls" session.
    credential: tuple[str, str]
    last_id: int
    pending: deque[Item] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: The queue is not being filled; the stream must catch up from the store first.
    lagged: bool = True
    #: monotonic time its latest catch-up began (None before the first).
    caught_up_at: float | None = None
    ended: set[str] = field(default_factory=set)
    #: jobs the feed already offered an id-less ``end`` for (see StreamFeed._stalled_ends)
    offered_ends: set[str] = field(default_factory=set)
    closed: ComputalotError | None = None
    #: monotonic time of its next heartbeat; the feed sets ``beat_due`` (and wakes it) then,
    #: so a waiting stream needs no timer of its own
    beat_at: float = field(default_factory=lambda: time.monotonic() + HEARTBEAT_S)
    beat_due: bool = False

    def offer(self, items: list[Item]) -> None:
        """Queue the feed's events; past MAX_PENDING drop them all and catch up instead."""
        if self.lagged:
            return
        if len(self.pending) + len(items) > MAX_PENDING:
            self.pending.clear()
            self.lagged = True
        else:
            self.pending.extend(items)
        self.wake.set()

    def beat(self, now: float) -> None:
        if now >= self.beat_at:
            self.beat_at = now + HEARTBEAT_S
            self.beat_due = True
            self.wake.set()

    def close(self, error: ComputalotError) -> None:
        self.closed = error
        self.wake.set()

    @property
    def finished(self) -> bool:
        return self.ended >= self.job_ids

    def _accept(self, event_id: int | None, job_id: str, name: str) -> bool:
        """Whether an event is new to this stream (by id, and one ``end`` per job); records it."""
        if event_id is not None:
            if event_id <= self.last_id:
                return False
            self.last_id = event_id
        if name == "end":
            if job_id in self.ended:
                return False
            self.ended.add(job_id)
        return True

    def take(self) -> str:
        """Frames of the queued events not sent yet, as one chunk ("" when none)."""
        out = []
        while self.pending:
            event_id, job_id, name, text = self.pending.popleft()
            if self._accept(event_id, job_id, name):
                out.append(text)
        return "".join(out)

    def from_store(self, events: list[store.StreamEvent]) -> str:
        """Frames of events read from the store (in id order) not sent yet, as one chunk."""
        return "".join(
            frame(event) for event in events if self._accept(event[0], event[1], event[2])
        )


async def _catch_up(feed: StreamFeed, sub: Subscriber) -> AsyncIterator[str]:
    """The stored events after ``sub.last_id``, page by page, until a page comes back short.

    The queue is switched on first: whatever the feed hands out from now on is queued, and
    whatever it handed out before was committed before this read began, so it is read here."""
    sub.lagged = False
    sub.pending.clear()
    sub.offered_ends.clear()
    sub.caught_up_at = time.monotonic()
    job_ids = sorted(sub.job_ids)
    while True:
        async with feed.backfills, feed.store.sessions() as db:
            events = await store.stream_events(
                db, sub.account_id, job_ids, after=sub.last_id, limit=PAGE
            )
        chunk = sub.from_store(events)
        if chunk:
            yield chunk
        if len(events) < PAGE or sub.finished or sub.closed is not None:
            return


async def sse(
    feed: StreamFeed, principal: Principal, job_ids: list[str], after: int, opening: str
) -> AsyncIterator[str]:
    """The response body of one stream of ``job_ids`` (already authorised for ``principal``)
    from event ``after``, ``opening`` first; it leaves the feed however it ends (``end``, the
    client gone, its credential revoked)."""
    sub = await feed.subscribe(principal, job_ids, after)
    try:
        if opening:
            yield opening
        while True:
            if sub.closed is not None:
                yield error_frame(sub.closed)
                return
            if sub.lagged:
                async for chunk in _catch_up(feed, sub):
                    yield chunk
            else:
                sub.wake.clear()
                chunk = sub.take()
                if sub.beat_due:
                    sub.beat_due = False
                    chunk += ": heartbeat\n\n"
                if chunk:
                    yield chunk
                else:
                    await sub.wake.wait()
            if sub.finished:
                return
    finally:
        feed.unsubscribe(sub)
