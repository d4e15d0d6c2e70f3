"""Account-scoped reads of jobs, tasks and events, and their public shapes (SPEC §5).

Every query takes the caller's ``account_id``: another account's job is "not found", never
"forbidden", and no route can forget the filter because there is no unscoped read here. Results are
read in ``store.results``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, cast, exists, func, literal, literal_column, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.errors import BadRequest, NotFound, ValidationFailed
from computalot.jobs.fanout import element_payload
from computalot.states import TERMINAL_JOB, JobStatus, TaskStatus
from computalot.store.jsoncodec import Unreadable, is_unusable
from computalot.store.models import Event, Job, Task
from computalot.timeutil import iso

MAX_PAGE = 1000


class PayloadJob(Protocol):
    """What building a task's payload reads of its job (an ORM ``Job`` or the dispatcher's
    cached ``JobInfo``)."""

    @property
    def spec(self) -> dict[str, Any]: ...

    @property
    def payload(self) -> dict[str, Any]: ...


class PayloadTask(Protocol):
    @property
    def batched(self) -> bool: ...

    @property
    def item(self) -> Any: ...


#: A cursor longer than this was not made by us (ours are under 100 characters).
MAX_CURSOR_CHARS = 512


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _bad_cursor() -> BadRequest:
    return BadRequest(
        "cursor is not valid",
        details=[{"loc": ["cursor"], "msg": "not a cursor this list handed out"}],
        recommended_action="pass next_cursor from the previous page unchanged, or omit it",
    )


def decode_cursor(cursor: str, *shape: type) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor`; any other text is 400.

    ``shape`` (e.g. ``str, str`` or ``int``) is the exact type of each value: a cursor that
    decodes to anything else (``[]``, ``[null]``, ``["x"]`` where a number belongs, a boolean,
    a cursor of another list) is refused, never carried into a query. Without ``shape`` only
    "a JSON list" is checked (the caller validates)."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise _bad_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, RecursionError):
        raise _bad_cursor() from None
    if not isinstance(values, list):
        raise _bad_cursor()
    if shape and (
        len(values) != len(shape)
        or not all(_is(value, kind) for value, kind in zip(values, shape, strict=True))
    ):
        raise _bad_cursor()
    return values


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62
    if kind is str:
        return isinstance(value, str) and len(value) <= 128
    return isinstance(value, kind)


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
        raise NotFound(
            f"job {job_id} not found", recommended_action="list your jobs with GET /api/v1/jobs"
        )
    return job


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
    if status:
        query = query.where(Job.status.in_(status_filter(status, frozenset(JobStatus))))
    if project:
        query = query.where(Job.project_name == project)
    if type:
        query = query.where(Job.type == type)
    if cursor:
        created, last_id = decode_cursor(cursor, str, str)
        try:
            at = datetime.fromisoformat(created)
        except ValueError:
            raise _bad_cursor() from None
        if at.tzinfo is None:
            raise _bad_cursor()
        query = query.where(or_(Job.created_at < at, and_(Job.created_at == at, Job.id < last_id)))
    if tag:
        query = query.where(_has_tag(db.get_bind().dialect.name, tag))
    query = query.order_by(Job.created_at.desc(), Job.id.desc())
    jobs = list((await db.execute(query.limit(limit + 1))).scalars())
    next_cursor = None
    if len(jobs) > limit:
        jobs = jobs[:limit]
        last = jobs[-1]
        next_cursor = encode_cursor([last.created_at.isoformat(), last.id])
    return jobs, next_cursor


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


def job_out(job: Job) -> dict[str, Any]:
    done = job.n_completed + job.n_failed + job.n_cancelled
    return {
        "id": job.id,
        "type": job.type,
        "recipe": job.recipe,
        "project": job.project_name,
        "revision_id": job.revision_id,
        "status": job.status,
        "priority": job.priority,
        "tags": job.tags,
        "depends_on": job.depends_on,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "timeout_s": job.timeout_s,
        "max_retries": job.max_retries,
        "requirements": job.requirements,
        "runner_command": job.spec.get("runner_command"),
        "fan_out": {"kind": job.spec.get("kind"), "elements": job.spec.get("element_count")},
        "task_counts": {
            "total": job.n_total,
            "queued": job.n_queued,
            "running": job.n_running,
            "completed": job.n_completed,
            "failed": job.n_failed,
            "cancelled": job.n_cancelled,
        },
        "progress": round(done / job.n_total, 6) if job.n_total else 0.0,
        "error": job.error,
        "recommended_action": job.recommended_action,
        "warnings": job.warnings,
        "cost": {"held_usd": float(job.held_usd), "charged_usd": float(job.charged_usd)},
        "meta": job.meta,
        "variant": job.variant,
    }


def task_payload_for(job: PayloadJob, task: PayloadTask) -> dict[str, Any]:
    """The payload a task's runner sees. A stored element that cannot be read back (or does not
    fit the job's fan-out) gives an ``Unreadable`` stand-in, so listing such a task still
    answers (the dispatcher never launches it: ``records.claim_tasks``)."""
    if is_unusable(task.item):
        return Unreadable("the task's stored element cannot be read back")
    kind = job.spec.get("kind", "single")
    fan_out = job.spec.get("fan_out")
    try:
        if task.batched:
            return {
                "batch": [element_payload(kind, job.payload, fan_out, it) for it in task.item or []]
            }
        item = task.item[0] if task.item else None
        if kind == "single":
            return dict(job.payload)
        return element_payload(kind, job.payload, fan_out, item)
    except (TypeError, KeyError, ValueError, AttributeError, IndexError):
        return Unreadable("the task's stored element does not fit its job's fan-out")


def task_out(job: Job, task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "job_id": task.job_id,
        "index": task.index,
        "status": task.status,
        "attempt": task.attempt,
        "elements": {"start": task.element_start, "count": task.element_count},
        "payload": task_payload_for(job, task),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "duration_s": task.duration_s,
        "exit_code": task.exit_code,
        "error": task.error,
        "output": task.output_tail or "",
        "latest_progress": task.latest_progress,
        "live_feedback": {"output_tail": task.output_tail or ""},
        "result_quality": task.result_quality,
        "result_warnings": task.result_warnings or [],
        "artifacts": task.artifacts or [],
    }


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


def event_out(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "job_id": event.job_id,
        "event": event.event,
        "data": event.data,
        "created_at": iso(event.created_at),
    }
