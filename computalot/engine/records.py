"""The dispatcher's store operations: claim, record, cancel, release, reconcile.

Every status change is a compare-and-set (``WHERE status = …``); job counters move with SQL
increments in the same transaction as the task rows they count.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.auth.tokens import new_id
from computalot.engine.finalize import fail_job, finalize_job
from computalot.engine.outcomes import Verdict, should_retry
from computalot.engine.packages import PackageCache, revision_runtime_env
from computalot.schemas.jobs import TERMINAL_JOB
from computalot.settings import Settings
from computalot.store.jobs import job_out, task_payload_for
from computalot.store.models import Artifact, Job, Project, Revision, Task
from computalot.timeutil import iso, utcnow

Events = list[tuple[str, str, str, Any]]
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


async def _bump(db: AsyncSession, deltas: dict[str, dict[str, int]]) -> None:
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
        await db.refresh(job)
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
    await _bump(db, deltas)
    await load_revisions(db, launches)
    return launches, events


_REVISIONS: dict[str, dict[str, Any]] = {}


def _revision_info(revision: Revision) -> dict[str, Any]:
    info = _REVISIONS.get(revision.id)
    if info is None:
        runtime = (revision.manifest or {}).get("runtime") or {}
        req_path = Path(revision.path) / str(runtime.get("requirements") or "requirements.txt")
        requirements = None
        if req_path.is_file():
            lines = [ln.strip() for ln in req_path.read_text(errors="replace").splitlines()]
            requirements = [ln for ln in lines if ln and not ln.startswith("#")] or None
        info = {
            "requirements": requirements,
            "env": dict(runtime.get("env") or {}),
            "workdir": str(runtime.get("workdir") or "."),
        }
        _REVISIONS[revision.id] = info
    return info


def launch_spec(
    job: Job, task: Task, attempt: int, packages: PackageCache, settings: Settings, namespace: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``run_task`` argument and its Ray options for one attempt."""
    revision = _REVISION_ROWS[job.revision_id or ""]
    info = _revision_info(revision)
    uri = packages.ensure(revision.content_hash, revision.path)
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
        "env": info["env"],
        "workdir": info["workdir"],
        "namespace": namespace,
        "api_url": settings.resolved_public_url,
    }
    options = dict(job.resources)
    options["runtime_env"] = revision_runtime_env(
        uri, requirements=info["requirements"], env_vars={}
    )
    options["name"] = f"computalot-task:{task.id}"
    return spec, options


_REVISION_ROWS: dict[str, Revision] = {}


async def load_revisions(db: AsyncSession, launches: list[tuple[Job, Task, int]]) -> None:
    for job, _task, _attempt in launches:
        rid = job.revision_id
        if rid and rid not in _REVISION_ROWS:
            revision = await db.get(Revision, rid)
            if revision is not None:
                _REVISION_ROWS[rid] = revision


# ---- recording outcomes ---------------------------------------------------------------------
def _store_artifacts(
    db: AsyncSession, task: Task, outcome: dict[str, Any], data_dir: Path
) -> list[str]:
    ids: list[str] = []
    root = data_dir.resolve() / "artifacts" / "tasks" / task.id / f"attempt-{task.attempt}"
    for item in outcome.get("artifacts") or []:
        rel = Path(item["path"])
        if rel.is_absolute() or ".." in rel.parts:
            continue
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(item["data"])
        art = Artifact(
            id=new_id("art"),
            account_id=task.account_id,
            job_id=task.job_id,
            task_id=task.id,
            filename=rel.as_posix(),
            size=len(item["data"]),
            sha256=hashlib.sha256(item["data"]).hexdigest(),
            content_type=mimetypes.guess_type(rel.name)[0] or "application/octet-stream",
            state="available",
            storage_key=str(dest.relative_to(data_dir.resolve())),
            created_at=utcnow(),
        )
        db.add(art)
        ids.append(art.id)
    return ids


async def apply_verdicts(
    db: AsyncSession,
    judged: list[tuple[Job, Task, int, Verdict, dict[str, Any]]],
    *,
    data_dir: Path,
    lost_budget: int,
) -> Events:
    now = utcnow()
    events: Events = []
    deltas: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    touched: set[str] = set()
    warmed: set[tuple[str, str, str]] = set()
    for job, task, attempt, verdict, outcome in judged:
        if task.status != "running" or task.attempt != attempt:
            continue  # stale: this attempt was already settled (reconciled or cancelled)
        lost_before = task.lost_attempts
        if verdict.infrastructure:
            task.lost_attempts += 1
        retry = should_retry(
            verdict,
            attempt=attempt,
            max_retries=job.max_retries,
            lost=task.lost_attempts if verdict.infrastructure else lost_before,
            lost_budget=lost_budget,
        )
        task.finished_at = now
        task.duration_s = outcome.get("duration_s")
        task.exit_code = outcome.get("exit_code")
        if outcome.get("stdout") or outcome.get("stderr") or task.output_attempt is None:
            task.stdout = outcome.get("stdout") or ""
            task.stderr = outcome.get("stderr") or ""
            task.output_tail = outcome.get("output_tail") or ""
            task.output_attempt = attempt
        if outcome.get("last_progress") is not None:
            task.latest_progress = outcome["last_progress"]
        task.error = verdict.error()
        task.artifacts = (task.artifacts or []) + _store_artifacts(db, task, outcome, data_dir)
        deltas[job.id]["running"] -= 1
        if retry:
            task.status = "queued"
            deltas[job.id]["queued"] += 1
            events.append(
                (
                    task.job_id,
                    task.account_id,
                    "retry",
                    {
                        "task_id": task.id,
                        "index": task.index,
                        "attempt": attempt,
                        "error": task.error,
                    },
                )
            )
            events.append(task_event(task))
            continue
        task.status = verdict.status
        deltas[job.id][verdict.status] += 1
        if outcome.get("node_id") and job.project_id and job.revision_id:
            warmed.add((job.project_id, job.revision_id, str(outcome["node_id"])))
        if verdict.status == "completed":
            task.result = verdict.result
            task.result_quality = verdict.quality
            task.result_warnings = verdict.warnings
        events.append(task_event(task, exit_code=task.exit_code, error=task.error))
        if verdict.status == "completed":
            events.append(
                (
                    task.job_id,
                    task.account_id,
                    "result",
                    {
                        "task_id": task.id,
                        "index": task.index,
                        "result_quality": task.result_quality,
                    },
                )
            )
        touched.add(job.id)
    await db.flush()
    await _bump(db, deltas)
    await _mark_warm(db, warmed)
    events += await finish_if_done(db, touched)
    return events


