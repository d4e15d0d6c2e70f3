"""The API's hot reads without the ORM: one Core ``SELECT`` of the columns an answer needs,
rows handed on as plain objects (issue #18 §3, bench/api_throughput.py).

``GET /account``, ``/jobs/:id``, ``/jobs/:id/tasks``, ``/results/:id`` and the ``/jobs`` list
are read far more often than anything is written. Through the ORM each read builds an identity
map, instruments every object and loads every column (a job's whole ``payload``, a task's
``stdout``, ``stderr`` and ``result``) that the answer never shows. Here each read selects the
mapped columns minus the heavy ones a view does not use, and each row becomes a :class:`Row`:
attribute access like the model's, so ``computalot.views`` answers from it unchanged. A column
added to a model later is selected by itself (only the heavy ones are named), so a view that
starts using it keeps working. A job's row is read raw (``store.raw_rows``) and typed only
when this replica has not already encoded the answer for that exact row (``serve_app.answers``).

Each read runs as one plain (synchronous) function on a pooled connection, the whole of it in
a single hop into SQLAlchemy's async bridge (:func:`run`): checking a connection out, the
statement and giving the connection back through ``AsyncConnection`` cost three hops, and on
SQLite those hops cost more than the statement (bench/README.md, "API throughput"). The
statements are built once, with bound parameters, for the same reason.

Like ``store.jobs``, every read here is scoped by the caller's ``account_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, and_, bindparam, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import Label
from sqlalchemy.util import greenlet_spawn

from computalot.cursors import decode_cursor, decode_time_and_id, encode_cursor
from computalot.states import TaskStatus
from computalot.store import jobs as jobs_store
from computalot.store.models import Account, Job, Task
from computalot.store.raw_rows import Processor, RawColumns

T = TypeVar("T")


class Row(SimpleNamespace):
    """One row read here, its columns as attributes (what ``views`` reads of a model)."""


def _columns(model: Any, *, skip: frozenset[str] = frozenset()) -> list[Label[Any]]:
    """The model's mapped columns (labelled with their attribute names), minus ``skip``."""
    return [
        attr.columns[0].label(attr.key)
        for attr in inspect(model).column_attrs
        if attr.key not in skip
    ]


#: A job's columns no answer of these routes shows: its element payloads (``payload``, needed
#: only to build a task's payload), the planner's input, the stored aggregate (read on its own
#: by ``GET /results``) and the engine's bookkeeping.
_JOB_HEAVY = frozenset({"payload", "plan_input", "aggregate_result", "resources"})
#: A task's output and result: ``GET /tasks`` shows the live tail, not the full texts.
_TASK_HEAVY = frozenset({"stdout", "stderr", "result"})

JOB_COLUMNS = _columns(Job, skip=_JOB_HEAVY)
JOB_COLUMNS_WITH_PAYLOAD = _columns(Job, skip=_JOB_HEAVY - {"payload"})
TASK_COLUMNS = _columns(Task, skip=_TASK_HEAVY)
ACCOUNT_COLUMNS = _columns(Account)


def _row(mapping: Any) -> Row:
    return Row(**mapping)


def _rows(result: Any) -> list[Row]:
    """Every row of ``result`` as a :class:`Row` (the keys read once, not per row)."""
    keys = tuple(result.keys())
    out = []
    for values in result.all():
        found = Row()
        found.__dict__.update(zip(keys, values, strict=True))
        out.append(found)
    return out


#: A job's answer columns selected untyped: the raw row keys its encoded answer
#: (``serve_app.answer_cache``); ``RAW_JOB.values`` types it when the answer must be built.
RAW_JOB = RawColumns(JOB_COLUMNS)

# Built once: a statement's construction and cache key cost more than running it on SQLite.
_ACCOUNT = select(*ACCOUNT_COLUMNS).where(Account.id == bindparam("account_id"))
_JOB_WHERE = (Job.id == bindparam("job_id"), Job.account_id == bindparam("account_id"))
_JOB = select(*RAW_JOB.raw).where(*_JOB_WHERE)
_JOB_WITH_PAYLOAD = select(*JOB_COLUMNS_WITH_PAYLOAD).where(*_JOB_WHERE)
_JOBS = select(*RAW_JOB.raw).where(Job.account_id == bindparam("account_id"))
_JOBS_AFTER = or_(
    Job.created_at < bindparam("at", type_=Job.created_at.type),
    and_(Job.created_at == bindparam("at", type_=Job.created_at.type), Job.id < bindparam("id")),
)
_NEWEST_FIRST = (Job.created_at.desc(), Job.id.desc())
#: The ``/jobs`` list without filters (the common read), first page and later pages.
_JOBS_PAGE = _JOBS.order_by(*_NEWEST_FIRST).limit(bindparam("limit"))
_JOBS_PAGE_AFTER = _JOBS.where(_JOBS_AFTER).order_by(*_NEWEST_FIRST).limit(bindparam("limit"))
_TASKS = select(*TASK_COLUMNS).where(
    Task.job_id == bindparam("job_id"), Task.account_id == bindparam("account_id")
)
#: A ``/jobs/:id/tasks`` page without a status filter, from the start or after a cursor.
_TASKS_PAGE = _TASKS.order_by(Task.index).limit(bindparam("limit"))
_TASKS_PAGE_AFTER = (
    _TASKS.where(Task.index > bindparam("after")).order_by(Task.index).limit(bindparam("limit"))
)


