"""Account-scoped reads of jobs, tasks and events (docs/llms-full.md, "Jobs").

Every query takes the caller's ``account_id``: another account's job is "not found", never
"forbidden", and no route can forget the filter because there is no unscoped read here. Results are
read in ``store.results``; the answers' shapes are ``computalot.views``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import cast, exists, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.cursors import decode_cursor, encode_cursor
from computalot.errors import NotFound, ValidationFailed
from computalot.states import TERMINAL_JOB, JobStatus, TaskStatus
from computalot.store.models import Event, Job, Task
from computalot.store.paging import newest_first

MAX_PAGE = 1000


def status_filter(value: str, allowed: frozenset[str]) -> list[str]:
    """``?status=a,b`` as a list of known states (422 naming ``status`` otherwise)."""
    wanted = [s for s in dict.fromkeys(part.strip() for part in value.split(",")) if s]
    unknown = [s for s in wanted if s not in allowed]
    if unknown or not wanted:
        raise ValidationFailed(
            f"status: must be a comma-separated list of {', '.join(sorted(allowed))}",
            details=[{"loc": ["status"], "msg": f"allowed: {', '.join(sorted(allowed))}"}],
        )
    return wanted


async def get_job(db: AsyncSession, account_id: str, job_id: str) -> Job:
    job = await db.get(Job, job_id)
    if job is None or job.account_id != account_id:
        raise job_not_found(job_id)
    return job


def job_not_found(job_id: str) -> NotFound:
    return NotFound(
        f"job {job_id} not found", recommended_action="list your jobs with GET /api/v1/jobs"
    )


async def get_jobs(db: AsyncSession, account_id: str, job_ids: list[str]) -> list[Job]:
    """These jobs of the caller's, in the order asked, in one query; 404 naming the first one
    that is not theirs (or does not exist)."""
    query = select(Job).where(Job.account_id == account_id, Job.id.in_(job_ids))
    found = {job.id: job for job in (await db.execute(query)).scalars()}
    for job_id in job_ids:
        if job_id not in found:
            raise job_not_found(job_id)
    return [found[job_id] for job_id in job_ids]


async def list_jobs(
    db: AsyncSession,
    account_id: str,
    *,
    status: str | None,
    project: str | None,
    tag: str | None,
    type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    query = select(Job).where(Job.account_id == account_id)
    query = job_filters(
        query, db.get_bind().dialect.name, status=status, project=project, tag=tag, type=type
    )
    return await newest_first(db, Job, query, limit=limit, cursor=cursor)


def job_filters(
    query: Any,
    dialect: str,
    *,
    status: str | None,
    project: str | None,
    tag: str | None,
    type: str | None,
) -> Any:
    """``query`` narrowed by the ``/jobs`` list's filters (422 naming a bad ``status``)."""
    if status:
        query = query.where(Job.status.in_(status_filter(status, frozenset(JobStatus))))
    if project:
        query = query.where(Job.project_name == project)
    if type:
        query = query.where(Job.type == type)
    if tag:
        query = query.where(_has_tag(dialect, tag))
    return query


def _has_tag(dialect: str, tag: str) -> Any:
    """``tag`` is one of the job's tags (a JSON list), tested in SQL so a page reads only what
    it answers."""
    if dialect == "postgresql":
        return cast(Job.tags, JSONB).contains([tag])
    return exists(
        select(literal(1))
        .select_from(func.json_each(Job.tags).table_valued("value"))
        .where(literal_column("value") == tag)
    )


async def terminal_job_ids(db: AsyncSession, account_id: str, job_ids: set[str]) -> list[str]:
    """Which of these jobs (of this account) have reached a terminal status: one query."""
    query = select(Job.id).where(
        Job.account_id == account_id, Job.id.in_(job_ids), Job.status.in_(TERMINAL_JOB)
    )
    return list((await db.execute(query)).scalars())


async def list_tasks(
    db: AsyncSession, job: Job, *, limit: int, cursor: str | None, status: str | None = None
) -> tuple[list[Task], str | None]:
    query = select(Task).where(Task.job_id == job.id, Task.account_id == job.account_id)
    if status:
        query = query.where(Task.status.in_(status_filter(status, frozenset(TaskStatus))))
    if cursor:
        (after,) = decode_cursor(cursor, int)
        query = query.where(Task.index > after)
    rows = list((await db.execute(query.order_by(Task.index).limit(limit + 1))).scalars())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([rows[-1].index])
    return rows, next_cursor


def _events_after(query: Any, account_id: str, job_ids: list[str], after: int, limit: int) -> Any:
    """``query`` narrowed to these jobs' events (of this account) after ``after``, in id order."""
    return (
        query.where(Event.job_id.in_(job_ids), Event.account_id == account_id, Event.id > after)
        .order_by(Event.id)
        .limit(limit)
    )


async def list_events(
    db: AsyncSession, account_id: str, job_ids: list[str], *, after: int, limit: int
) -> list[Event]:
    query = _events_after(select(Event), account_id, job_ids, after, limit)
    return list((await db.execute(query)).scalars())


#: What a stream frame needs of an event, in this order (Core rows: no ORM objects per event).
StreamEvent = tuple[int, str, str, Any]


async def stream_events(
    db: AsyncSession, account_id: str, job_ids: list[str], *, after: int, limit: int
) -> list[StreamEvent]:
    """``(id, job_id, event, data)`` of the jobs' events after ``after``, in id order."""
    columns = select(Event.id, Event.job_id, Event.event, Event.data)
    query = _events_after(columns, account_id, job_ids, after, limit)
    return [tuple(row) for row in (await db.execute(query)).tuples()]
