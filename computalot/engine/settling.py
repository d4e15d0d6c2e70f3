"""Recording finished attempts: verdicts, retries, result caps, artifacts, warm nodes.

Nothing here touches the filesystem: an attempt's artifact files are written off the
dispatcher's event loop as soon as it finishes (:func:`write_artifacts`, on a thread), and
recording only adds their rows. Results are stored as the JSON text their worker wrote
(``jsoncodec.RawJSON``), each with its size, and each job's total moves in the same
transaction, so a result that would take a job past ``max_job_result_bytes`` fails its task
(``result_too_large``) instead of being stored.
"""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.outcomes import Verdict, result_too_large, should_retry
from computalot.engine.records import (
    JOBS,
    TASKS,
    Events,
    JobInfo,
    TaskRow,
    bump_counters,
    chunked,
    finish_if_done,
    retry_event,
    task_event,
)
from computalot.ids import new_id
from computalot.private_files import make_private_dirs, write_private
from computalot.store.bigtext import blob_writer
from computalot.store.jsoncodec import RawJSON
from computalot.store.models import Artifact, Project
from computalot.timeutil import iso, utcnow


def write_artifacts(
    data_dir: Path, task_id: str, attempt: int, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Write an attempt's artifact files under ``data_dir`` (blocking: run it on a thread);
    returns what their rows need (``path``, ``size``, ``sha256``, ``storage_key``), the data
    itself dropped. A path that would leave the attempt's directory is skipped."""
    root = data_dir.resolve() / "artifacts" / "tasks" / task_id / f"attempt-{attempt}"
    written: list[dict[str, Any]] = []
    for item in items:
        rel = Path(item["path"])
        if rel.is_absolute() or ".." in rel.parts:
            continue
        dest = root / rel
        make_private_dirs(dest.parent)
        data = item["data"]
        write_private(dest, data)
        written.append(
            {
                "path": rel.as_posix(),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "storage_key": str(dest.relative_to(data_dir.resolve())),
            }
        )
    return written


def _artifact_rows(db: AsyncSession, task: TaskRow, written: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for item in written:
        art = Artifact(
            id=new_id("art"),
            account_id=task.account_id,
            job_id=task.job_id,
            task_id=task.id,
            filename=item["path"],
            size=item["size"],
            sha256=item["sha256"],
            content_type=mimetypes.guess_type(item["path"])[0] or "application/octet-stream",
            state="available",
            storage_key=item["storage_key"],
            created_at=utcnow(),
        )
        db.add(art)
        ids.append(art.id)
    return ids


#: One attempt's task row, if that attempt is still the running one (SET from the parameters).
SETTLE_ATTEMPT = update(TASKS).where(
    TASKS.c.id == bindparam("b_id"),
    TASKS.c.attempt == bindparam("b_attempt"),
    TASKS.c.status == "running",
)


async def _write_task_rows(db: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Executemany UPDATEs, one per distinct set of columns (usually one for the batch)."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        shapes[tuple(sorted(row))].append(row)
    conn = await db.connection()
    for params in shapes.values():
        await conn.execute(SETTLE_ATTEMPT, params)


#: ``jobs.result_bytes`` of the jobs in ``ids``; then its new value, one job per parameter set.
JOB_RESULT_BYTES = select(JOBS.c.id, JOBS.c.result_bytes).where(
    JOBS.c.id.in_(bindparam("ids", expanding=True))
)
SET_JOB_RESULT_BYTES = (
    update(JOBS).where(JOBS.c.id == bindparam("b_job")).values(result_bytes=bindparam("b_bytes"))
)


class ResultBudget:
    """Each job's stored result bytes as this transaction moves them, against the caps."""

    def __init__(self, per_task: int | None, per_job: int | None) -> None:
        self.per_task = per_task
        self.per_job = per_job
        self.totals: dict[str, int] = {}
        self.changed: set[str] = set()

    async def load(self, db: AsyncSession, job_ids: set[str]) -> None:
        """Read the totals of ``job_ids`` (the dispatcher is their only writer)."""
        conn = await db.connection()
        for chunk in chunked(sorted(job_ids)):
            for job_id, total in (await conn.execute(JOB_RESULT_BYTES, {"ids": chunk})).tuples():
                self.totals[job_id] = int(total or 0)

    def admit(self, job_id: str, verdict: Verdict) -> Verdict:
        """``verdict``, or ``result_too_large`` if storing its result would break a cap."""
        size = verdict.result_bytes
        if self.per_task is not None and size > self.per_task:
            return result_too_large(
                f"the stored result is {size} bytes; the limit is {self.per_task}"
            )
        total = self.totals.get(job_id, 0)
        if self.per_job is not None and total + size > self.per_job:
            return result_too_large(
                f"the job's results would take {total + size} bytes; the limit for all of a "
                f"job's results is {self.per_job} ({total} already stored)"
            )
        self.totals[job_id] = total + size
        self.changed.add(job_id)
        return verdict

    async def save(self, db: AsyncSession) -> None:
        params = [{"b_job": j, "b_bytes": self.totals[j]} for j in sorted(self.changed)]
        if params:
            await (await db.connection()).execute(SET_JOB_RESULT_BYTES, params)


async def apply_verdicts(
    db: AsyncSession,
    judged: list[tuple[JobInfo, TaskRow, int, Verdict, dict[str, Any]]],
    *,
    lost_budget: int,
    max_result_bytes: int | None = None,
    max_job_result_bytes: int | None = None,
) -> Events:
    """Settle each judged attempt (stale ones are skipped); the events to write with them.

    ``outcome["artifacts"]`` holds the artifacts :func:`write_artifacts` already wrote."""
    now = utcnow()
    events: Events = []
    rows: list[dict[str, Any]] = []
    deltas: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    touched: set[str] = set()
    warmed: set[tuple[str, str, str]] = set()
    budget = ResultBudget(max_result_bytes, max_job_result_bytes)
    await budget.load(db, {job.id for job, _t, _a, v, _o in judged if v.status == "completed"})
    big: list[tuple[str, Any]] = []  # (task id, a big result's bytes) for ``write_blobs``
    has_big = any(v.result_data is not None for _j, _t, _a, v, _o in judged)
    write_blobs = await blob_writer(db) if has_big else None
    for job, task, attempt, verdict, outcome in judged:
        if task.status != "running" or task.attempt != attempt:
            continue  # stale: this attempt was already settled (reconciled or cancelled)
        if verdict.status == "completed":
            verdict = budget.admit(job.id, verdict)
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
        error = verdict.error()
        row: dict[str, Any] = {
            "b_id": task.id,
            "b_attempt": attempt,
            "finished_at": now,
            "duration_s": outcome.get("duration_s"),
            "exit_code": outcome.get("exit_code"),
            "error": error,
            "lost_attempts": task.lost_attempts,
        }
        if outcome.get("stdout") or outcome.get("stderr") or task.output_attempt is None:
            row["stdout"] = outcome.get("stdout") or ""
            row["stderr"] = outcome.get("stderr") or ""
            row["output_tail"] = outcome.get("output_tail") or ""
            row["output_attempt"] = attempt
        if outcome.get("last_progress") is not None:
            row["latest_progress"] = outcome["last_progress"]
        if outcome.get("artifacts"):
            row["artifacts"] = (task.artifacts or []) + _artifact_rows(
                db, task, outcome["artifacts"]
            )
        rows.append(row)
        deltas[job.id]["running"] -= 1
        if retry:
            task.status = row["status"] = "queued"
            deltas[job.id]["queued"] += 1
            events.append(retry_event(task, attempt, error))
            events.append(task_event(task))
            continue
        task.status = row["status"] = verdict.status
        deltas[job.id][verdict.status] += 1
        if outcome.get("node_id") and job.project_id and job.revision_id:
            warmed.add((job.project_id, job.revision_id, str(outcome["node_id"])))
        if verdict.status == "completed":
            row["result"] = verdict.result
            if verdict.result_data is not None:
                if write_blobs is not None:  # written below, straight from the buffer
                    big.append((task.id, verdict.result_data))
                else:
                    row["result"] = RawJSON(codecs.decode(verdict.result_data, "utf-8"))
            row["result_bytes"] = verdict.result_bytes
            row["result_quality"] = verdict.quality
            row["result_warnings"] = verdict.warnings
        events.append(task_event(task, exit_code=row["exit_code"], error=error))
        if verdict.status == "completed":
            events.append(
                (
                    task.job_id,
                    task.account_id,
                    "result",
                    {"task_id": task.id, "index": task.index, "result_quality": verdict.quality},
                )
            )
        touched.add(job.id)
    await _write_task_rows(db, rows)
    if big and write_blobs is not None:
        await write_blobs(big)
    await budget.save(db)
    progress = await bump_counters(db, deltas)
    await _mark_warm(db, warmed)
    events += await finish_if_done(db, touched, known=progress)
    return events


_WARM_SEEN: set[tuple[str, str, str]] = set()


async def _mark_warm(db: AsyncSession, warmed: set[tuple[str, str, str]]) -> None:
    """Remember which nodes have run a revision: Ray cached its runtime_env there."""
    for key in warmed - _WARM_SEEN:
        _WARM_SEEN.add(key)
        project_id, revision_id, node_id = key
        project = await db.get(Project, project_id)
        if project is None or project.active_revision_id != revision_id:
            continue
        state = dict(project.warm_state or {})
        nodes = dict(state.get(revision_id) or {})
        if node_id in nodes:
            continue
        nodes[node_id] = iso(utcnow())
        project.warm_state = {revision_id: nodes}
