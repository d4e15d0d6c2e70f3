"""Reading stored results: ``GET /results`` pages bounded in items and bytes, and a job's
elements in byte-bounded chunks (for the aggregates built from them).

A result stored since results are measured (``tasks.result_bytes`` set) was checked and written
by its task's worker (valid JSON, nested at most ``MAX_JSON_DEPTH`` levels): a non-batched one is
read as text and handed on as :class:`RawJSON`, never decoded (an answer embeds the text as it
is). A batched task's text is decoded to split it into its elements; a row stored before results
were measured is decoded too. A value that cannot be read back (``jsoncodec.Unreadable``) is a
null result with a warning, never an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Text, bindparam, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from computalot.cursors import decode_positions, encode_cursor
from computalot.states import TaskStatus
from computalot.store.jsoncodec import RawJSON, is_unreadable, loads
from computalot.store.models import Job, Task

_T = Task.__table__.c
#: The stored JSON text of a result, as text on every backend (not decoded by the driver).
RESULT_TEXT = cast(_T.result, Text).label("result_text")
#: A task's result size in bytes: measured, or (rows stored before) the length of its text.
STORED_SIZE = func.coalesce(_T.result_bytes, func.length(cast(_T.result, Text)), 0).label("size")
#: What a result needs of a task (not its payload, batch items or output tails).
RESULT_COLUMNS = (
    _T.id,
    _T.index.label("task_index"),  # a Row's .index is tuple.index
    _T.status,
    _T.batched,
    _T.element_start,
    _T.element_count,
    RESULT_TEXT,
    _T.result_bytes,
    _T.result_quality,
    _T.result_warnings,
    _T.artifacts,
    _T.cached_from,
)
#: Bytes of results one chunk of :func:`job_elements` reads at most (unless one task has more).
CHUNK_BYTES = 16 * 1024 * 1024


def _unreadable_warning(value: Any) -> str:
    return f"the stored result could not be read back ({value.reason}); it is shown as null"


def single_result(text: str | None, measured: bool, *, decode: bool = False) -> tuple[Any, str]:
    """A non-batched task's result (RawJSON when it may pass through) and a warning ("" if
    none). ``measured``: the row has ``result_bytes`` (checked by its worker)."""
    if text is None:
        return None, ""
    if measured and not decode:
        return RawJSON(text), ""
    value = loads(text)
    if is_unreadable(value):
        return None, _unreadable_warning(value)
    return value, ""


def batch_elements(text: str | None) -> tuple[list[Any] | None, str]:
    """A batched task's stored ``elements`` list (None if there is none) and a warning."""
    if text is None:
        return None, ""
    stored = loads(text)
    if is_unreadable(stored):
        return None, _unreadable_warning(stored)
    elements = stored.get("elements") if isinstance(stored, dict) else None
    return (elements if isinstance(elements, list) else None), ""


@dataclass(frozen=True, slots=True)
class Piece:
    """One element of a task's stored result. ``offset``: its position within the task;
    ``quality``/``warnings``: a batched element's own (None: the task's); ``warning``: why the
    stored text could not be read back ("" if it could)."""

    offset: int
    result: Any
    quality: Any
    warnings: list[Any] | None
    warning: str


def split_stored(
    batched: bool,
    count: int,
    text: str | None,
    measured: bool,
    *,
    decode: bool = False,
    lo: int = 0,
    hi: int | None = None,
) -> list[Piece]:
    """A task's stored result as its elements ``[lo, hi)``: the one place a batched task's
    ``{"elements": [...]}`` is split back (its worker split the runner's ``results`` list with
    ``jobs.merge.split_batch_result`` before storing it)."""
    if not batched:
        value, warning = single_result(text, measured, decode=decode)
        return [Piece(0, value, None, None, warning)][lo:hi]
    elements, warning = batch_elements(text)
    hi = count if hi is None else min(hi, count)
    out = []
    for i in range(lo, hi):
        el = elements[i] if elements and i < len(elements) else None
        if isinstance(el, dict):
            out.append(Piece(i, el.get("result"), el.get("quality"), el.get("warnings", []), ""))
        else:
            out.append(Piece(i, None, None, None, warning))
    return out


def element_results(task: Any, lo: int = 0, hi: int | None = None) -> list[dict[str, Any]]:
    """A task's per-element outcomes, elements ``[lo, hi)`` of it (positions within the task):
    a batched task is split back into its elements. ``task`` has :data:`RESULT_COLUMNS`."""
    artifacts = task.artifacts or []
    task_warnings = list(task.result_warnings or [])
    pieces = split_stored(
        task.batched,
        task.element_count,
        task.result_text,
        task.result_bytes is not None,
        lo=lo,
        hi=hi,
    )
    return [
        {
            "task_id": task.id,
            "index": task.element_start + piece.offset,
            "status": task.status,
            "result": piece.result,
            "result_quality": piece.quality if task.batched else task.result_quality,
            "result_warnings": piece.warnings
            if piece.warnings is not None
            else [*task_warnings, piece.warning]
            if piece.warning
            else task_warnings,
            "artifacts": artifacts,
            "cached": getattr(task, "cached_from", None) is not None,
        }
        for piece in pieces
    ]


