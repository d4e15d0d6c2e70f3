"""Writing a job's task rows: inline for small jobs, off the request for big ones.

A submit answers as soon as it is validated (``computalot.jobs.submit``). A job of at most
``planning_inline_tasks`` tasks gets its rows in the request's transaction and answers
``queued``; a bigger one answers ``planning`` and a :class:`Planner` of the API process writes
its rows in chunks, one transaction each, yielding to the event loop between chunks, then moves
the job to ``queued`` with its ``job`` event (docs/llms-full.md, "Lifecycle").

Each chunk is a compare-and-set on the job row: it moves ``planned_tasks`` forward only while the
job is still ``planning`` and still this planner's, and extends the planner's lease. So

* a cancel (or a failed dependency) ends the planning: the next chunk finds the job terminal,
  writes nothing, and cancels whatever queued rows the job still has (a writer that cancelled
  queued tasks before moving the job could have missed the last chunk);
* a planner that died (its replica was killed) stops extending its lease; the sweep of every
  API process (:meth:`Planner.resume_stale`) takes the job over with a compare-and-set on the
  old lease, plans again from the stored ``plan_input`` and writes from ``planned_tasks`` on.

The dispatcher never claims tasks of a ``planning`` job: it only reads ``queued`` and
``running`` jobs (``computalot.engine.rows.CLAIMABLE_JOB``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot import views
from computalot.billing.holds import settle_job
from computalot.ids import new_id
from computalot.jobs.fanout import TaskPlan, plan_fanout
from computalot.jobs.result_cache import (
    CacheContext,
    Written,
    context_for,
    end_if_answered,
    settle_hits,
    write_tasks,
)
from computalot.jobs.workflows import workflow_tasks
from computalot.states import JobStatus, TaskStatus, job_is_terminal
from computalot.store.db import Store
from computalot.store.events import EventRow, write_events
from computalot.store.models import Job, Revision, Task
from computalot.timeutil import utcnow

log = logging.getLogger("computalot.planning")

#: Jobs with at most this many tasks are written in the submit's own transaction (default of
#: ``COMPUTALOT_PLANNING_INLINE_TASKS``).
INLINE_TASKS = 1000
#: Task rows per planning transaction: small enough that one chunk holds the replica's event
#: loop (and SQLite's write lock) only briefly (bench/README.md, "Submit").
CHUNK_ROWS = 1000
#: A planner extends its lease with every chunk; a lease this old (seconds) is taken over.
LEASE_S = 30.0
#: How often each API process looks for planning jobs whose planner died (seconds).
SWEEP_S = 5.0


class Engine(Protocol):
    """What a planner needs of the engine client: wake the dispatcher and the job's streams
    once a job is queued."""

    def kick(self, blocked: bool = False) -> None: ...

    def announce(self, job_id: str) -> None: ...


def task_rows(job_id: str, account_id: str, tasks: Sequence[TaskPlan]) -> list[dict[str, Any]]:
    """Insert parameters of ``tasks``' rows, all ``queued``."""
    return [
        {
            "id": new_id("tsk"),
            "job_id": job_id,
            "account_id": account_id,
            "index": t.index,
            "status": TaskStatus.QUEUED,
            "attempt": 0,
            "lost_attempts": 0,
            "element_start": t.element_start,
            "element_count": t.element_count,
            "batched": t.batched,
            "item": t.items,
        }
        for t in tasks
    ]


async def write_inline(
    db: AsyncSession, job: Job, tasks: Sequence[TaskPlan], cache: CacheContext | None = None
) -> bool:
    """Every task row of a small job, in the caller's transaction (the submit's). With a
    ``cache`` context, tasks with an entry are written completed (``jobs.result_cache``); True
    when that answered every task and the job has ended."""
    written = Written()
    for start in range(0, len(tasks), 5 * CHUNK_ROWS):
        chunk = tasks[start : start + 5 * CHUNK_ROWS]
        rows = task_rows(job.id, job.account_id, chunk)
        if cache is None:
            await db.execute(insert(Task), rows)
            continue
        done = await write_tasks(db, job.id, rows, chunk, cache)
        written.hits += done.hits
        written.result_bytes += done.result_bytes
    if cache is None:
        return False
    return await settle_hits(db, job, written)


def plan_input(payload: dict[str, Any], fan_out: Any, batch_size: int | None) -> dict[str, Any]:
    """What :func:`replan` needs to plan a job again (stored on a ``planning`` job)."""
    return {"payload": payload, "fan_out": fan_out, "batch_size": batch_size}


