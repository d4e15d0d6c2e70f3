"""One feed of job events per API replica, shared by all of its open SSE streams (docs/llms-full.md,
"Streaming (Server-Sent Events)").

Open streams hold no database connection. The feed keeps one wake-up call to the event hub
outstanding (``EventHub.wait_any``: returns once any job has new events, naming them); when a
watched job is among them it reads the new events of every watched job in one query and hands
each one, framed once, to the bounded queues of that job's streams
(``serve_app.stream_subscriber``). So a replica's database work and hub calls grow with the
rate of events, not with the number of clients. Besides reading, the feed

* ends streams whose job is terminal but whose ``end`` never came (``_stalled_ends``), and
* closes, every REVALIDATE_S, the streams whose API key was revoked or whose wallet session
  expired (one query for all of them), and
* tells each stream when its heartbeat is due, so a waiting stream holds no timer (a timer per
  wait kept about one object per stream a second alive for 15 s, and the garbage collector's
  full passes over them held the replica's loop; bench/README.md).

Reads, and adding a stream, take the same lock: a stream added while a read is under way could
otherwise miss events that read skips past (see :meth:`StreamFeed.subscribe`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from computalot import views
from computalot.auth.principal import Principal
from computalot.errors import Unauthorized
from computalot.store import feed as feed_store
from computalot.store import jobs as jobs_store
from computalot.store.db import Store
from serve_app.stream_subscriber import Item, Subscriber, frame, unnumbered

log = logging.getLogger("computalot.api")

#: Longest wait on the hub, in seconds: an unanswered call is renewed this often.
MAX_WAIT_S = 2.0
#: Without an engine (the app under plain uvicorn), the store is read this often (seconds).
POLL_WITHOUT_HUB_S = 0.25
#: Watched jobs are read at least this often even when the hub names none of them (seconds):
#: keeps the read cursor near the newest event, so a job first watched later is not read from
#: far back.
IDLE_READ_S = 2.0
#: Events per feed read; a full page is followed by another read at once.
FEED_PAGE = 1000
#: A job whose events came in this many reads in a row, each within QUIET_S of the last, is
#: busy: while only busy jobs have news, reads are at least BUSY_READ_INTERVAL_S apart, so a
#: big fan-out's events go out in batches rather than one query and one chunk per hub flush.
#: A job's first reads (created, running, end of a short job) are never held back.
BUSY_STREAK = 4
QUIET_S = 0.5
BUSY_READ_INTERVAL_S = 0.075
#: How often terminal jobs (and due heartbeats) are looked for, and how long a terminal job's
#: ``end`` may lag before an id-less one built from the stored job ends its streams (seconds).
STALL_CHECK_S = 1.0
END_GRACE_S = 3.0
#: How often open streams' credentials are checked again (seconds).
REVALIDATE_S = 2.0
#: Catch-up reads from the store at once, over all streams of the replica.
BACKFILL_SESSIONS = 4


class StreamFeed:
    def __init__(self, store: Store, engine: Any) -> None:
        self.store = store
        self.engine = engine
        self.by_job: dict[str, set[Subscriber]] = {}
        self.subscribers: set[Subscriber] = set()
        #: Every watched job's events up to this id were handed out (None: not started).
        self.after: int | None = None
        self.reading = asyncio.Lock()
        self.backfills = asyncio.Semaphore(BACKFILL_SESSIONS)
        self.has_work = asyncio.Event()
        self.terminal_since: dict[str, float] = {}
        self.streak: dict[str, tuple[int, float]] = {}  # job id -> (reads in a row, last seen)
        self.hub_epoch: str | None = None
        self.hub_version = 0
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, principal: Principal, job_ids: list[str], after: int) -> Subscriber:
        """A stream of these jobs (already authorised for ``principal``) from event ``after``.

        Added between two reads (under ``reading``), so every read from the next one on covers
        its jobs, and the stream's own catch-up (which starts after this) sees every event the
        feed read before. A feed that had no streams starts again at the newest event."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        sub = Subscriber(
            account_id=principal.account_id,
            job_ids=frozenset(job_ids),
            credential=(principal.credential, principal.credential_id),
            last_id=after,
        )
        async with self.reading:
            if not self.subscribers or self.after is None:
                async with self.store.sessions() as db:
                    self.after = await feed_store.newest_event_id(db)
            self.subscribers.add(sub)
            for job_id in sub.job_ids:
                self.by_job.setdefault(job_id, set()).add(sub)
        self.has_work.set()
        return sub

    def stop(self) -> None:
        """Stop following the hub (open streams stop getting events)."""
        if self._task is not None:
            self._task.cancel()

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        for job_id in sub.job_ids:
            subs = self.by_job.get(job_id)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del self.by_job[job_id]
                self.terminal_since.pop(job_id, None)
                self.streak.pop(job_id, None)

    async def _run(self) -> None:
        last_read = last_check = last_auth = 0.0
        while True:
            if not self.subscribers:
                self.has_work.clear()
                await self.has_work.wait()
            now = time.monotonic()
            try:
                due = min(last_read + IDLE_READ_S, last_check + STALL_CHECK_S)
                changed = await self._wake_up(min(MAX_WAIT_S, max(0.05, due - now)))
                now = time.monotonic()
                news = changed is None or self._watched(changed)
                if news or now - last_read >= IDLE_READ_S:
                    if changed and self._busy_only(changed, now):
                        await asyncio.sleep(max(0.0, last_read + BUSY_READ_INTERVAL_S - now))
                    last_read = time.monotonic()
                    await self._read(to_newest=not news)
            except Exception:
                log.exception("stream feed: reading events failed; retrying")
                await asyncio.sleep(0.5)
            # Each duty on its own: one that fails (a store error, a row it cannot handle)
            # must not stop the others.
            if now - last_check >= STALL_CHECK_S:
                last_check = now
                for sub in self.subscribers:
                    sub.beat(now)
                await self._duty(self._stalled_ends)
            if now - last_auth >= REVALIDATE_S:
                last_auth = now
                await self._duty(self._revalidate)

    async def _duty(self, work: Any) -> None:
        try:
            await work()
        except Exception:
            log.exception("stream feed: %s failed", work.__name__)

    async def _wake_up(self, timeout_s: float) -> list[str] | None:
        """Jobs with new events since the last call ([] when none came within ``timeout_s``),
        or None when that is not known (no hub, or the hub restarted)."""
        if self.engine is None:
            await asyncio.sleep(min(timeout_s, POLL_WITHOUT_HUB_S))
            return None
        answer = await self.engine.wait_any_event(self.hub_epoch, self.hub_version, timeout_s)
        if answer is None:  # hub unreachable: fall back to reading on a timer
            await asyncio.sleep(min(timeout_s, 1.0))
            return None
        self.hub_epoch, self.hub_version, jobs = answer
        return None if jobs is None else list(jobs)

    def _watched(self, jobs: list[str]) -> bool:
        return any(job_id in self.by_job for job_id in jobs)

    def _busy_only(self, jobs: list[str], now: float) -> bool:
        watched = [j for j in jobs if j in self.by_job]
        return bool(watched) and all(
            (s := self.streak.get(j)) is not None and s[0] >= BUSY_STREAK and now - s[1] < QUIET_S
            for j in watched
        )

    async def _read(self, to_newest: bool = False) -> None:
        """Hand out every watched job's events after ``self.after`` and move it forward: to the
        last event read, or with ``to_newest`` (reads on the timer, while the watched jobs are
        quiet) to the newest event of any job."""
        async with self.reading:
            watched = set(self.by_job)
            if not watched or self.after is None:
                return
            while True:
                async with self.store.engine.connect() as conn:
                    newest = await feed_store.newest_event_id(conn) if to_newest else 0
                    events = await feed_store.events_after(
                        conn, watched, after=self.after, limit=FEED_PAGE
                    )
                self._hand_out(events)
                if len(events) == FEED_PAGE:
                    self.after = events[-1][0]
                    continue
                # Ids become visible in id order and ``newest`` was read first: every watched
                # job's event up to it was in this read.
                self.after = max(self.after, newest, events[-1][0] if events else 0)
                return

    def _hand_out(self, events: list[Any]) -> None:
        now = time.monotonic()
        batches: dict[Subscriber, list[Item]] = {}
        seen: set[str] = set()
        for event in events:
            subs = self.by_job.get(event[1])
            if not subs:
                continue
            seen.add(event[1])
            item: Item = (event[0], event[1], event[2], frame(event))
            for sub in subs:
                batches.setdefault(sub, []).append(item)
        for job_id in seen:
            count, at = self.streak.get(job_id, (0, now))
            self.streak[job_id] = (count + 1 if now - at < QUIET_S else 1, now)
        for sub, items in batches.items():
            sub.offer(items)

    async def _stalled_ends(self) -> None:
        """End the streams of jobs that are terminal but whose ``end`` has not reached them.

        The dispatcher writes ``end`` in the transaction that makes a job terminal, so this is a
        safety net (an ``end`` lost with an older event hub, a store repaired by hand) and what
        closes a stream resumed after its job's ``end``. A stream gets an id-less ``end`` built
        from the stored job once the job has been terminal for END_GRACE_S, or at once if its
        latest catch-up began after the job was seen terminal (that read had every stored
        event)."""
        open_jobs = {
            job_id
            for job_id, subs in self.by_job.items()
            if any(s.caught_up_at is not None and job_id not in s.ended for s in subs)
        }
        if not open_jobs:
            self.terminal_since.clear()
            return
        now = time.monotonic()
        async with self.store.sessions() as db:
            terminal = await feed_store.terminal_jobs(db, open_jobs)
            for job_id in list(self.terminal_since):
                if job_id not in terminal:
                    del self.terminal_since[job_id]
            for job_id in terminal:
                since = self.terminal_since.setdefault(job_id, now)
                due = [
                    s
                    for s in self.by_job.get(job_id, ())
                    if not s.lagged
                    and s.caught_up_at is not None
                    and job_id not in s.ended
                    and job_id not in s.offered_ends
                    and (s.caught_up_at > since or now - since >= END_GRACE_S)
                ]
                if not due:
                    continue
                try:
                    job = views.job_out(await jobs_store.get_job(db, due[0].account_id, job_id))
                except Exception:  # one job's row must not keep the others' streams open
                    log.exception("stream feed: cannot build an end for job %s", job_id)
                    job = {"id": job_id, "status": terminal[job_id]}
                item: Item = (None, job_id, "end", unnumbered("end", job))
                for sub in due:
                    sub.offered_ends.add(job_id)
                    sub.offer([item])

    async def _revalidate(self) -> None:
        """Close the streams whose credential no longer authenticates (one query per kind of
        credential, whatever the number of streams)."""
        if not self.subscribers:
            return
        credentials = {sub.credential for sub in self.subscribers}
        keys = [cid for kind, cid in credentials if kind == "flk"]
        sessions = [cid for kind, cid in credentials if kind == "fls"]
        async with self.store.sessions() as db:
            live = await feed_store.live_credentials(db, keys, sessions)
        for sub in list(self.subscribers):
            kind, cid = sub.credential
            if cid in live or sub.closed is not None:
                continue
            sub.close(
                Unauthorized("API key was revoked", recommended_action="ask an admin for a new key")
                if kind == "flk"
                else Unauthorized(
                    "wallet session expired", recommended_action="sign a new wallet challenge"
                )
            )


def feed_of(app: Any) -> StreamFeed:
    """The app's feed, made on first use (in the replica's event loop)."""
    existing: StreamFeed | None = getattr(app.state, "stream_feed", None)
    if existing is not None:
        return existing
    feed = StreamFeed(app.state.store, app.state.engine)
    app.state.stream_feed = feed
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        metrics.watch_streams(lambda: len(feed.subscribers), lambda: len(feed.by_job))
    return feed