def _page_cursor(cursor: str | None) -> tuple[int, int]:
    """(first element, index of the task holding it) of a results cursor."""
    if not cursor:
        return 0, 0
    first, task_index = decode_positions(cursor, 2)
    return first, task_index


@dataclass(frozen=True)
class Slice:
    """Elements ``[lo, hi)`` (positions within the task) of task ``index``."""

    index: int
    lo: int
    hi: int


def plan_page(
    tasks: Sequence[tuple[int, int, int, int]], start: int, end: int, max_bytes: int
) -> list[Slice]:
    """Which elements of ``tasks`` (index, element_start, element_count, result bytes; in index
    order, the first holding element ``start``) go on a page of elements ``[start, end)`` whose
    results come to at most ``max_bytes`` -- and at least one element, however big. A batched
    task's bytes count evenly per element."""
    plan: list[Slice] = []
    position, used = start, 0.0
    for index, first, count, size in tasks:
        lo = position - first
        if count <= 0 or lo < 0 or lo >= count:
            break
        hi = min(count, end - first)
        each = size / count
        room = max_bytes - used
        fits = hi - lo if each <= 0 else min(hi - lo, int(room // each))
        if position == start:
            fits = max(fits, 1)  # a single result bigger than a page is still reachable
        if fits > 0:
            plan.append(Slice(index, lo, lo + fits))
            position += fits
            used += fits * each
        if fits < hi - lo or position >= end:
            break
    return plan


# Built once, with bound parameters: building a select and its cache key cost more than running
# it on SQLite (bench/README.md, "API throughput").
_SCOPE = (_T.job_id == bindparam("job_id"), _T.account_id == bindparam("account_id"))
_SIZES = (
    select(_T.index, _T.element_start, _T.element_count, STORED_SIZE)
    .where(*_SCOPE, _T.index >= bindparam("first"))
    .order_by(_T.index)
    .limit(bindparam("limit"))
)
_RESULTS = (
    select(*RESULT_COLUMNS)
    .where(*_SCOPE, _T.index >= bindparam("lo"), _T.index <= bindparam("hi"))
    .order_by(_T.index)
)
_COUNTS = select(_T.status, func.sum(_T.element_count)).where(*_SCOPE).group_by(_T.status)
_AGGREGATE = select(Job.aggregate_result).where(Job.id == bindparam("job_id"))
_ELEMENT_COLUMNS = (_T.index, _T.status, _T.batched, _T.element_start, _T.element_count)
_ELEMENTS = select(*_ELEMENT_COLUMNS, STORED_SIZE).where(*_SCOPE).order_by(_T.index)
_ELEMENTS_WITH_ITEMS = (
    select(*_ELEMENT_COLUMNS, STORED_SIZE, _T.item).where(*_SCOPE).order_by(_T.index)
)
_TEXTS = select(_T.index, RESULT_TEXT, _T.result_bytes).where(
    *_SCOPE,
    _T.status == TaskStatus.COMPLETED,
    _T.index >= bindparam("lo"),
    _T.index <= bindparam("hi"),
)


def _scope(job: Any) -> dict[str, Any]:
    return {"job_id": job.id, "account_id": job.account_id}


async def results_page(
    db: AsyncSession | AsyncConnection,
    job: Job,
    *,
    limit: int,
    cursor: str | None,
    total: int,
    max_bytes: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """:func:`read_results_page` in one hop."""
    return await db.run_sync(
        read_results_page, job, limit=limit, cursor=cursor, total=total, max_bytes=max_bytes
    )


def read_results_page(
    db: Session | Connection,
    job: Any,
    *,
    limit: int,
    cursor: str | None,
    total: int,
    max_bytes: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """Per-element results from the cursor's element on: at most ``limit`` elements and about
    ``max_bytes`` of results (at least one element); ``total`` is the job's element count.

    The cursor holds the element index and the index of the task that holds it, so a page reads
    from that task on (``ix_tasks_job_index``): sizes first, then the results of the tasks the
    page takes, so page 57 of a 100,000-element job costs what page 1 does and a page never
    reads more results than it answers.
    """
    start, first_task = _page_cursor(cursor)
    end = min(start + limit, total)
    if start >= end:
        return [], None
    spec = job.spec if isinstance(job.spec, dict) else {}
    batch_size = spec.get("batch_size")
    per_task = batch_size if isinstance(batch_size, int) and batch_size > 0 else 1
    # Batches are cut in order, ``per_task`` elements each: element e is in task e // per_task.
    wanted = max(1, (end - 1) // per_task - first_task + 1)
    scope = _scope(job)
    sizes = db.execute(_SIZES, {**scope, "first": first_task, "limit": wanted})
    metas = [tuple(r) for r in sizes.all()]
    plan = plan_page(metas, start, end, max_bytes)
    if not plan:
        return [], None
    found = db.execute(_RESULTS, {**scope, "lo": plan[0].index, "hi": plan[-1].index})
    rows = {row.task_index: row for row in found.all()}
    out: list[dict[str, Any]] = []
    for part in plan:
        row = rows.get(part.index)
        if row is not None:
            out.extend(element_results(row, part.lo, part.hi))
    last = plan[-1]
    position = start + sum(p.hi - p.lo for p in plan)
    last_count = next(count for index, _f, count, _s in metas if index == last.index)
    cursor_task = last.index if last.hi < last_count else last.index + 1
    if position >= total:
        return out, None
    return out, encode_cursor([position, cursor_task])


async def element_counts(db: AsyncSession | AsyncConnection, job: Job) -> dict[str, int]:
    return await db.run_sync(read_element_counts, job)


def read_element_counts(db: Session | Connection, job: Any) -> dict[str, int]:
    """Elements (not tasks) per task status: a batched task counts once per element."""
    return {status: int(n or 0) for status, n in db.execute(_COUNTS, _scope(job)).all()}


async def stored_aggregate(db: AsyncSession | AsyncConnection, job: Job) -> Any:
    return await db.run_sync(read_stored_aggregate, job)


def read_stored_aggregate(db: Session | Connection, job: Any) -> Any:
    """The job's stored ``aggregate_result`` (a deferred column: job reads skip it)."""
    return db.execute(_AGGREGATE, {"job_id": job.id}).scalar()


@dataclass(slots=True)
class StoredElement:
    """One element of a job as stored: ``result`` is None unless its task completed
    (RawJSON or decoded, see :func:`job_elements`); ``item`` its fan-out value if asked for."""

    index: int
    status: str
    result: Any
    item: Any
    warning: str


async def job_elements(
    db: AsyncSession, job: Job, *, items: bool, decode: bool, chunk_bytes: int = CHUNK_BYTES
) -> AsyncIterator[StoredElement]:
    """Every element of ``job`` in order, its results read a chunk of tasks at a time (about
    ``chunk_bytes`` each), so a big job's results are never all in memory at once.
    ``decode``: every result decoded (to compute with it), else non-batched ones stay RawJSON
    (to pass on)."""
    scope = _scope(job)
    tasks = (await db.execute(_ELEMENTS_WITH_ITEMS if items else _ELEMENTS, scope)).all()
    for chunk in _chunks(tasks, chunk_bytes):
        done = [t.index for t in chunk if t.status == TaskStatus.COMPLETED]
        texts = _texts((await db.execute(_TEXTS, _span(scope, done))).all()) if done else {}
        for task in chunk:
            for element in _task_elements(task, texts.get(task.index), items, decode):
                yield element


def read_job_elements(
    db: Session | Connection,
    job: Any,
    *,
    items: bool,
    decode: bool,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[StoredElement]:
    """:func:`job_elements` on a synchronous connection (a read that runs in one hop)."""
    scope = _scope(job)
    tasks = db.execute(_ELEMENTS_WITH_ITEMS if items else _ELEMENTS, scope).all()
    for chunk in _chunks(tasks, chunk_bytes):
        done = [t.index for t in chunk if t.status == TaskStatus.COMPLETED]
        texts = _texts(db.execute(_TEXTS, _span(scope, done)).all()) if done else {}
        for task in chunk:
            yield from _task_elements(task, texts.get(task.index), items, decode)


def _span(scope: dict[str, Any], indexes: list[int]) -> dict[str, Any]:
    return {**scope, "lo": indexes[0], "hi": indexes[-1]}


def _texts(rows: Sequence[Any]) -> dict[int, tuple[str | None, bool]]:
    return {index: (text, measured is not None) for index, text, measured in rows}


def _chunks(tasks: Sequence[Any], chunk_bytes: int) -> list[list[Any]]:
    chunks: list[list[Any]] = [[]]
    used = 0
    for task in tasks:
        size = int(task.size or 0) if task.status == TaskStatus.COMPLETED else 0
        if chunks[-1] and used + size > chunk_bytes:
            chunks.append([])
            used = 0
        chunks[-1].append(task)
        used += size
    return chunks


def _task_elements(
    task: Any, stored: tuple[str | None, bool] | None, items: bool, decode: bool
) -> list[StoredElement]:
    text, measured = stored if stored else (None, False)
    raw_items = task.item if items else None
    item_list = raw_items if isinstance(raw_items, list) else [raw_items]
    pieces = split_stored(task.batched, task.element_count, text, measured, decode=decode)
    return [
        StoredElement(
            task.element_start + piece.offset,
            task.status,
            piece.result,
            item_list[piece.offset] if piece.offset < len(item_list) else None,
            piece.warning,
        )
        for piece in pieces
    ]