async def run(engine: AsyncEngine, read: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``read(conn, *args, **kwargs)`` on a pooled connection, given back (its transaction and
    any SQLite snapshot ended) before this returns: one hop into the async bridge in all."""

    def go() -> T:
        with engine.sync_engine.connect() as conn:
            return read(conn, *args, **kwargs)

    return await greenlet_spawn(go)


def account(conn: Connection, account_id: str) -> Row | None:
    found = conn.execute(_ACCOUNT, {"account_id": account_id}).first()
    return None if found is None else _row(found._mapping)


class RawJobs(NamedTuple):
    """Raw job rows (:data:`RAW_JOB`'s columns) and the processors that type them."""

    rows: list[tuple[Any, ...]]
    processors: list[Processor]

    def values(self, raw: tuple[Any, ...]) -> Row:
        return Row(**RAW_JOB.values(raw, self.processors).__dict__)


def _raw(result: Any, conn: Connection) -> RawJobs:
    processors = RAW_JOB.processors(conn.dialect, result.cursor.description)
    return RawJobs([tuple(found) for found in result.all()], processors)


def job_raw(conn: Connection, account_id: str, job_id: str) -> RawJobs:
    """The caller's job ``job_id`` as one raw row, 404 when it is not theirs or does not
    exist (as ``store.jobs.get_job``)."""
    found = _raw(conn.execute(_JOB, {"job_id": job_id, "account_id": account_id}), conn)
    if not found.rows:
        raise jobs_store.job_not_found(job_id)
    return found


def job(conn: Connection, account_id: str, job_id: str, *, with_payload: bool = False) -> Row:
    """The caller's job ``job_id``, 404 when it is not theirs or does not exist (as
    ``store.jobs.get_job``); ``with_payload`` for the routes that build task payloads."""
    if not with_payload:
        found = job_raw(conn, account_id, job_id)
        return found.values(found.rows[0])
    params = {"job_id": job_id, "account_id": account_id}
    row = conn.execute(_JOB_WITH_PAYLOAD, params).first()
    if row is None:
        raise jobs_store.job_not_found(job_id)
    return _row(row._mapping)


def list_jobs(
    conn: Connection,
    account_id: str,
    *,
    status: str | None,
    project: str | None,
    tag: str | None,
    type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """:func:`list_jobs_raw` with each row typed."""
    found, next_cursor = list_jobs_raw(
        conn,
        account_id,
        status=status,
        project=project,
        tag=tag,
        type=type,
        limit=limit,
        cursor=cursor,
    )
    return [found.values(raw) for raw in found.rows], next_cursor


_CREATED_AT = RAW_JOB.index("created_at")
_ID = RAW_JOB.index("id")


def list_jobs_raw(
    conn: Connection,
    account_id: str,
    *,
    status: str | None,
    project: str | None,
    tag: str | None,
    type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[RawJobs, str | None]:
    """A newest-first page of the caller's jobs (``store.paging.newest_first``'s order and
    cursor), filtered as ``store.jobs.list_jobs`` filters, as raw rows."""
    params: dict[str, Any] = {"account_id": account_id, "limit": limit + 1}
    if status or project or tag or type:
        query = jobs_store.job_filters(
            _JOBS, conn.dialect.name, status=status, project=project, tag=tag, type=type
        )
        if cursor:
            query = query.where(_JOBS_AFTER)
        query = query.order_by(*_NEWEST_FIRST).limit(bindparam("limit"))
    else:
        query = _JOBS_PAGE_AFTER if cursor else _JOBS_PAGE
    if cursor:
        params["at"], params["id"] = decode_time_and_id(cursor)
    found = _raw(conn.execute(query, params), conn)
    if len(found.rows) <= limit:
        return found, None
    del found.rows[limit:]
    last = found.rows[-1]
    created_at = found.processors[_CREATED_AT]
    at = last[_CREATED_AT] if created_at is None else created_at(last[_CREATED_AT])
    return found, encode_cursor([at.isoformat(), last[_ID]])


def job_and_tasks(
    conn: Connection,
    account_id: str,
    job_id: str,
    *,
    limit: int,
    cursor: str | None,
    status: str | None = None,
) -> tuple[Row, list[Row], str | None]:
    """The caller's job (with its payload: a task's payload is built from it) and a page of
    its tasks in index order (``store.jobs.list_tasks``'s order, filter and cursor), without
    their full output and result."""
    found_job = job(conn, account_id, job_id, with_payload=True)
    params: dict[str, Any] = {"job_id": job_id, "account_id": account_id, "limit": limit + 1}
    if status:
        wanted = jobs_store.status_filter(status, frozenset(TaskStatus))
        query = _TASKS.where(Task.status.in_(wanted))
        if cursor:
            query = query.where(Task.index > bindparam("after"))
        query = query.order_by(Task.index).limit(bindparam("limit"))
    else:
        query = _TASKS_PAGE_AFTER if cursor else _TASKS_PAGE
    if cursor:
        (params["after"],) = decode_cursor(cursor, int)
    found = _rows(conn.execute(query, params))
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        next_cursor = encode_cursor([found[-1].index])
    return found_job, found, next_cursor
