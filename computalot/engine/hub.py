"""EventHub: the wake-up point for SSE streams, and the writer of live task events.

Status events (job, task, retry, result, end) are written by the dispatcher in the transaction
that changes the state they report, which then tells the hub which jobs have news
(:meth:`EventHub.written`). Progress and output from running tasks come here
(:meth:`EventHub.task_live`) and are written in small batches. Both writers go through
``computalot.store.events``, so ids become visible in id order and a stream reading
``id > last`` never skips one. Each API replica keeps one call to :meth:`EventHub.wait_any`
outstanding, which returns once any job has something new and says which (its feed then reads
the store once for all of its streams).

The store, settings and SQLAlchemy are imported inside the methods that use them: every Ray
worker that reports a task's progress looks this actor up, and a lookup imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import ray

from computalot.engine.names import HUB_NAME

if TYPE_CHECKING:
    from computalot.settings import Secrets
    from computalot.store.events import EventRow

K = TypeVar("K")
V = TypeVar("V")

log = logging.getLogger("computalot.hub")

OUTPUT_TAIL_CHARS = 10 * 1024
FLUSH_INTERVAL_S = 0.0
#: While events keep coming, batches are at least this far apart: a busy fan-out costs ~50
#: writes (and stream wake-ups) a second instead of one per event, while a lone event after a
#: quiet spell is written at once (after one turn of the event loop: FLUSH_INTERVAL_S).
MIN_FLUSH_SPACING_S = 0.02
BARRIER_TIMEOUT_S = 30.0
#: ``ping`` reports the hub stuck once writes have failed for this long (seconds).
STUCK_AFTER_S = 20.0
#: How many recent (version, job id) changes :meth:`EventHub.wait_any` can name; a caller
#: further behind is told "unknown" and reads everything it watches.
RECENT_CHANGES = 4096
#: Tasks the hub keeps live state of (output tails, stored-event counts) at most; far above how
#: many run at once, so only the state of tasks whose end the hub never heard of is dropped.
MAX_TRACKED_TASKS = 65_536


class Bounded(OrderedDict[K, V], Generic[K, V]):
    """A dict of at most ``limit`` entries: setting a new key past it drops the oldest one."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        if len(self) > self.limit:
            self.popitem(last=False)


