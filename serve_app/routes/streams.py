"""Server-Sent Events for one job or many (docs/llms-full.md, "Streaming (Server-Sent Events)").

A route checks the caller and the jobs with a session it gives back when it returns; the
response then follows the replica's shared feed (``serve_app.stream_feed``) without holding a
database connection. Events go out in id order, and resuming with ``Last-Event-ID`` neither
loses nor repeats one (``serve_app.stream_subscriber``). A comment heartbeat is sent every
15 s; a stream whose credential stops authenticating (key revoked, wallet session expired)
gets an ``error`` event and closes within a few seconds.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from computalot import views
from computalot.auth.principal import Principal
from computalot.errors import field_error
from computalot.states import TERMINAL_JOB
from computalot.store import jobs as store
from serve_app.deps import Caller, Db
from serve_app.stream_feed import feed_of
from serve_app.stream_subscriber import sse, unnumbered
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1", tags=["streams"], route_class=StrictJSONRoute)

MAX_WATCH = 100
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


#: Event ids are 64-bit; a larger Last-Event-ID was never sent by this server.
MAX_EVENT_ID = 2**62


def resume_after(header: str | None) -> int:
    """The ``Last-Event-ID`` a stream resumes after (0 without one); 422 naming it otherwise
    (job streams and the project stream alike)."""
    if not header:
        return 0
    try:
        value = int(header)
    except ValueError:
        raise field_error(["Last-Event-ID"], "must be an event id (integer)") from None
    if value > MAX_EVENT_ID:
        raise field_error(["Last-Event-ID"], "is not an event id this server sent")
    return max(0, value)


def _respond(
    request: Request,
    caller: Principal,
    job_ids: list[str],
    after: int,
    snapshot: list[dict[str, Any]],
) -> StreamingResponse:
    opening = "".join(unnumbered("job", job) for job in snapshot)
    body = sse(feed_of(request.app), caller, job_ids, after, opening)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


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
    jobs = await store.get_jobs(db, caller.account_id, job_ids)
    after = resume_after(last_event_id)
    snapshot = [views.job_out(j) for j in jobs] if after == 0 else []
    return _respond(request, caller, job_ids, after, snapshot)


@router.get("/jobs/{job_id}/stream")
async def stream_job(
    job_id: str,
    request: Request,
    caller: Caller,
    db: Db,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    job = await store.get_job(db, caller.account_id, job_id)
    after = resume_after(last_event_id)
    snapshot = [views.job_out(job)] if after == 0 and job.status not in TERMINAL_JOB else []
    return _respond(request, caller, [job.id], after, snapshot)
