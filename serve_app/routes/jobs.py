"""Jobs: submit, list, read, tasks, output, events, cancel, results, presets (docs/llms-full.md,
"Jobs")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from computalot import views
from computalot.billing.prices import price_table
from computalot.billing.x402 import PAYMENT_RESPONSE_HEADER
from computalot.engine import cancelling
from computalot.errors import ComputalotError, NotReady, ValidationFailed
from computalot.jobs.quotas import Quotas
from computalot.jobs.resources import presets_out
from computalot.jobs.submit import Limits, submit_job
from computalot.maintenance.loop import maintenance_of
from computalot.schemas.jobs import JobSubmit
from computalot.states import TERMINAL_JOB
from computalot.store import hot_reads
from computalot.store import jobs as store
from computalot.store.events import write_events
from serve_app.answers import job_answer, jobs_answer, results_answer
from serve_app.deps import Caller, Db, Writer, get_store
from serve_app.errors import validation_details
from serve_app.responses import EncodedJSONResponse, FastJSONResponse
from serve_app.routes.quotes import PaidFirst
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1", tags=["jobs"], route_class=StrictJSONRoute)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _engine(request: Request) -> Any:
    engine = request.app.state.engine
    if engine is None:
        raise NotReady(
            "the job engine is not running", recommended_action="retry when GET /ready is 200"
        )
    return engine


async def _submit(
    request: Request, db: Any, caller: Any, body: JobSubmit, key: str | None
) -> tuple[dict[str, Any], bool]:
    """Validate and write the job; a big one answers ``planning`` and is written after the
    answer by this replica's planner (``computalot.jobs.planning``)."""
    engine = _engine(request)
    settings = request.app.state.settings
    planner = maintenance_of(request.app.state).planner
    limits = Limits(
        cluster_nodes=await engine.nodes(),
        max_elements=settings.max_fanout_elements,
        quotas=Quotas(settings.max_queued_tasks_per_account, settings.max_open_jobs_per_account),
        inline_tasks=settings.planning_inline_tasks,
        planner_id=planner.id,
    )
    submitted = await submit_job(
        db, caller.account_id, body, idempotency_key=key, limits=limits, settings=settings
    )
    await db.commit()
    if submitted.planning is not None:
        planner.start(submitted.planning)
    elif submitted.ended:  # answered from the result cache: only its streams need waking
        engine.announce(submitted.job.id)
    elif submitted.created:
        engine.kick(blocked=submitted.job.blocked)
    return views.job_out(submitted.job), submitted.created


@router.post("/jobs", status_code=201)
async def create_job(
    body: JobSubmit,
    request: Request,
    caller: Writer,
    db: Db,
    paid: PaidFirst,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    job, created = await _submit(request, db, caller, body, idempotency_key)
    answer = JSONResponse(job, status_code=201 if created else 200)
    if paid is not None:  # a stock x402 client's paid resend of a 402
        answer.headers[PAYMENT_RESPONSE_HEADER] = paid.settlement
    return answer


class BatchSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[dict[str, Any]] = Field(min_length=1, max_length=200)


@router.post("/jobs/batch", status_code=201)
async def create_jobs_batch(
    body: BatchSubmit, request: Request, caller: Writer, db: Db
) -> dict[str, Any]:
    """Each job is validated and created on its own; the answer keeps the input order."""
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(body.jobs):
        try:
            try:
                parsed = JobSubmit.model_validate(raw)
            except ValidationError as exc:
                message, details, _ = validation_details(list(exc.errors()))
                raise ValidationFailed(f"jobs[{i}].{message}", details=details) from None
            job, _ = await _submit(request, db, caller, parsed, None)
            out.append(job)
        except ComputalotError as exc:
            await db.rollback()
            out.append(exc.to_dict())
    return {"jobs": out}


@router.get("/jobs")
async def list_jobs(
    caller: Caller,
    request: Request,
    status: str | None = Query(default=None, max_length=200),
    project: str | None = Query(default=None, max_length=63),
    tag: str | None = Query(default=None, max_length=64),
    type: str | None = Query(default=None, max_length=32),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None),
) -> EncodedJSONResponse:
    found, next_cursor = await hot_reads.run(
        get_store(request).engine,
        hot_reads.list_jobs_raw,
        caller.account_id,
        status=status,
        project=project,
        tag=tag,
        type=type,
        limit=limit,
        cursor=cursor,
    )
    return EncodedJSONResponse(jobs_answer(request.app.state.answers, found, next_cursor))


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, caller: Caller, request: Request) -> EncodedJSONResponse:
    engine = get_store(request).engine
    found = await hot_reads.run(engine, hot_reads.job_raw, caller.account_id, job_id)
    return EncodedJSONResponse(job_answer(request.app.state.answers, found))