class EventHub:
    def __init__(self, secret_settings: Secrets | None = None) -> None:
        from computalot.settings import load_settings_with
        from computalot.store.db import Store

        # The secret settings come as the argument, never from this process's environment.
        self.settings = load_settings_with(secret_settings)
        self.store = Store(self.settings.resolved_database_url, inline=True)
        self.pending: list[EventRow] = []
        self.live: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        self.flushed = asyncio.Condition()
        #: task id -> (attempt, live output tail)
        self.tails: Bounded[str, tuple[int, str]] = Bounded(MAX_TRACKED_TASKS)
        #: task id -> (attempt, live events of that attempt written to the store)
        self.stored_live: Bounded[str, tuple[int, int]] = Bounded(MAX_TRACKED_TASKS)
        #: One increment per job with new events per write, over all jobs; ``epoch`` tells a
        #: restarted hub (whose count starts again) from the one a caller last saw.
        self.epoch = secrets.token_hex(8)
        self.version = 0
        self.recent: deque[tuple[int, str]] = deque(maxlen=RECENT_CHANGES)
        self.failing_since: float | None = None  # loop time of the first failed write in a row
        self.last_write_error = ""
        self.dropped = 0  # live events the store refused on their own (never retried)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def ping(self) -> dict[str, Any]:
        """Health for ``/ready``: ``status`` is ``ok``, or says why live events are not being
        stored (the writer stopped, or every write failed for STUCK_AFTER_S)."""
        loop = asyncio.get_running_loop()
        status = "ok"
        if self._writer.done():
            status = "stuck: the event writer stopped"
        elif self.failing_since is not None and loop.time() - self.failing_since > STUCK_AFTER_S:
            status = (
                f"stuck: no live event stored for {loop.time() - self.failing_since:.0f} s "
                f"({self.last_write_error})"
            )
        return {"status": status, "pending": len(self.pending), "dropped": self.dropped}

    async def written(self, counts: dict[str, int], ended_tasks: list[str]) -> None:
        """The dispatcher committed ``counts[job_id]`` new events per job: wake their streams.

        ``ended_tasks`` reached a terminal status, so their live output tails are dropped
        (only running tasks keep one)."""
        for task_id in ended_tasks:
            self.tails.pop(task_id, None)
            self.stored_live.pop(task_id, None)
        async with self.flushed:
            self._changed(counts)
            self.flushed.notify_all()

    async def barrier(self, task_id: str, attempt: int, sent: int) -> None:
        """Return once ``sent`` live events of this attempt are in the store.

        ``run_task`` awaits it before returning an attempt's outcome, so the task's progress and
        output events get lower ids than the status events the dispatcher then writes for it.
        Counting (not "everything received so far") holds however Ray orders the calls of an
        async actor."""

        def stored() -> bool:
            stored_attempt, count = self.stored_live.get(task_id, (attempt, 0))
            return stored_attempt == attempt and count >= sent

        async with self.flushed:
            await asyncio.wait_for(self.flushed.wait_for(stored), BARRIER_TIMEOUT_S)

    def task_live(
        self,
        job_id: str,
        account_id: str,
        task_id: str,
        attempt: int,
        kind: str,
        data: dict[str, Any],
    ) -> None:
        """A running task's progress or output (fire-and-forget from ``run_task``)."""
        from computalot.store.events import EventRow

        if kind == "progress":
            payload = {"task_id": task_id, "attempt": attempt, "progress": data.get("progress")}
            self.live.setdefault(task_id, {})["latest_progress"] = data.get("progress")
        else:
            text = str(data.get("text", ""))
            payload = {
                "task_id": task_id,
                "attempt": attempt,
                "stream": data.get("stream"),
                "text": text,
            }
            # One attempt's text only: a retry starts a fresh tail (the chunks carry their own
            # newlines, so they are joined as they are).
            tail_attempt, tail = self.tails.get(task_id, (attempt, ""))
            tail = (tail if tail_attempt == attempt else "") + text
            tail = tail[-OUTPUT_TAIL_CHARS:]
            self.tails[task_id] = (attempt, tail)
            entry = self.live.setdefault(task_id, {})
            entry["output_tail"] = tail
            entry["output_attempt"] = attempt
        self.pending.append(EventRow(job_id, account_id, kind, payload))
        self.changed.set()

    async def wait_any(
        self, epoch: str | None, version: int, timeout_s: float
    ) -> tuple[str, int, list[str] | None]:
        """Return ``(epoch, version, job ids)`` once the version moved past ``version`` (or after
        the timeout): the jobs with new events since, or None when they are not all known (a
        caller of another epoch, or further behind than :data:`RECENT_CHANGES`)."""
        if epoch == self.epoch:
            async with self.flushed:
                try:
                    await asyncio.wait_for(
                        self.flushed.wait_for(lambda: self.version != version), timeout_s
                    )
                except TimeoutError:
                    pass
        behind = self.version - version
        if epoch != self.epoch or behind < 0 or behind > len(self.recent):
            return self.epoch, self.version, None
        jobs: dict[str, None] = {}
        for changed_at, job_id in reversed(self.recent):
            if changed_at <= version:
                break
            jobs[job_id] = None
        return self.epoch, self.version, list(jobs)

    def _changed(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.version += 1
            self.recent.append((self.version, job_id))

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_flush = 0.0
        while True:
            await self.changed.wait()
            self.changed.clear()
            await asyncio.sleep(
                max(FLUSH_INTERVAL_S, last_flush + MIN_FLUSH_SPACING_S - loop.time())
            )
            last_flush = loop.time()
            batch, self.pending = self.pending, []
            live, self.live = self.live, {}
            if not batch and not live:
                continue
            try:
                await self._write(batch, live)
            except Exception as exc:
                self.failing_since = self.failing_since or loop.time()
                self.last_write_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                if not await self._store_answers():
                    log.exception("event hub write failed; retrying %d events", len(batch))
                    self.pending = batch + self.pending
                    for task_id, values in live.items():
                        self.live.setdefault(task_id, {}).update(values)
                    await asyncio.sleep(0.5)
                    self.changed.set()
                    continue
                log.warning(
                    "the store refused a batch of %d live events (%s); writing them one by one",
                    len(batch),
                    self.last_write_error,
                )
                await self._write_each(batch, live)
            self.failing_since = None
            async with self.flushed:
                for event in batch:
                    task_id, attempt = event.data["task_id"], event.data["attempt"]
                    stored_attempt, count = self.stored_live.get(task_id, (attempt, 0))
                    count = count + 1 if stored_attempt == attempt else 1
                    self.stored_live[task_id] = (attempt, count)
                self._changed(dict.fromkeys(event.job_id for event in batch))
                self.flushed.notify_all()

    async def _store_answers(self) -> bool:
        try:
            await self.store.ping()
            return True
        except Exception:
            return False

    async def _write_each(self, batch: list[EventRow], live: dict[str, dict[str, Any]]) -> None:
        """The store answers but refused the batch: write each event and each task's live
        values on its own, and drop what the store refuses alone, so one bad value cannot
        hold every later event back. A dropped event still counts as handled for
        :meth:`barrier` (it will never be stored)."""
        for event in batch:
            try:
                await self._write([event], {})
            except Exception as exc:
                self.dropped += 1
                log.warning(
                    "dropped a live event of job %s the store refused: %s", event.job_id, exc
                )
        for task_id, values in live.items():
            try:
                await self._write([], {task_id: values})
            except Exception as exc:
                log.warning("dropped live values of task %s the store refused: %s", task_id, exc)

    async def _write(self, batch: list[EventRow], live: dict[str, dict[str, Any]]) -> None:
        from sqlalchemy import update

        from computalot.store.events import write_events
        from computalot.store.models import Task

        async with self.store.sessions() as db:
            await write_events(db, batch, live=True)
            for task_id, values in live.items():
                await db.execute(update(Task).where(Task.id == task_id).values(**values))
            await db.commit()


def hub_actor_options(namespace: str) -> dict[str, Any]:
    return {
        "name": HUB_NAME,
        "namespace": namespace,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_restarts": -1,
        "max_task_retries": -1,
        "get_if_exists": True,
    }


EventHubActor = ray.remote(EventHub)
