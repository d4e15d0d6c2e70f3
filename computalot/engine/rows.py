"""The dispatcher's view of jobs and tasks: table objects, typed rows and event builders.

The statements of the hot path (claim, record, counters) are Core statements built once, with
bound parameters, and run on the session's connection: the ORM's execution path costs more
Python per statement than SQLite takes to run it (``bench/README.md``). Rows read that way are
turned into the typed records below at once, never indexed by position further on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Update

from computalot.states import JobStatus, TaskStatus
from computalot.store.events import EventRow
from computalot.store.jsoncodec import is_unusable
from computalot.store.models import Job, Task

#: Core table objects: the hot path skips the ORM unit of work.
TASKS: Table = Task.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]
IN_CHUNK = 500


def chunked(ids: list[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """``ids`` in slices small enough for one ``IN (…)`` list on every backend."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


@dataclass(frozen=True)
class JobInfo:
    """What the dispatcher needs of a job to launch and judge its tasks: fields that never
    change after submit, so they are read once per job, not once per cycle."""

    id: str
    account_id: str
    project_id: str | None
    revision_id: str | None
    spec: dict[str, Any]
    payload: dict[str, Any]
    timeout_s: int
    max_retries: int
    resources: dict[str, Any]


#: ``ids`` takes a list (an expanding ``IN``), at most IN_CHUNK of them.
JOB_INFO_QUERY = select(
    JOBS.c.id,
    JOBS.c.account_id,
    JOBS.c.project_id,
    JOBS.c.revision_id,
    JOBS.c.spec,
    JOBS.c.payload,
    JOBS.c.timeout_s,
    JOBS.c.max_retries,
    JOBS.c.resources,
).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))


class JobCache:
    """Immutable job fields by id, at most ``limit`` jobs; the dispatcher forgets a job when it
    ends.

    A job whose fields cannot be read back (``store.jsoncodec.Unreadable``) is never cached nor
    returned: it is listed in ``unreadable`` (job id -> field names) for the dispatcher to set
    aside (``engine.quarantine``) in the same cycle."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.jobs: dict[str, JobInfo] = {}
        self.unreadable: dict[str, list[str]] = {}

    async def load(self, db: AsyncSession, job_ids: Iterable[str]) -> dict[str, JobInfo]:
        wanted = list(dict.fromkeys(job_ids))
        missing = [j for j in wanted if j not in self.jobs]
        if missing and len(self.jobs) + len(missing) > self.limit:
            self.jobs.clear()
            missing = wanted
        if missing:
            conn = await db.connection()
            for chunk in chunked(missing):
                for row in (await conn.execute(JOB_INFO_QUERY, {"ids": chunk})).tuples():
                    info = JobInfo(*row)
                    bad = [
                        name
                        for name in ("spec", "payload", "resources")
                        if is_unusable(getattr(info, name))
                    ]
                    if bad:
                        self.unreadable[info.id] = bad
                    else:
                        self.jobs[info.id] = info
        return {j: self.jobs[j] for j in wanted if j in self.jobs}

    def take_unreadable(self) -> dict[str, list[str]]:
        found, self.unreadable = self.unreadable, {}
        return found

    def forget(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.jobs.pop(job_id, None)


@dataclass
class TaskRow:
    """The columns of a task the dispatcher reads on its hot path (not the ORM object)."""

    id: str
    job_id: str
    account_id: str
    index: int
    status: str
    attempt: int
    batched: bool
    item: Any
    element_count: int
    lost_attempts: int = 0
    artifacts: list[Any] | None = None
    output_attempt: int | None = None


#: The columns every :class:`TaskRow` starts with, in its order (``item`` comes next).
TASK_ROW_HEAD = (
    TASKS.c.id,
    TASKS.c.job_id,
    TASKS.c.account_id,
    TASKS.c.index,
    TASKS.c.status,
    TASKS.c.attempt,
    TASKS.c.batched,
)
#: A finished attempt's task columns, in :class:`TaskRow` order; ``item`` (a batch's
#: elements, possibly thousands) is not needed to judge the attempt, so it is not read.
RECORD_QUERY = select(
    *TASK_ROW_HEAD,
    null(),
    TASKS.c.element_count,
    TASKS.c.lost_attempts,
    TASKS.c.artifacts,
    TASKS.c.output_attempt,
).where(TASKS.c.id.in_(bindparam("ids", expanding=True)))


async def load_task_rows(db: AsyncSession, task_ids: list[str]) -> dict[str, TaskRow]:
    """The finished attempts' tasks by id (what judging and settling them needs)."""
    out: dict[str, TaskRow] = {}
    conn = await db.connection()
    for chunk in chunked(task_ids):
        for row in (await conn.execute(RECORD_QUERY, {"ids": chunk})).tuples():
            task = TaskRow(*row)
            out[task.id] = task
    return out


class RunnableJob(NamedTuple):
    """A job with queued tasks the dispatcher may claim (``claiming.runnable_jobs``)."""

    id: str
    account_id: str
    priority: str
    created_at: datetime
    n_queued: int
    status: str


def task_event(task: TaskRow | Task, **extra: Any) -> EventRow:
    data = {"task_id": task.id, "index": task.index, "status": task.status, "attempt": task.attempt}
    data.update(extra)
    return EventRow(task.job_id, task.account_id, "task", data)


def retry_event(task: TaskRow | Task, attempt: int, error: Any) -> EventRow:
    """A failed attempt with retries left goes back to queued (docs/llms-full.md, "Timeouts,
    retries and cancel"): event ``retry``."""
    data = {"task_id": task.id, "index": task.index, "attempt": attempt, "error": error}
    return EventRow(task.job_id, task.account_id, "retry", data)


def job_event(job_id: str, account_id: str, data: dict[str, Any]) -> EventRow:
    return EventRow(job_id, account_id, "job", data)


def ending_tasks(status: TaskStatus, *where: Any) -> Update:
    """``UPDATE tasks SET status, finished_at = :b_now, error = :b_error WHERE …``, built once."""
    return (
        update(TASKS)
        .where(*where)
        .values(
            status=status,
            finished_at=bindparam("b_now", type_=TASKS.c.finished_at.type),
            error=bindparam("b_error", type_=TASKS.c.error.type),
        )
    )


#: Statuses in which a job may still have tasks claimed.
CLAIMABLE_JOB = (JobStatus.QUEUED, JobStatus.RUNNING)
