"""The dispatcher's store operations: claim, record, cancel, release, reconcile.

Every status change is a compare-and-set (``WHERE status = …``); job counters move with SQL
increments in the same transaction as the task rows they count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.finalize import finalize_job
from computalot.engine.packages import PackageCache, revision_runtime_env
from computalot.schemas.states import TERMINAL_JOB
from computalot.settings import Settings
from computalot.store.jobs import job_out, task_payload_for
from computalot.store.models import Job, Revision, Task
from computalot.timeutil import utcnow

Events = list[tuple[str, str, str, Any]]
#: Core table objects: the hot path (claim, record, counters) skips the ORM unit of work.
TASKS: Table = Task.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]
COUNTER = {
    "queued": "n_queued",
    "running": "n_running",
    "completed": "n_completed",
    "failed": "n_failed",
    "cancelled": "n_cancelled",
}
IN_CHUNK = 500


def chunked(ids: list[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """``ids`` in slices small enough for one ``IN (…)`` list on every backend."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


@dataclass(frozen=True)
class JobInfo:
    """What the dispatcher needs of a job to launch and judge its tasks: fields that never
    change after submit, so they are read once per job, not once per cycle."""

    id: str
    account_id: str
    project_id: str | None
    revision_id: str | None
    spec: dict[str, Any]
    payload: dict[str, Any]
    timeout_s: int
    max_retries: int
    resources: dict[str, Any]


JOB_INFO_COLUMNS = (
    Job.id,
    Job.account_id,
    Job.project_id,
    Job.revision_id,
    Job.spec,
    Job.payload,
    Job.timeout_s,
    Job.max_retries,
    Job.resources,
)


class JobCache:
    """Immutable job fields by id; the dispatcher forgets a job when it ends."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.jobs: dict[str, JobInfo] = {}

    async def load(self, db: AsyncSession, job_ids: Any) -> dict[str, JobInfo]:
        wanted = list(dict.fromkeys(job_ids))
        missing = [j for j in wanted if j not in self.jobs]
        if missing and len(self.jobs) + len(missing) > self.limit:
            self.jobs.clear()
            missing = wanted
        for chunk in chunked(missing):
            query = select(*JOB_INFO_COLUMNS).where(Job.id.in_(chunk))
            for row in (await db.execute(query)).tuples():
                self.jobs[row[0]] = JobInfo(*row)
        return {j: self.jobs[j] for j in wanted if j in self.jobs}

    def forget(self, job_ids: Any) -> None:
        for job_id in job_ids:
            self.jobs.pop(job_id, None)


@dataclass
class TaskRow:
    """The columns of a task the dispatcher reads on its hot path (not the ORM object)."""

    id: str
    job_id: str
    account_id: str
    index: int
    status: str
    attempt: int
    batched: bool
    item: Any
    element_count: int
    lost_attempts: int = 0
    artifacts: list[Any] | None = None
    output_attempt: int | None = None


#: A finished attempt's task columns, in :class:`TaskRow` order; ``item`` (a batch's
#: elements, possibly thousands) is not needed to judge the attempt, so it is not read.
RECORD_COLUMNS = (
    Task.id,
    Task.job_id,
    Task.account_id,
    Task.index,
    Task.status,
    Task.attempt,
    Task.batched,
    null(),
    Task.element_count,
    Task.lost_attempts,
    Task.artifacts,
    Task.output_attempt,
)


async def load_task_rows(db: AsyncSession, task_ids: list[str]) -> dict[str, TaskRow]:
    """The finished attempts' tasks by id (what judging and settling them needs)."""
    out: dict[str, TaskRow] = {}
    for chunk in chunked(task_ids):
        query = select(*RECORD_COLUMNS).where(Task.id.in_(chunk))
        for row in (await db.execute(query)).tuples():
            out[row[0]] = TaskRow(*row)
    return out


def task_event(task: Any, **extra: Any) -> tuple[str, str, str, Any]:
    data = {"task_id": task.id, "index": task.index, "status": task.status, "attempt": task.attempt}
    data.update(extra)
    return (task.job_id, task.account_id, "task", data)


def retry_event(task: Any, attempt: int, error: Any) -> tuple[str, str, str, Any]:
    """SPEC §5.6: a failed attempt with retries left goes back to queued (event ``retry``)."""
    data = {"task_id": task.id, "index": task.index, "attempt": attempt, "error": error}
    return (task.job_id, task.account_id, "retry", data)


#: What ``finish_if_done`` needs of a job: (status, total, completed, failed, cancelled).
JobProgress = tuple[str, int, int, int, int]
PROGRESS = (JOBS.c.status, JOBS.c.n_total, JOBS.c.n_completed, JOBS.c.n_failed, JOBS.c.n_cancelled)


async def bump_counters(
    db: AsyncSession, deltas: dict[str, dict[str, int]]
) -> dict[str, JobProgress]:
    """One Core UPDATE per job (no ORM session synchronisation; see ``finish_if_done``).

    Returns each bumped job's progress as the UPDATE left it (``RETURNING``), so
    ``finish_if_done`` need not read it again.
    """
    conn = await db.connection()
    after: dict[str, JobProgress] = {}
    for job_id, delta in deltas.items():
        values = {COUNTER[k]: JOBS.c[COUNTER[k]] + v for k, v in delta.items() if v}
        if values:
            bump = update(JOBS).where(JOBS.c.id == job_id).values(**values).returning(*PROGRESS)
            row = (await conn.execute(bump)).first()
            if row is not None:
                after[job_id] = tuple(row)
    return after