@router.get("/jobs/{job_id}/tasks")
async def get_tasks(
    job_id: str,
    caller: Caller,
    request: Request,
    status: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=100, ge=1, le=store.MAX_PAGE),
    cursor: str | None = Query(default=None),
) -> FastJSONResponse:
    job, tasks, next_cursor = await hot_reads.run(
        get_store(request).engine,
        hot_reads.job_and_tasks,
        caller.account_id,
        job_id,
        limit=limit,
        cursor=cursor,
        status=status,
    )
    return FastJSONResponse(
        {
            "job_id": job.id,
            "tasks": [views.task_out(job, t) for t in tasks],  # type: ignore[arg-type]
            "next_cursor": next_cursor,
        }
    )


@router.get("/jobs/{job_id}/output")
async def get_output(
    job_id: str,
    caller: Caller,
    db: Db,
    limit: int = Query(default=100, ge=1, le=store.MAX_PAGE),
    cursor: str | None = Query(default=None),
) -> FastJSONResponse:
    job = await store.get_job(db, caller.account_id, job_id)
    tasks, next_cursor = await store.list_tasks(db, job, limit=limit, cursor=cursor)
    out = [views.output_out(t) for t in tasks]
    return FastJSONResponse({"job_id": job.id, "tasks": out, "next_cursor": next_cursor})


@router.get("/jobs/{job_id}/events")
async def get_events(
    job_id: str,
    caller: Caller,
    db: Db,
    limit: int = Query(default=200, ge=1, le=store.MAX_PAGE),
    after: int = Query(default=0, ge=0, le=2**62),
) -> FastJSONResponse:
    job = await store.get_job(db, caller.account_id, job_id)
    events = await store.list_events(db, caller.account_id, [job.id], after=after, limit=limit)
    return FastJSONResponse(
        {
            "job_id": job.id,
            "events": [views.event_out(e) for e in events],
            "next_after": events[-1].id if events else after,
        }
    )


@router.put("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request, caller: Writer, db: Db) -> dict[str, Any]:
    """Answers at once with the job ``cancelled`` (its queued tasks with it); the engine stops
    its running attempts. Cancelling a finished job returns it unchanged (not an error)."""
    job = await store.get_job(db, caller.account_id, job_id)
    if job.status not in TERMINAL_JOB:
        events = await cancelling.cancel_job(db, job)
        if events is not None:
            await write_events(db, events)
            await db.commit()
            _engine(request).cancel(job.id)
        await db.refresh(job)
    return views.job_out(job)


@router.get("/results/{job_id}")
async def get_results(
    job_id: str,
    request: Request,
    caller: Caller,
    limit: int = Query(default=1000, ge=1, le=store.MAX_PAGE),
    cursor: str | None = Query(default=None),
) -> EncodedJSONResponse:
    """A page of at most ``limit`` elements and about ``results_page_bytes`` of results (at
    least one element); stored results are passed through as their JSON text. Every read of
    the page runs in one hop; a settled job's pages are answered from this replica's cache of
    encoded answers while its row is unchanged (``serve_app.answers``)."""
    body = await hot_reads.run(
        get_store(request).engine,
        results_answer,
        caller.account_id,
        job_id,
        limit=limit,
        cursor=cursor,
        page_bytes=request.app.state.settings.results_page_bytes,
        cache=request.app.state.answers,
    )
    return EncodedJSONResponse(body)


@router.get("/presets")
async def presets(request: Request, _caller: Caller) -> dict[str, Any]:
    return presets_out(price_table(request.app.state.settings).presets_usd())
