"""The dispatcher's store operations: claim, record, cancel, release, reconcile.

Every status change is a compare-and-set (``WHERE status = …``); job counters move with SQL
increments in the same transaction as the task rows they count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.finalize import finalize_job
from computalot.engine.packages import PackageCache, revision_runtime_env
from computalot.schemas.jobs import TERMINAL_JOB
from computalot.settings import Settings
from computalot.store.jobs import job_out, task_payload_for
from computalot.store.models import Job, Revision, Task
from computalot.timeutil import utcnow

Events = list[tuple[str, str, str, Any]]
#: What changes while a job runs; refreshing only these avoids re-reading its payload.
PROGRESS_COLUMNS = [
    "status",
    "n_total",
    "n_queued",
    "n_running",
    "n_completed",
    "n_failed",
    "n_cancelled",
    "cancel_requested",
    "error",
]
COUNTER = {
    "queued": "n_queued",
    "running": "n_running",
    "completed": "n_completed",
    "failed": "n_failed",
    "cancelled": "n_cancelled",
}


def task_event(task: Task, **extra: Any) -> tuple[str, str, str, Any]:
    data = {"task_id": task.id, "index": task.index, "status": task.status, "attempt": task.attempt}
    data.update(extra)
    return (task.job_id, task.account_id, "task", data)


def retry_event(task: Task, attempt: int, error: Any) -> tuple[str, str, str, Any]:
    """SPEC §5.6: a failed attempt with retries left goes back to queued (event ``retry``)."""
    data = {"task_id": task.id, "index": task.index, "attempt": attempt, "error": error}
    return (task.job_id, task.account_id, "retry", data)


async def bump_counters(db: AsyncSession, deltas: dict[str, dict[str, int]]) -> None:
    for job_id, delta in deltas.items():
        values = {COUNTER[k]: getattr(Job, COUNTER[k]) + v for k, v in delta.items() if v}
        if values:
            await db.execute(update(Job).where(Job.id == job_id).values(**values))


async def finish_if_done(db: AsyncSession, job_ids: set[str]) -> Events:
    events: Events = []
    for job_id in job_ids:
        job = await db.get(Job, job_id)
        if job is None:
            continue
        await db.refresh(job, attribute_names=PROGRESS_COLUMNS)
        if job.status in TERMINAL_JOB:
            continue
        if job.n_completed + job.n_failed + job.n_cancelled < job.n_total:
            continue
        done = await finalize_job(db, job)
        if done is not None:
            snapshot = job_out(done)
            events.append((done.id, done.account_id, "job", snapshot))
            events.append((done.id, done.account_id, "end", snapshot))
    return events


# ---- launching ------------------------------------------------------------------------------
async def runnable_jobs(db: AsyncSession) -> list[tuple[Any, ...]]:
    query = select(Job.id, Job.account_id, Job.priority, Job.created_at, Job.n_queued).where(
        Job.status.in_(("queued", "running")),
        Job.blocked.is_(False),
        Job.cancel_requested.is_(False),
        Job.n_queued > 0,
    )
    return [tuple(row) for row in (await db.execute(query)).tuples()]


async def claim_tasks(
    db: AsyncSession, grants: dict[str, int], epoch: str
) -> tuple[list[tuple[Job, Task, int]], Events]:
    """Mark up to ``grants[job]`` queued tasks of each job running; return what to launch."""
    now = utcnow()
    launches: list[tuple[Job, Task, int]] = []
    events: Events = []
    deltas: dict[str, dict[str, int]] = {}
    for job_id, count in grants.items():
        job = await db.get(Job, job_id)
        if job is None:
            continue
        query = (
            select(Task)
            .where(Task.job_id == job_id, Task.status == "queued")
            .order_by(Task.index)
            .limit(count)
        )
        tasks = list((await db.execute(query)).scalars())
        for task in tasks:
            task.status = "running"
            task.attempt += 1
            task.run_epoch = epoch
            task.started_at = now
            task.finished_at = None
            launches.append((job, task, task.attempt))
            events.append(task_event(task))
        if tasks:
            deltas[job_id] = {"queued": -len(tasks), "running": len(tasks)}
        if tasks and job.status == "queued":
            started = await db.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(status="running", started_at=job.started_at or now)
            )
            if started.rowcount:  # type: ignore[attr-defined]
                job.status = "running"
                job.started_at = job.started_at or now
                events.append((job.id, job.account_id, "job", {"id": job.id, "status": "running"}))
    await db.flush()
    await bump_counters(db, deltas)
    await load_revisions(db, launches)
    return launches, events


@dataclass(frozen=True)
class RevisionInfo:
    """What launching needs of a revision; revisions are immutable, so cached per process."""

    content_hash: str
    path: str
    requirements: list[str] | None
    env: dict[str, str]
    workdir: str


_REVISIONS: dict[str, RevisionInfo] = {}


def _revision_info(revision: Revision) -> RevisionInfo:
    runtime = (revision.manifest or {}).get("runtime") or {}
    req_path = Path(revision.path) / str(runtime.get("requirements") or "requirements.txt")
    requirements = None
    if req_path.is_file():
        lines = [ln.strip() for ln in req_path.read_text(errors="replace").splitlines()]
        requirements = [ln for ln in lines if ln and not ln.startswith("#")] or None
    return RevisionInfo(
        content_hash=revision.content_hash,
        path=revision.path,
        requirements=requirements,
        env=dict(runtime.get("env") or {}),
        workdir=str(runtime.get("workdir") or "."),
    )


def launch_spec(
    job: Job, task: Task, attempt: int, packages: PackageCache, settings: Settings, namespace: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``run_task`` argument and its Ray options for one attempt."""
    info = _REVISIONS[job.revision_id or ""]
    uri = packages.ensure(info.content_hash, info.path)
    minimums = job.spec.get("minimums") or {}
    spec = {
        "job_id": job.id,
        "account_id": job.account_id,
        "task_id": task.id,
        "index": task.index,
        "attempt": attempt,
        "payload": task_payload_for(job, task),
        "runner_command": job.spec["runner_command"],
        "timeout_s": job.timeout_s,
        "kill_grace_s": settings.kill_grace_s,
        "memory_mb": minimums.get("memory_mb"),
        "env": info.env,
        "workdir": info.workdir,
        "namespace": namespace,
        "api_url": settings.resolved_public_url,
    }
    options = dict(job.resources)
    options["runtime_env"] = revision_runtime_env(uri, requirements=info.requirements, env_vars={})
    # Per job, not per task: each distinct .options() re-validates the runtime_env (costly).
    options["name"] = f"computalot-task:{job.id}"
    return spec, options


async def load_revisions(db: AsyncSession, launches: list[tuple[Job, Task, int]]) -> None:
    for job, _task, _attempt in launches:
        rid = job.revision_id
        if rid and rid not in _REVISIONS:
            revision = await db.get(Revision, rid)
            if revision is not None:
                _REVISIONS[rid] = _revision_info(revision)