def _is_done(progress: JobProgress) -> bool:
    status, total, completed, failed, cancelled = progress
    return status not in TERMINAL_JOB and completed + failed + cancelled >= total


async def finish_if_done(
    db: AsyncSession, job_ids: set[str], known: dict[str, JobProgress] | None = None
) -> Events:
    """Finalise the jobs among ``job_ids`` whose every task ended.

    ``known`` holds progress already read in this transaction (``bump_counters``' answer); the
    other jobs' counters are read with one Core select per chunk.
    """
    known = known or {}
    progress = {j: known[j] for j in job_ids if j in known}
    missing = [j for j in job_ids if j not in known]
    for chunk in chunked(missing):
        query = select(JOBS.c.id, *PROGRESS).where(JOBS.c.id.in_(chunk))
        for job_id, *row in (await db.execute(query)).tuples():
            progress[job_id] = tuple(row)
    events: Events = []
    for job_id in [j for j, p in progress.items() if _is_done(p)]:
        # The counters moved in Core: a Job already in this session must be re-read, not reused.
        job = await db.get(Job, job_id, populate_existing=True)
        if job is None:
            continue
        finished = await finalize_job(db, job)
        if finished is not None:
            snapshot = job_out(finished)
            events.append((finished.id, finished.account_id, "job", snapshot))
            events.append((finished.id, finished.account_id, "end", snapshot))
    return events


# ---- launching ------------------------------------------------------------------------------
async def runnable_jobs(db: AsyncSession) -> list[tuple[Any, ...]]:
    """``(id, account_id, priority, created_at, n_queued, status)`` of jobs with queued work."""
    query = select(
        Job.id, Job.account_id, Job.priority, Job.created_at, Job.n_queued, Job.status
    ).where(
        Job.status.in_(("queued", "running")),
        Job.blocked.is_(False),
        Job.cancel_requested.is_(False),
        Job.n_queued > 0,
    )
    return [tuple(row) for row in (await db.execute(query)).tuples()]


CLAIM_RETURNING = (
    TASKS.c.id,
    TASKS.c.job_id,
    TASKS.c.account_id,
    TASKS.c.index,
    TASKS.c.status,
    TASKS.c.attempt,
    TASKS.c.batched,
    TASKS.c.item,
    TASKS.c.element_count,
)


async def claim_tasks(
    db: AsyncSession,
    grants: dict[str, int],
    epoch: str,
    jobs: JobCache,
    statuses: dict[str, str],
) -> tuple[list[tuple[JobInfo, TaskRow, int]], Events]:
    """Mark up to ``grants[job]`` queued tasks of each job running; return what to launch.

    One ``UPDATE … WHERE id IN (next queued by index) RETURNING`` per job: the claim and the
    read of what to launch are a single statement (SQLite ≥ 3.35 and PostgreSQL).
    ``statuses`` holds each granted job's status as the runnable query saw it.
    """
    now = utcnow()
    launches: list[tuple[JobInfo, TaskRow, int]] = []
    events: Events = []
    infos = await jobs.load(db, grants)
    conn = await db.connection()
    for job_id, count in grants.items():
        job = infos.get(job_id)
        if job is None:
            continue
        pick = (
            select(TASKS.c.id)
            .where(TASKS.c.job_id == job_id, TASKS.c.status == "queued")
            .order_by(TASKS.c.index)
            .limit(count)
        )
        claim = (
            update(TASKS)
            .where(TASKS.c.id.in_(pick), TASKS.c.status == "queued")
            .values(
                status="running",
                attempt=TASKS.c.attempt + 1,
                run_epoch=epoch,
                started_at=now,
                finished_at=None,
            )
            .returning(*CLAIM_RETURNING)
        )
        tasks = sorted(
            (TaskRow(*row) for row in (await conn.execute(claim)).tuples()),
            key=lambda t: t.index,
        )
        for task in tasks:
            launches.append((job, task, task.attempt))
            events.append(task_event(task))
        if not tasks:
            continue
        # Counters and the job's start in one statement. The dispatcher is the only writer of
        # job status, so "queued" as the runnable query saw it in this transaction still holds.
        values: dict[str, Any] = {
            "n_queued": JOBS.c.n_queued - len(tasks),
            "n_running": JOBS.c.n_running + len(tasks),
        }
        starts = statuses.get(job_id) == "queued"
        if starts:
            values["status"] = "running"
            values["started_at"] = func.coalesce(JOBS.c.started_at, now)
        await conn.execute(update(JOBS).where(JOBS.c.id == job_id).values(**values))
        if starts:
            events.append((job.id, job.account_id, "job", {"id": job.id, "status": "running"}))
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
    job: JobInfo,
    task: TaskRow,
    attempt: int,
    packages: PackageCache,
    settings: Settings,
    namespace: str,
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


async def load_revisions(db: AsyncSession, launches: list[tuple[JobInfo, TaskRow, int]]) -> None:
    for job, _task, _attempt in launches:
        rid = job.revision_id
        if rid and rid not in _REVISIONS:
            revision = await db.get(Revision, rid)
            if revision is not None:
                _REVISIONS[rid] = _revision_info(revision)
