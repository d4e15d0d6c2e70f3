"""Recording finished attempts: verdicts, retries, result caps, artifacts, warm nodes.

Nothing here touches the filesystem nor the artifact store: the worker that ran an attempt
streamed its artifact files into the store itself (``engine.task_files``) and returned only
their keys, sizes and digests, so recording only adds their rows. Results are stored as the
JSON text their worker wrote (``jsoncodec.RawJSON``), each with its size, and each job's
total moves in the same
transaction, so a result that would take a job past ``max_job_result_bytes`` fails its task
(``result_too_large``) instead of being stored.
"""

from __future__ import annotations

import asyncio
import codecs
import mimetypes
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts.service import add_reference
from computalot.artifacts.store import Blob as StoredBlob
from computalot.engine import checkpoints
from computalot.engine.attempt import Outcome
from computalot.engine.cancelling import cancel_requeued
from computalot.engine.cluster import alive_nodes
from computalot.engine.counters import bump_counters, finish_if_done
from computalot.engine.outcomes import Verdict, result_too_large, should_retry
from computalot.engine.placement import runs_tasks
from computalot.engine.rows import JOBS, TASKS, JobInfo, TaskRow, chunked, retry_event, task_event
from computalot.ids import new_id
from computalot.projects.warm_state import NodeKey, record_reports
from computalot.states import TaskStatus
from computalot.store.bigtext import blob_writer
from computalot.store.events import EventRow, Events
from computalot.store.jsoncodec import RawJSON
from computalot.store.models import Artifact
from computalot.timeutil import utcnow


async def _write_artifacts(
    db: AsyncSession, pending: list[tuple[TaskRow, str, dict[str, Any]]]
) -> list[str]:
    """The artifact rows of ``pending`` (task, id, a file its worker stored); each counts one
    reference to its bytes (``artifacts.service.add_reference``). Answers the keys of copies
    the store already had under another key: nothing references them (see ``discard``)."""
    duplicates: list[str] = []
    for task, art_id, item in pending:
        stored = StoredBlob(item["sha256"], int(item["size"]), item["key"])
        key = await add_reference(db, stored)
        if key != stored.key:
            duplicates.append(stored.key)
        db.add(
            Artifact(
                id=art_id,
                account_id=task.account_id,
                job_id=task.job_id,
                task_id=task.id,
                filename=item["path"],
                size=stored.size,
                sha256=stored.sha256,
                content_type=mimetypes.guess_type(item["path"])[0] or "application/octet-stream",
                state="available",
                storage_key=key,
                created_at=utcnow(),
            )
        )
    return duplicates


def stored_keys(outcome: Outcome | None) -> list[str]:
    """The store keys of the files an attempt's worker stored (to discard when the attempt is
    not recorded)."""
    if outcome is None:
        return []
    keys = [str(a["key"]) for a in outcome.artifacts if "key" in a]
    return keys + ([str(outcome.checkpoint["key"])] if outcome.checkpoint else [])


