"""The hot reads' answers as bytes, built once per row state (``serve_app.answer_cache``).

``GET /jobs/:id``, the ``/jobs`` list and ``GET /results/:id`` answer from raw job rows
(``store.hot_reads``): a job whose row is unchanged since this replica last answered it costs
a read and a comparison, not a typed row, ``views.job_out`` and an encoding. The bytes are
exactly what encoding the whole answer at once writes (``jsoncodec.dumps_bytes``): where orjson
cannot write a part, the whole answer is written the slow way, as before.

:func:`results_answer` runs as one synchronous function on one pooled connection
(``hot_reads.run``: one hop into the async bridge for every read of the page).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, select

from computalot import views
from computalot.gc_pause import gc_paused
from computalot.jobs import aggregate as aggregate_rules
from computalot.states import TERMINAL_JOB
from computalot.store import hot_reads
from computalot.store import results as results_store
from computalot.store.jsoncodec import dumps_bytes, dumps_fast
from computalot.store.models import Job
from serve_app.answer_cache import AnswerCache
from serve_app.raw_response import render_raw

_ID = hot_reads.RAW_JOB.index("id")
_PAYLOAD = select(Job.payload).where(Job.id == bindparam("job_id"))


def _job_part(cache: AnswerCache, found: hot_reads.RawJobs, raw: tuple[Any, ...]) -> bytes | None:
    """One job's encoded ``job_out``, None when orjson cannot write it."""
    key = ("job", raw[_ID])
    body = cache.get(key, raw)
    if body is None:
        body = dumps_fast(views.job_out(found.values(raw)))  # type: ignore[arg-type]
        if body is not None:
            cache.put(key, raw, body)
    return body


def job_answer(cache: AnswerCache, found: hot_reads.RawJobs) -> bytes:
    """``GET /jobs/:id``'s body."""
    raw = found.rows[0]
    body = _job_part(cache, found, raw)
    return body if body is not None else dumps_bytes(views.job_out(found.values(raw)))  # type: ignore[arg-type]


def jobs_answer(cache: AnswerCache, found: hot_reads.RawJobs, next_cursor: str | None) -> bytes:
    """The ``/jobs`` list's body: ``{"jobs": [...], "next_cursor": ...}``."""
    parts = [_job_part(cache, found, raw) for raw in found.rows]
    if any(part is None for part in parts):
        jobs = [views.job_out(found.values(raw)) for raw in found.rows]  # type: ignore[arg-type]
        return dumps_bytes({"jobs": jobs, "next_cursor": next_cursor})
    tail = dumps_bytes(next_cursor)
    return b'{"jobs":[' + b",".join(parts) + b'],"next_cursor":' + tail + b"}"  # type: ignore[arg-type]


def settled(job: Any) -> bool:
    """Finished, with no queued or running task left: none of its rows will change but the
    job's own (``engine.cancelling.PENDING_QUERY``'s test, turned around)."""
    return job.status in TERMINAL_JOB and not job.n_queued and not job.n_running


def results_answer(
    conn: Connection,
    account_id: str,
    job_id: str,
    *,
    limit: int,
    cursor: str | None,
    page_bytes: int,
    cache: AnswerCache,
) -> bytes:
    """A ``GET /results`` page's body (a page of at most ``limit`` elements and about
    ``page_bytes`` of results): a settled job's pages are kept, keyed by its raw row."""
    found = hot_reads.job_raw(conn, account_id, job_id)
    raw = found.rows[0]
    key = ("results", account_id, job_id, limit, cursor, page_bytes)
    body = cache.get(key, raw)
    if body is not None:
        return body
    job = found.values(raw)
    with gc_paused():  # batched results are decoded to split them, then encoded again
        body = render_raw(_results_page(conn, job, limit, cursor, page_bytes))
    if settled(job):
        cache.put(key, raw, body)
    return body


def _results_page(
    conn: Connection, job: Any, limit: int, cursor: str | None, page_bytes: int
) -> dict[str, Any]:
    counts = results_store.read_element_counts(conn, job)
    results, next_cursor = results_store.read_results_page(
        conn, job, limit=limit, cursor=cursor, total=sum(counts.values()), max_bytes=page_bytes
    )
    # The aggregate is the job's, not the page's: it comes with the first page only (a
    # 100,000-element collect would otherwise travel again with each of its 100 pages).
    aggregate, omitted = None, None
    strategy = aggregate_rules.strategy_of(job)
    if cursor is None and strategy in aggregate_rules.COPY_STRATEGIES:
        small = int(job.result_bytes or 0) <= page_bytes
        if small and aggregate_rules.has_aggregate(job):  # keyed: built on the base payload
            job.payload = conn.execute(_PAYLOAD, {"job_id": job.id}).scalar()
        aggregate, omitted = aggregate_rules.read_copied_aggregate(conn, job, max_bytes=page_bytes)
    elif cursor is None:
        aggregate = results_store.read_stored_aggregate(conn, job)
    return views.results_out(job, results, next_cursor, counts, aggregate, omitted)
