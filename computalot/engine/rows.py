"""The dispatcher's store operations: claim, record, cancel, release, reconcile.

Every status change is a compare-and-set (``WHERE status = …``); job counters move with SQL
increments in the same transaction as the task rows they count.

The statements of the hot path (claim, record, counters) are Core statements built once, with
bound parameters, and run on the session's connection: building a statement and going through
the ORM's execution path cost 0.2-0.5 ms of Python per statement, more than SQLite took to run
it (``bench/dispatch.py`` (b) runs several such cycles a second).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, func, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.finalize import finalize_job
from computalot.engine.outcomes import ACTIONS
from computalot.engine.packages import PackageCache, revision_runtime_env
from computalot.sandbox.policy import policy_for
from computalot.settings import Settings
from computalot.states import TERMINAL_JOB
from computalot.jobs.fanout import task_payload
from computalot.views import job_out
from computalot.store.jsoncodec import Unreadable, is_unusable
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


#: ``ids`` takes a list (an expanding ``IN``), at most IN_CHUNK of them.
JOB_INFO_QUERY = select(
    JOBS.c.id,
    JOBS.c.account_id,
    JOBS.c.project_id,
    JOBS.c.revision_id,
    JOBS.c.spec,
    JOBS.c.payload,
    JOBS.c.timeout_s,
    JOBS.c.max_retries,
    JOBS.c.resources,
).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))


class JobCache:
    """Immutable job fields by id; the dispatcher forgets a job when it ends.

    A job whose fields cannot be read back (``store.jsoncodec.Unreadable``) is never cached nor
    returned: it is listed in ``unreadable`` (job id -> field names) for the dispatcher to set
    aside (``engine.quarantine``) in the same cycle."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.jobs: dict[str, JobInfo] = {}
        self.unreadable: dict[str, list[str]] = {}

    async def load(self, db: AsyncSession, job_ids: Any) -> dict[str, JobInfo]:
        wanted = list(dict.fromkeys(job_ids))
        missing = [j for j in wanted if j not in self.jobs]
        if missing and len(self.jobs) + len(missing) > self.limit:
            self.jobs.clear()
            missing = wanted
        if missing:
            conn = await db.connection()
            for chunk in chunked(missing):
                for row in (await conn.execute(JOB_INFO_QUERY, {"ids": chunk})).tuples():
                    info = JobInfo(*row)
                    bad = [
                        name
                        for name in ("spec", "payload", "resources")
                        if is_unusable(getattr(info, name))
                    ]
                    if bad:
                        self.unreadable[info.id] = bad
                    else:
                        self.jobs[row[0]] = info
        return {j: self.jobs[j] for j in wanted if j in self.jobs}

    def take_unreadable(self) -> dict[str, list[str]]:
        found, self.unreadable = self.unreadable, {}
        return found

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


#: The columns every :class:`TaskRow` starts with, in its order (``item`` comes next).
TASK_ROW_HEAD = (
    TASKS.c.id,
    TASKS.c.job_id,
    TASKS.c.account_id,
    TASKS.c.index,
    TASKS.c.status,
    TASKS.c.attempt,
    TASKS.c.batched,
)
#: A finished attempt's task columns, in :class:`TaskRow` order; ``item`` (a batch's
#: elements, possibly thousands) is not needed to judge the attempt, so it is not read.
RECORD_QUERY = select(
    *TASK_ROW_HEAD,
    null(),
    TASKS.c.element_count,
    TASKS.c.lost_attempts,
    TASKS.c.artifacts,
    TASKS.c.output_attempt,
).where(TASKS.c.id.in_(bindparam("ids", expanding=True)))


async def load_task_rows(db: AsyncSession, task_ids: list[str]) -> dict[str, TaskRow]:
    """The finished attempts' tasks by id (what judging and settling them needs)."""
    out: dict[str, TaskRow] = {}
    conn = await db.connection()
    for chunk in chunked(task_ids):
        for row in (await conn.execute(RECORD_QUERY, {"ids": chunk})).tuples():
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
PROGRESS_QUERY = select(JOBS.c.id, *PROGRESS).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
_BUMPS: dict[tuple[str, ...], Any] = {}