#: One attempt's task row, if that attempt is still the running one (SET from the parameters);
#: ``billed_s`` adds the attempt's run time to the task's earlier attempts' (billing).
SETTLE_ATTEMPT = (
    update(TASKS)
    .where(
        TASKS.c.id == bindparam("b_id"),
        TASKS.c.attempt == bindparam("b_attempt"),
        TASKS.c.status == TaskStatus.RUNNING,
    )
    .values(billed_s=TASKS.c.billed_s + bindparam("b_billed"))
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


class Judged(NamedTuple):
    """One finished attempt with its verdict; ``outcome`` is None when the attempt raised."""

    job: JobInfo
    task: TaskRow
    attempt: int
    verdict: Verdict
    outcome: Outcome | None


#: (project id, revision id, node id, warm generation): a node that has run a revision of a
#: project (``projects.warm_state``).
WarmKey = NodeKey


class WarmNodes:
    """Which nodes have run which revision (Ray cached its runtime_env there).

    ``seen`` holds the keys already recorded in a committed transaction, at most ``limit``
    (least recently recorded dropped: recording one again costs one read); ``pending`` those the
    open transaction records, moved into ``seen`` by :meth:`committed` once it commits and
    dropped by :meth:`rolled_back`, so a cycle that fails never counts as recorded."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.seen: OrderedDict[WarmKey, None] = OrderedDict()
        self.pending: set[WarmKey] = set()

    def __len__(self) -> int:
        return len(self.seen)

    def new(self, keys: set[WarmKey]) -> set[WarmKey]:
        fresh = {key for key in keys if key not in self.seen and key not in self.pending}
        self.pending |= fresh
        return fresh

    def committed(self) -> None:
        for key in self.pending:
            self.seen[key] = None
        self.pending.clear()
        while len(self.seen) > self.limit:
            self.seen.popitem(last=False)

    def rolled_back(self) -> None:
        self.pending.clear()


async def _mark_warm(
    db: AsyncSession, keys: set[WarmKey], reports: dict[WarmKey, dict[str, Any]]
) -> None:
    """Record the nodes that ran (``keys``) or warmed (``reports``) a project's revision as
    ``ProjectNode`` rows with their stream events (``projects.warm_state``). Only batches with
    such news get here (``WarmNodes`` drops what is already recorded), so the alive nodes are
    counted (a GCS call, on a thread) only then."""
    if not keys and not reports:
        return
    try:
        total = sum(map(runs_tasks, await asyncio.to_thread(alive_nodes)))
    except Exception:  # the count only shapes the status snapshot
        total = 0
    await record_reports(db, keys, reports, total)


class _Settlement:
    """What settling one batch of attempts writes, gathered before any of it is written."""

    def __init__(self, db: AsyncSession, budget: ResultBudget, blobs: bool) -> None:
        self.db = db
        self.now = utcnow()
        self.budget = budget
        self.blobs = blobs  # big results go through ``store.bigtext.blob_writer``
        self.events: Events = []
        self.rows: list[dict[str, Any]] = []
        self.deltas: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.touched: set[str] = set()
        self.accounts: dict[str, str] = {}
        self.warmed: set[WarmKey] = set()
        self.reports: dict[WarmKey, dict[str, Any]] = {}
        self.big: list[tuple[str, Any]] = []  # (task id, a big result's bytes)
        self.checkpointed: list[str] = []  # tasks whose attempt saved a checkpoint
        #: (task, artifact id, a file its worker stored in the artifact store)
        self.artifacts: list[tuple[TaskRow, str, dict[str, Any]]] = []

    def add(self, judged: Judged, lost_budget: int) -> None:
        job, task, attempt, verdict, outcome = judged
        if verdict.status == TaskStatus.COMPLETED:
            verdict = self.budget.admit(job.id, verdict)
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
        self._note_node(job, verdict, outcome)
        row = self._attempt_row(task, attempt, verdict, outcome)
        self.rows.append(row)
        self.accounts[job.id] = job.account_id
        self.deltas[job.id][TaskStatus.RUNNING] -= 1
        if retry:
            task.status = row["status"] = TaskStatus.QUEUED
            self.deltas[job.id][TaskStatus.QUEUED] += 1
            self.events += [retry_event(task, attempt, row["error"]), task_event(task)]
            return
        task.status = row["status"] = verdict.status
        self.deltas[job.id][verdict.status] += 1
        self.touched.add(job.id)
        if verdict.status == TaskStatus.COMPLETED:
            self._result(task, verdict, row)
        self.events.append(task_event(task, exit_code=row["exit_code"], error=row["error"]))
        if verdict.status == TaskStatus.COMPLETED:
            result = {"task_id": task.id, "index": task.index, "result_quality": verdict.quality}
            self.events.append(EventRow(task.job_id, task.account_id, "result", result))

    def _note_node(self, job: JobInfo, verdict: Verdict, outcome: Outcome | None) -> None:
        """What the attempt tells of its node: an init report, or (completed) that it ran."""
        if outcome is None or not outcome.node_id or not job.project_id or not job.revision_id:
            return
        warmed = outcome.warmed or {}
        key = (job.project_id, job.revision_id, outcome.node_id, int(warmed.get("generation", 0)))
        if "state" in warmed:
            self.reports[key] = warmed
        elif verdict.status == TaskStatus.COMPLETED:
            self.warmed.add(key)

    def _attempt_row(
        self, task: TaskRow, attempt: int, verdict: Verdict, outcome: Outcome | None
    ) -> dict[str, Any]:
        """The task's columns this attempt sets (its status and result come later)."""
        ran = outcome or Outcome(status="raised")
        row: dict[str, Any] = {
            "b_id": task.id,
            "b_attempt": attempt,
            "finished_at": self.now,
            "duration_s": ran.duration_s,
            "b_billed": float(ran.duration_s or 0.0),
            "exit_code": ran.exit_code,
            "error": verdict.error(),
            "lost_attempts": task.lost_attempts,
        }
        if ran.node_id:
            row["node_id"] = ran.node_id
        if ran.has_output or task.output_attempt is None:
            row["stdout"] = ran.stdout
            row["stderr"] = ran.stderr
            row["output_tail"] = ran.output_tail
            row["output_attempt"] = attempt
        if ran.last_progress is not None:
            row["latest_progress"] = ran.last_progress
        if ran.checkpoint:  # replaces the task's previous one (its blob is deleted)
            row["checkpoint"] = checkpoints.checkpoint_row(ran.checkpoint, attempt, self.now)
            self.checkpointed.append(task.id)
        if ran.artifacts:
            # a recipe's worker names the files its result quotes (``engine.run_recipe``)
            ids = [str(item.get("id") or new_id("art")) for item in ran.artifacts]
            self.artifacts += [(task, i, item) for i, item in zip(ids, ran.artifacts, strict=True)]
            row["artifacts"] = (task.artifacts or []) + ids
        return row

    def _result(self, task: TaskRow, verdict: Verdict, row: dict[str, Any]) -> None:
        row["result"] = verdict.result
        if verdict.result_data is not None:
            if self.blobs:  # written after the rows, straight from the buffer
                self.big.append((task.id, verdict.result_data))
            else:
                row["result"] = RawJSON(codecs.decode(verdict.result_data, "utf-8"))
        row["result_bytes"] = verdict.result_bytes
        row["result_quality"] = verdict.quality
        row["result_warnings"] = verdict.warnings


async def apply_verdicts(
    db: AsyncSession,
    judged: list[Judged],
    *,
    lost_budget: int,
    max_result_bytes: int | None = None,
    max_job_result_bytes: int | None = None,
    warm: WarmNodes | None = None,
    discard: Callable[[list[str]], None] | None = None,
) -> Events:
    """Settle each judged attempt (stale ones are skipped); the events to write with them.

    An outcome's ``artifacts`` are the files its worker already stored; each gets its row.
    ``discard`` is handed the store keys nothing will reference: copies of bytes the store
    already had, and the files of stale attempts. ``warm``: the nodes already known to have
    run each revision (the caller tells it whether the transaction committed); without it no
    warm state is recorded."""
    current: list[Judged] = []
    unused: list[str] = []
    for j in judged:
        if j.task.status == TaskStatus.RUNNING and j.task.attempt == j.attempt:
            current.append(j)
        else:
            unused += stored_keys(j.outcome)
    judged = current
    budget = ResultBudget(max_result_bytes, max_job_result_bytes)
    await budget.load(db, {j.job.id for j in judged if j.verdict.status == TaskStatus.COMPLETED})
    has_big = any(j.verdict.result_data is not None for j in judged)
    write_blobs = await blob_writer(db) if has_big else None
    batch = _Settlement(db, budget, blobs=write_blobs is not None)
    for one in judged:
        batch.add(one, lost_budget)
    if batch.checkpointed:
        unused += list((await checkpoints.replaced_keys(db, batch.checkpointed)).values())
    await _write_task_rows(db, batch.rows)
    if batch.artifacts:
        unused += await _write_artifacts(db, batch.artifacts)
    if unused and discard is not None:
        discard(unused)
    if batch.big and write_blobs is not None:
        await write_blobs(batch.big)
    await budget.save(db)
    progress = await bump_counters(db, batch.deltas)
    if warm is not None:
        await _mark_warm(db, warm.new(batch.warmed - set(batch.reports)), batch.reports)
    events = batch.events + await cancel_requeued(db, progress, batch.accounts)
    return events + await finish_if_done(db, batch.touched | set(progress), known=progress)