def replan(stored: Any) -> list[TaskPlan]:
    """The tasks of a job from its stored ``plan_input`` (planning is deterministic). A sweep or
    benchmark stores its request, not its items: its tasks are generated again from it."""
    if stored.get("workflow") is not None:
        return workflow_tasks(stored)
    return plan_fanout(stored["payload"], stored["fan_out"], stored["batch_size"]).tasks


@dataclass(frozen=True)
class Planning:
    """One job to plan: its tasks come from ``stored`` (its ``plan_input``); those from index
    ``done`` on are still to be written."""

    job_id: str
    account_id: str
    stored: dict[str, Any]
    done: int
    blocked: bool


def _hit_counters(written: Written) -> dict[str, Any]:
    """The job counters a chunk's cached tasks move (none without hits)."""
    if not written.hits:
        return {}
    return {
        "n_completed": Job.n_completed + written.hits,
        "result_bytes": Job.result_bytes + written.result_bytes,
    }


def _mine(job_id: str, planner_id: str) -> Any:
    """The WHERE clause of every planner write: this job, still planning, still ours."""
    return (Job.id == job_id, Job.status == JobStatus.PLANNING, Job.planner_id == planner_id)


class Planner:
    """Writes the task rows of ``planning`` jobs in the API process that took the submit.

    One per process (``serve_app``); its background tasks are kept here until they end, and
    :meth:`close` waits for none of them: a planner stopped mid-job leaves its lease to expire
    and the job to another process's sweep."""

    def __init__(
        self, store: Store, engine: Engine | None, *, chunk_rows: int = CHUNK_ROWS
    ) -> None:
        self.store = store
        self.engine = engine
        self.chunk_rows = chunk_rows
        self.id = f"planner-{secrets.token_hex(8)}"  # a process, not a public object
        self.tasks: set[asyncio.Task[None]] = set()
        self.jobs: set[str] = set()

    def lease_until(self) -> datetime:
        return utcnow() + timedelta(seconds=LEASE_S)

    def start(self, planning: Planning) -> None:
        """Write the rest of ``planning``'s rows in the background."""
        if planning.job_id in self.jobs:
            return
        self.jobs.add(planning.job_id)
        task = asyncio.get_running_loop().create_task(self._run(planning))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, planning: Planning) -> None:
        try:
            # Planning 100,000 elements is CPU work: on a thread, the loop keeps answering.
            tasks = await asyncio.to_thread(replan, planning.stored)
            cache = await self._cache_context(planning)
            queued = await self._write_rows(planning, tasks, cache) and await self._finish(
                planning, tasks, cache
            )
            if queued and self.engine is not None:
                self.engine.kick(blocked=planning.blocked)
                self.engine.announce(planning.job_id)
        except Exception:
            log.exception("planning job %s failed; another planner resumes it", planning.job_id)
        finally:
            self.jobs.discard(planning.job_id)

    async def _cache_context(self, planning: Planning) -> CacheContext | None:
        """The job's result-cache key context (``jobs.result_cache``), None without ``cache``."""
        async with self.store.sessions() as db:
            query = select(Job.spec, Job.payload, Job.revision_id).where(Job.id == planning.job_id)
            row = (await db.execute(query)).first()
            if row is None or not isinstance(row.spec, dict) or "cache" not in row.spec:
                return None
            revision = None
            if row.revision_id is not None:
                found = (
                    await db.execute(
                        select(Revision.content_hash, Revision.manifest).where(
                            Revision.id == row.revision_id
                        )
                    )
                ).first()
                revision = (found[0], found[1]) if found is not None else ("", {})
        return context_for(
            planning.account_id, row.spec, row.payload, revision, blocked=planning.blocked
        )

    async def _write_rows(
        self, planning: Planning, tasks: Sequence[TaskPlan], cache: CacheContext | None = None
    ) -> bool:
        """Chunk after chunk; False when the job is no longer this planner's to write."""
        done = planning.done
        while done < len(tasks):
            chunk = tasks[done : done + self.chunk_rows]
            if not await self._write_chunk(planning, done, chunk, cache):
                await self._stopped(planning.job_id)
                return False
            done += len(chunk)
            await asyncio.sleep(0)  # let the replica answer requests between chunks
        return True

    async def _write_chunk(
        self,
        planning: Planning,
        done: int,
        chunk: Sequence[TaskPlan],
        cache: CacheContext | None = None,
    ) -> bool:
        rows = task_rows(planning.job_id, planning.account_id, chunk)
        async with self.store.sessions() as db:
            written = Written(queued=len(rows))
            if cache is not None:  # rows first: how many are queued is known after the lookup
                written = await write_tasks(db, planning.job_id, rows, chunk, cache)
            moved = await db.execute(
                update(Job)
                .where(*_mine(planning.job_id, self.id), Job.planned_tasks == done)
                .values(
                    planned_tasks=done + len(rows),
                    n_queued=Job.n_queued + written.queued,
                    planner_lease_until=self.lease_until(),
                    **_hit_counters(written),
                )
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return False  # the session closes without a commit: nothing was written
            if cache is None:
                await db.execute(insert(Task), rows)
            await db.commit()
        return True

    async def _finish(
        self, planning: Planning, tasks: Sequence[TaskPlan], cache: CacheContext | None = None
    ) -> bool:
        """Every row is written: the job becomes ``queued``, with its ``job`` event."""
        async with self.store.sessions() as db:
            moved = await db.execute(
                update(Job)
                .where(*_mine(planning.job_id, self.id))
                .values(
                    status=JobStatus.QUEUED,
                    planner_id=None,
                    planner_lease_until=None,
                    plan_input=None,
                )
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                await db.rollback()
                await self._stopped(planning.job_id)
                return False
            job = await db.get(Job, planning.job_id)
            assert job is not None  # the compare-and-set above just moved it
            await db.refresh(job)
            snapshot = views.job_out(job)
            await write_events(
                db, [EventRow(planning.job_id, planning.account_id, "job", snapshot)]
            )
            if cache is not None:
                await end_if_answered(db, planning.job_id)
            await db.commit()
        log.info("job %s planned: %d tasks queued", planning.job_id, len(tasks))
        return True

    async def _stopped(self, job_id: str) -> None:
        """The job left ``planning`` under this planner: cancelled, failed, or taken over."""
        async with self.store.sessions() as db:
            status = (await db.execute(select(Job.status).where(Job.id == job_id))).scalar()
            if status is None or not job_is_terminal(status):
                log.info("job %s: planning taken over by another planner", job_id)
                return
            await end_planning(db, job_id)
            await db.commit()
        log.info("job %s ended (%s) while planning; no more tasks written", job_id, status)

    async def resume_stale(self) -> int:
        """Take over the planning jobs whose planner's lease ran out; return how many. Jobs
        that ended while their planner was gone get their planning state cleared."""
        now = utcnow()
        async with self.store.sessions() as db:
            stale = (
                await db.execute(
                    select(Job.id, Job.status, Job.planner_id).where(
                        Job.planner_id.is_not(None), Job.planner_lease_until < now
                    )
                )
            ).all()
        taken = 0
        for job_id, status, old_planner in stale:
            if job_is_terminal(status):
                await self._stopped(job_id)
                continue
            planning = await self._take_over(job_id, str(old_planner), now)
            if planning is not None:
                log.warning("job %s: resuming planning at task %d", job_id, planning.done)
                self.start(planning)
                taken += 1
        return taken

    async def _take_over(self, job_id: str, old_planner: str, now: datetime) -> Planning | None:
        """Compare-and-set: only one process takes over a stale lease."""
        async with self.store.sessions() as db:
            moved = await db.execute(
                update(Job)
                .where(*_mine(job_id, old_planner), Job.planner_lease_until < now)
                .values(planner_id=self.id, planner_lease_until=self.lease_until())
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return None
            query = select(Job.account_id, Job.planned_tasks, Job.blocked, Job.plan_input)
            row = (await db.execute(query.where(Job.id == job_id))).one()
            await db.commit()
        account_id, done, blocked, stored = row
        return Planning(job_id, account_id, stored, done, blocked)

    async def sweep_forever(self) -> None:
        """Resume stale planning jobs every :data:`SWEEP_S` (an API process's maintenance)."""
        while True:
            try:
                await self.resume_stale()
            except Exception:
                log.exception("planning sweep failed; next try in %.0f s", SWEEP_S)
            await asyncio.sleep(SWEEP_S)


async def end_planning(db: AsyncSession, job_id: str) -> None:
    """A job that ended while planning keeps no queued task and no planning state; its
    ``task_counts.total`` becomes the rows that were written."""
    cancelled = await db.execute(
        update(Task)
        .where(Task.job_id == job_id, Task.status == TaskStatus.QUEUED)
        .values(status=TaskStatus.CANCELLED, finished_at=utcnow())
    )
    n = int(cancelled.rowcount)  # type: ignore[attr-defined]
    await db.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            n_total=Job.planned_tasks,
            n_queued=Job.n_queued - n,
            n_cancelled=Job.n_cancelled + n,
            planner_id=None,
            planner_lease_until=None,
            plan_input=None,
        )
    )
    await settle_job(db, job_id)  # settled already when the job ended; this is a backstop