def _bump_statement(columns: tuple[str, ...]) -> Any:
    """``UPDATE jobs SET col = col + :d_col … WHERE id = :b_job RETURNING progress``, built once
    per set of counter columns."""
    statement = _BUMPS.get(columns)
    if statement is None:
        statement = _BUMPS[columns] = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("b_job"))
            .values({col: JOBS.c[col] + bindparam(f"d_{col}") for col in columns})
            .returning(*PROGRESS)
        )
    return statement


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
        values = {COUNTER[k]: v for k, v in sorted(delta.items()) if v}
        if values:
            params: dict[str, Any] = {f"d_{col}": v for col, v in values.items()}
            params["b_job"] = job_id
            row = (await conn.execute(_bump_statement(tuple(values)), params)).first()
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
    if missing:
        conn = await db.connection()
        for chunk in chunked(missing):
            for job_id, *row in (await conn.execute(PROGRESS_QUERY, {"ids": chunk})).tuples():
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
RUNNABLE_QUERY = select(
    JOBS.c.id, JOBS.c.account_id, JOBS.c.priority, JOBS.c.created_at, JOBS.c.n_queued, JOBS.c.status
).where(
    JOBS.c.status.in_(("queued", "running")),
    JOBS.c.blocked.is_(False),
    JOBS.c.cancel_requested.is_(False),
    JOBS.c.n_queued > 0,
)


async def runnable_jobs(db: AsyncSession) -> list[tuple[Any, ...]]:
    """``(id, account_id, priority, created_at, n_queued, status)`` of jobs with queued work."""
    conn = await db.connection()
    return [tuple(row) for row in (await conn.execute(RUNNABLE_QUERY)).tuples()]