async def _mark_warm(db: AsyncSession, warmed: set[tuple[str, str, str]]) -> None:
    """Remember which nodes have run a revision: Ray cached its runtime_env there."""
    for project_id, revision_id, node_id in warmed:
        project = await db.get(Project, project_id)
        if project is None or project.active_revision_id != revision_id:
            continue
        state = dict(project.warm_state or {})
        nodes = dict(state.get(revision_id) or {})
        if node_id in nodes:
            continue
        nodes[node_id] = iso(utcnow())
        project.warm_state = {revision_id: nodes}


# ---- cancels, dependencies, reconcile ---------------------------------------------------------
async def cancel_queued(db: AsyncSession) -> tuple[list[str], Events]:
    """Apply pending cancels to queued tasks; return the jobs whose running tasks must stop."""
    query = select(Job).where(Job.cancel_requested.is_(True), Job.status.not_in(TERMINAL_JOB))
    jobs = list((await db.execute(query)).scalars())
    events: Events = []
    now = utcnow()
    for job in jobs:
        tasks = list(
            (
                await db.execute(select(Task).where(Task.job_id == job.id, Task.status == "queued"))
            ).scalars()
        )
        for task in tasks:
            task.status = "cancelled"
            task.finished_at = now
            task.error = {
                "code": "cancelled",
                "message": "cancelled by request",
                "recommended_action": "",
            }
            events.append(task_event(task))
        if tasks:
            await db.flush()
            await _bump(db, {job.id: {"queued": -len(tasks), "cancelled": len(tasks)}})
    events += await finish_if_done(db, {j.id for j in jobs})
    return [j.id for j in jobs], events


async def release_dependencies(db: AsyncSession) -> Events:
    query = select(Job).where(Job.blocked.is_(True), Job.status.not_in(TERMINAL_JOB))
    events: Events = []
    for job in (await db.execute(query)).scalars():
        deps = dict(
            (await db.execute(select(Job.id, Job.status).where(Job.id.in_(job.depends_on))))
            .tuples()
            .all()
        )
        bad = [d for d in job.depends_on if deps.get(d) in TERMINAL_JOB and deps[d] != "completed"]
        if bad or len(deps) < len(job.depends_on):
            missing = bad[0] if bad else next(d for d in job.depends_on if d not in deps)
            status = deps.get(missing, "deleted")
            if await fail_job(
                db,
                job,
                "dependency_failed",
                f"dependency {missing} ended {status}",
                "fix and rerun the dependency, then resubmit this job",
            ):
                await db.refresh(job)
                snapshot = job_out(job)
                events += [
                    (job.id, job.account_id, "job", snapshot),
                    (job.id, job.account_id, "end", snapshot),
                ]
        elif all(deps.get(d) == "completed" for d in job.depends_on):
            job.blocked = False
            events.append(
                (
                    job.id,
                    job.account_id,
                    "job",
                    {"id": job.id, "status": job.status, "blocked": False},
                )
            )
    await db.flush()
    return events


async def reconcile(db: AsyncSession, epoch: str, *, lost_budget: int) -> Events:
    """Settle what a previous dispatcher left behind; no completed task runs again."""
    events: Events = []
    stale = list(
        (
            await db.execute(select(Task).where(Task.status == "running", Task.run_epoch != epoch))
        ).scalars()
    )
    now = utcnow()
    touched: set[str] = set()
    for task in stale:
        task.lost_attempts += 1
        touched.add(task.job_id)
        if task.lost_attempts <= lost_budget:
            task.status = "queued"
            events.append(
                (
                    task.job_id,
                    task.account_id,
                    "retry",
                    {
                        "task_id": task.id,
                        "index": task.index,
                        "attempt": task.attempt,
                        "error": {
                            "code": "worker_lost",
                            "message": "dispatcher restarted during the attempt",
                        },
                    },
                )
            )
        else:
            task.status = "failed"
            task.finished_at = now
            task.error = {
                "code": "worker_lost",
                "message": "the attempt was lost with its dispatcher too many times",
                "recommended_action": "resubmit the job",
            }
        events.append(task_event(task))
    await db.flush()
    open_jobs = list(
        (await db.execute(select(Job).where(Job.status.not_in(TERMINAL_JOB)))).scalars()
    )
    for job in open_jobs:
        counts = dict(
            (
                await db.execute(
                    select(Task.status, func.count())
                    .where(Task.job_id == job.id)
                    .group_by(Task.status)
                )
            )
            .tuples()
            .all()
        )
        for status, column in COUNTER.items():
            setattr(job, column, int(counts.get(status, 0)))
        touched.add(job.id)
    await db.flush()
    events += await finish_if_done(db, touched)
    return events
