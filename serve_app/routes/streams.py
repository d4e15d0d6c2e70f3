"""Server-Sent Events for one job or many (SPEC §5.8).

Events come from the store in id order (their writers make ids visible in that order, see
``computalot.store.events``), so resuming with ``Last-Event-ID`` neither loses nor repeats one.
Between reads the stream sleeps on the hub until one of its jobs has news, and sends a comment
heartbeat every 15 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from computalot.errors import field_error
from computalot.schemas.states import TERMINAL_JOB
from computalot.store import jobs as store
from computalot.store.jsoncodec import dumps
from serve_app.deps import Caller, Db
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1", tags=["streams"], route_class=StrictJSONRoute)

HEARTBEAT_S = 15.0
MAX_WAIT_S = 5.0
END_GRACE_S = 3.0
BUSY_READ_INTERVAL_S = 0.075
BUSY_STREAK = 4  # reads in a row that found events before later reads are spaced out
PAGE = 500
MAX_WATCH = 100
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _frame(event: store.StreamEvent) -> str:
    event_id, job_id, name, data = event
    body = dumps({"job_id": job_id, **(data if isinstance(data, dict) else {"value": data})})
    return f"id: {event_id}\nevent: {name}\ndata: {body}\n\n"


async def _events(
    request: Request,
    account_id: str,
    job_ids: list[str],
    after: int,
    snapshot: list[dict[str, Any]],
) -> AsyncIterator[str]:
    app_store = request.app.state.store
    engine = request.app.state.engine
    for job in snapshot:
        yield f"event: job\ndata: {json.dumps({'job_id': job['id'], **job})}\n\n"
    ended: set[str] = set()
    seen: dict[str, int] | None = None
    last_beat = time.monotonic()
    terminal_since: dict[str, float] = {}
    last_read = 0.0
    streak = 0
    while True:
        # While events keep coming (BUSY_STREAK reads in a row found some), read at most every
        # BUSY_READ_INTERVAL_S so a busy fan-out batches them instead of costing a query and a
        # hub round trip per hub flush. A job's first few batches (created, running, end) are
        # read at once: spacing those out would add up to the interval to submit → end.
        pause = BUSY_READ_INTERVAL_S - (time.monotonic() - last_read)
        if streak >= BUSY_STREAK and pause > 0:
            await asyncio.sleep(pause)
        last_read = time.monotonic()
        async with app_store.sessions() as db:
            events = await store.stream_events(db, account_id, job_ids, after=after, limit=PAGE)
            if not events:
                for job in await _stalled_ends(
                    db, account_id, set(job_ids) - ended, terminal_since
                ):
                    ended.add(job["id"])
                    yield f"event: end\ndata: {json.dumps({'job_id': job['id'], **job})}\n\n"
        streak = streak + 1 if events else 0
        if events:
            # One chunk per read, not per event: each chunk is a trip through the ASGI server
            # and the proxy, which a busy fan-out (three events per task) would pay thousands
            # of times.
            yield "".join(_frame(event) for event in events)
            after = events[-1][0]
            ended.update(job_id for _id, job_id, name, _data in events if name == "end")
        if ended >= set(job_ids):
            return
        if len(events) == PAGE:
            continue
        if time.monotonic() - last_beat >= HEARTBEAT_S:
            yield ": heartbeat\n\n"
            last_beat = time.monotonic()
        if await request.is_disconnected():
            return
        wait = min(MAX_WAIT_S, max(0.05, HEARTBEAT_S - (time.monotonic() - last_beat)))
        if engine is None:
            await asyncio.sleep(wait)
        else:
            seen = await engine.wait_events(job_ids, seen, wait)


async def _stalled_ends(
    db: Any, account_id: str, open_ids: set[str], terminal_since: dict[str, float]
) -> list[dict[str, Any]]:
    """Terminal jobs whose ``end`` event has not shown up for END_GRACE_S.

    The dispatcher writes ``end`` in the transaction that makes the job terminal, so this is a
    safety net: a job that ended without one (its ``end`` lost with an event hub of an earlier
    version, a store repaired by hand) still ends the stream, with an id-less ``end`` built from
    the stored job.
    """
    if not open_ids:
        return []
    terminal = await store.terminal_job_ids(db, account_id, open_ids)
    now = time.monotonic()
    out = []
    for job_id in terminal:
        since = terminal_since.setdefault(job_id, now)
        if now - since >= END_GRACE_S:
            out.append(store.job_out(await store.get_job(db, account_id, job_id)))
    return out


def _last_event_id(header: str | None) -> int:
    if not header:
        return 0
    try:
        return max(0, int(header))
    except ValueError:
        raise field_error(["Last-Event-ID"], "must be an event id (integer)") from None


@router.get("/jobs/watch")
async def watch_jobs(
    ids: str,
    request: Request,
    caller: Caller,
    db: Db,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    job_ids = [i for i in dict.fromkeys(x.strip() for x in ids.split(",")) if i]
    if not job_ids:
        raise field_error(["ids"], "give at least one job id")
    if len(job_ids) > MAX_WATCH:
        raise field_error(["ids"], f"at most {MAX_WATCH} job ids")
    jobs = [await store.get_job(db, caller.account_id, j) for j in job_ids]
    after = _last_event_id(last_event_id)
    snapshot = [store.job_out(j) for j in jobs] if after == 0 else []
    return StreamingResponse(
        _events(request, caller.account_id, job_ids, after, snapshot),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


@router.get("/jobs/{job_id}/stream")
async def stream_job(
    job_id: str,
    request: Request,
    caller: Caller,
    db: Db,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    job = await store.get_job(db, caller.account_id, job_id)
    after = _last_event_id(last_event_id)
    snapshot = [store.job_out(job)] if after == 0 and job.status not in TERMINAL_JOB else []
    return StreamingResponse(
        _events(request, caller.account_id, [job.id], after, snapshot),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