CLAIM_RETURNING = (*TASK_ROW_HEAD, TASKS.c.item, TASKS.c.element_count)
#: The next ``b_count`` queued tasks of job ``b_job`` (by index) become running attempts.
CLAIM = (
    update(TASKS)
    .where(
        TASKS.c.id.in_(
            select(TASKS.c.id)
            .where(TASKS.c.job_id == bindparam("b_job"), TASKS.c.status == "queued")
            .order_by(TASKS.c.index)
            .limit(bindparam("b_count"))
        ),
        TASKS.c.status == "queued",
    )
    .values(
        status="running",
        attempt=TASKS.c.attempt + 1,
        run_epoch=bindparam("b_epoch", type_=TASKS.c.run_epoch.type),
        started_at=bindparam("b_now", type_=TASKS.c.started_at.type),
        finished_at=None,
    )
    .returning(*CLAIM_RETURNING)
)
#: A claim's counters; START_JOB also starts a queued job.
MOVE_TO_RUNNING = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_job"))
    .values(
        n_queued=JOBS.c.n_queued - bindparam("b_n"),
        n_running=JOBS.c.n_running + bindparam("b_n"),
    )
)
START_JOB = MOVE_TO_RUNNING.values(
    status="running",
    started_at=func.coalesce(JOBS.c.started_at, bindparam("b_now", type_=JOBS.c.started_at.type)),
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
    failing: list[tuple[str, list[TaskRow]]] = []
    infos = await jobs.load(db, grants)
    conn = await db.connection()
    for job_id, count in grants.items():
        job = infos.get(job_id)
        if job is None:
            continue
        params = {"b_job": job_id, "b_count": count, "b_epoch": epoch, "b_now": now}
        tasks = sorted(
            (TaskRow(*row) for row in (await conn.execute(CLAIM, params)).tuples()),
            key=lambda t: t.index,
        )
        for task in tasks:
            launches.append((job, task, task.attempt))
            events.append(task_event(task))
        if not tasks:
            continue
        unreadable = [t for t in tasks if is_unusable(t.item)]
        if unreadable:
            launches = [item for item in launches if item[1] not in unreadable]
            failing.append((job_id, unreadable))
        # Counters and the job's start in one statement. The dispatcher is the only writer of
        # job status, so "queued" as the runnable query saw it in this transaction still holds.
        move = {"b_job": job_id, "b_n": len(tasks)}
        if statuses.get(job_id) == "queued":
            await conn.execute(START_JOB, {**move, "b_now": now})
            events.append((job.id, job.account_id, "job", {"id": job.id, "status": "running"}))
        else:
            await conn.execute(MOVE_TO_RUNNING, move)
    for job_id, unreadable in failing:
        events += await _fail_unreadable(db, job_id, unreadable, now)
    await load_revisions(db, launches)
    return launches, events


UNREADABLE_TASK = {
    "code": "unreadable_task",
    "message": "the task's stored element cannot be read back; it was not run",
    "recommended_action": ACTIONS["unreadable_task"],
}


class UnreadableTask(ValueError):
    """A claimed task whose payload cannot be built from its stored row: judged a failed
    attempt with code ``unreadable_task``, never retried as an infrastructure loss."""


def ending_tasks(status: str, *where: Any) -> Any:
    """``UPDATE tasks SET status, finished_at = :b_now, error = :b_error WHERE …``, built once."""
    return (
        update(TASKS)
        .where(*where)
        .values(
            status=status,
            finished_at=bindparam("b_now", type_=TASKS.c.finished_at.type),
            error=bindparam("b_error", type_=TASKS.c.error.type),
        )
    )


FAIL_CLAIMED = ending_tasks("failed", TASKS.c.id == bindparam("b_id"), TASKS.c.status == "running")


async def _fail_unreadable(db: AsyncSession, job_id: str, tasks: list[TaskRow], now: Any) -> Events:
    """Fail claimed tasks whose element is unreadable instead of launching them (a row written
    before the doors measured depth, or edited by hand); the job goes on without them."""
    conn = await db.connection()
    await conn.execute(
        FAIL_CLAIMED, [{"b_id": t.id, "b_now": now, "b_error": UNREADABLE_TASK} for t in tasks]
    )
    events: Events = []
    for task in tasks:
        task.status = "failed"
        events.append(task_event(task, error=UNREADABLE_TASK))
    progress = await bump_counters(db, {job_id: {"running": -len(tasks), "failed": len(tasks)}})
    return events + await finish_if_done(db, {job_id}, known=progress)


@dataclass(frozen=True)
class RevisionInfo:
    """What launching needs of a revision; revisions are immutable, so cached per process."""

    content_hash: str
    path: str
    size_bytes: int
    requirements: list[str] | None
    env: dict[str, str]
    workdir: str
    network: str  # the manifest's runtime.network: host | none


_REVISIONS: dict[str, RevisionInfo] = {}


def _read_requirements(path: Path) -> list[str] | None:
    """The revision's pip requirements, one per line (blocking: run on a thread)."""
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")] or None


async def _revision_info(revision: Revision) -> RevisionInfo:
    runtime = (revision.manifest or {}).get("runtime") or {}
    req_path = Path(revision.path) / str(runtime.get("requirements") or "requirements.txt")
    return RevisionInfo(
        content_hash=revision.content_hash,
        path=revision.path,
        size_bytes=revision.size_bytes,
        requirements=await asyncio.to_thread(_read_requirements, req_path),
        env=dict(runtime.get("env") or {}),
        workdir=str(runtime.get("workdir") or "."),
        network=str(runtime.get("network") or "host"),
    )


def launch_revisions(
    launches: list[tuple[JobInfo, TaskRow, int]],
) -> dict[str, tuple[str, int]]:
    """``{content_hash: (path, size)}`` of the revisions these launches run (``PackageCache``)."""
    out: dict[str, tuple[str, int]] = {}
    for job, _task, _attempt in launches:
        info = _REVISIONS.get(job.revision_id or "")
        if info is not None:
            out[info.content_hash] = (info.path, info.size_bytes)
    return out


def _payload(job: JobInfo, task: TaskRow) -> dict[str, Any]:
    payload = task_payload(job, task)
    if isinstance(payload, Unreadable):
        raise UnreadableTask(payload.reason)
    return payload


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
    uri = packages.uri(info.content_hash)
    minimums = job.spec.get("minimums") or {}
    spec = {
        "job_id": job.id,
        "account_id": job.account_id,
        "task_id": task.id,
        "index": task.index,
        "attempt": attempt,
        "payload": _payload(job, task),
        "runner_command": job.spec["runner_command"],
        "timeout_s": job.timeout_s,
        "kill_grace_s": settings.kill_grace_s,
        "memory_mb": minimums.get("memory_mb"),
        "env": info.env,
        "workdir": info.workdir,
        "namespace": namespace,
        "api_url": settings.resolved_public_url,
        # How run_task reads the result file (engine.result_file).
        "batched": task.batched,
        "element_count": task.element_count,
        "max_result_bytes": settings.max_result_bytes,
        "sandbox": policy_for(settings, minimums, info.network).to_spec(),
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
                _REVISIONS[rid] = await _revision_info(revision)
