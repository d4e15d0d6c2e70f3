"""Recording finished attempts: verdicts, retries, artifacts, warm nodes (dispatcher side)."""

from __future__ import annotations

import hashlib
import mimetypes
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.auth.tokens import new_id
from computalot.engine.outcomes import Verdict, should_retry
from computalot.engine.records import (
    TASKS,
    Events,
    JobInfo,
    TaskRow,
    bump_counters,
    finish_if_done,
    retry_event,
    task_event,
)
from computalot.store.models import Artifact, Project
from computalot.timeutil import iso, utcnow


def _store_artifacts(
    db: AsyncSession, task: TaskRow, outcome: dict[str, Any], data_dir: Path
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


async def apply_verdicts(
    db: AsyncSession,
    judged: list[tuple[JobInfo, TaskRow, int, Verdict, dict[str, Any]]],
    *,
    data_dir: Path,
    lost_budget: int,
) -> Events:
    now = utcnow()
    events: Events = []
    rows: list[dict[str, Any]] = []
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
            row["artifacts"] = (task.artifacts or []) + _store_artifacts(
                db, task, outcome, data_dir
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
