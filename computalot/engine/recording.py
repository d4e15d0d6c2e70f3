"""Recording a batch of ended attempts: from what Ray returned to settled rows and events.

Each ended attempt is an :class:`~computalot.engine.attempt.Outcome` (run_task returned) or the
exception Ray raised in its place (judged by type: ``engine.failures``). Big results travel as a
second object (run_task's second return value) fetched only here, while the attempt is recorded,
so the queue's byte budget bounds what the dispatcher holds. Artifact files never come here:
their workers stored them, and only their rows are written. Settling itself (verdicts,
retries, counters, events, artifact rows) is ``engine.settling``.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine import settling
from computalot.engine.attempt import Outcome
from computalot.engine.failures import judge_failure
from computalot.engine.inflight import Inflight
from computalot.engine.outcomes import Verdict, infrastructure_loss, judge_outcome
from computalot.engine.record_queue import Ended
from computalot.engine.rows import JobCache, JobInfo, load_task_rows
from computalot.engine.settling import Judged, WarmNodes
from computalot.settings import Settings
from computalot.store.events import Events

log = logging.getLogger("computalot.dispatcher")

Batch = list[tuple[Inflight, Ended]]
Text = NDArray[np.uint8] | BaseException | None


async def record_batch(
    db: AsyncSession, batch: Batch, settings: Settings, jobs: JobCache, warm: WarmNodes
) -> Events:
    """Settle ``batch`` in ``db``'s transaction; the events to write with it. Attempts whose task
    or job is gone (a stale record) are skipped."""
    texts = await fetch_texts(batch)  # before the first statement: no open transaction
    tasks = await load_task_rows(db, [info.task_id for info, _outcome in batch])
    known = await jobs.load(db, (info.job_id for info, _outcome in batch))
    judged = []
    unused: list[str] = []
    for info, ended in batch:
        task = tasks.get(info.task_id)
        job = known.get(info.job_id)
        if task is None or job is None:
            unused += settling.stored_keys(ended if isinstance(ended, Outcome) else None)
            continue
        if isinstance(ended, Outcome):
            verdict = _judge_outcome(ended, texts.get(info.task_id))
            judged.append(Judged(job, task, info.attempt, verdict, ended))
        else:
            verdict = _judge_raised(info, job, ended, settings.node_wait_s)
            judged.append(Judged(job, task, info.attempt, verdict, None))
    if unused:
        discard_keys(settings, unused)
    return await settling.apply_verdicts(
        db,
        judged,
        lost_budget=settings.worker_lost_retries,
        max_result_bytes=settings.max_result_bytes,
        max_job_result_bytes=settings.max_job_result_bytes,
        warm=warm,
        discard=lambda keys: discard_keys(settings, keys),
    )


def _judge_outcome(outcome: Outcome, text: Text) -> Verdict:
    if isinstance(text, BaseException):
        return infrastructure_loss(f"result lost: {type(text).__name__}: {text}"[:300])
    return judge_outcome(outcome, text)


def _judge_raised(info: Inflight, job: JobInfo, exc: BaseException, node_wait_s: float) -> Verdict:
    verdict = judge_failure(info, exc, job.timeout_s, node_wait_s)
    log.warning(
        "task %s of job %s attempt %d ended with %s: %s",
        info.task_id,
        info.job_id,
        info.attempt,
        type(exc).__name__,
        verdict.code,
    )
    return verdict


async def fetch_texts(batch: Batch) -> dict[str, Text]:
    """The big results' texts (each attempt's second return value) by task id; an exception in
    place of a text that could not be fetched."""
    wanted = [
        (info, info.text_ref)
        for info, outcome in batch
        if isinstance(outcome, Outcome) and outcome.result_in_ref and info.text_ref
    ]
    if not wanted:
        return {}
    texts = await asyncio.gather(*(ref for _info, ref in wanted), return_exceptions=True)
    return {info.task_id: text for (info, _ref), text in zip(wanted, texts, strict=True)}


_DISCARDING: set[asyncio.Task[None]] = set()


def discard_keys(settings: Settings, keys: list[str]) -> None:
    """Delete stored files no artifact row references (a copy of bytes the store already had,
    the files of an attempt that is not recorded) in the background, off the event loop. Safe
    before the transaction commits: nothing else ever names these keys."""
    from computalot.artifacts.service import drop_keys
    from computalot.artifacts.store import open_store

    try:
        store = open_store(settings)
    except Exception as exc:
        log.warning("could not open the artifact store to drop %d keys: %s", len(keys), exc)
        return
    task = asyncio.get_running_loop().create_task(drop_keys(store, list(keys)))
    _DISCARDING.add(task)
    task.add_done_callback(_DISCARDING.discard)
