"""Setting aside a job whose stored definition cannot be read back.

Reading a JSON column never raises (``store.jsoncodec.Unreadable`` stands in for a value the
reader cannot take: a payload nested deeper than the reader's recursion allows, written before
the platform measured depth at its doors, or a row edited by hand). A job whose spec, payload,
resources or dependency list is unreadable cannot be run or judged, and retrying it every cycle
would stop the engine for every tenant, so the dispatcher fails it *alone*, in the transaction of
the cycle that found it, with the typed code ``unreadable_job``: its unfinished tasks fail too,
its owner sees why, and the operator sees it in the log and in the dispatcher's ``ping``.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.counters import COUNTER, job_ended
from computalot.jsonsafe import MAX_JSON_DEPTH
from computalot.states import TERMINAL_JOB, JobStatus, TaskStatus
from computalot.store.events import Events
from computalot.store.models import Job, Task
from computalot.timeutil import utcnow

log = logging.getLogger("computalot.dispatcher")

CODE = "unreadable_job"
ACTION = (
    f"resubmit the job with payload and meta nested at most {MAX_JSON_DEPTH} levels deep; "
    "if it persists, report the job id via POST /api/v1/feedback"
)


async def quarantine_job(db: AsyncSession, job_id: str, fields: list[str]) -> Events:
    """Fail ``job_id`` and its unfinished tasks (compare-and-set); its ``job``/``end`` events."""
    now = utcnow()
    error = {
        "code": CODE,
        "message": f"the stored job cannot be read back ({', '.join(fields)}); it was set aside "
        "so that other jobs keep running",
    }
    await db.execute(
        update(Task)
        .where(Task.job_id == job_id, Task.status.in_((TaskStatus.QUEUED, TaskStatus.RUNNING)))
        .values(
            status=TaskStatus.FAILED, finished_at=now, error={**error, "recommended_action": ACTION}
        )
    )
    rows = await db.execute(
        select(Task.status, func.count()).where(Task.job_id == job_id).group_by(Task.status)
    )
    counts = dict(rows.tuples().all())
    changed = await db.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.not_in(TERMINAL_JOB))
        .values(
            status=JobStatus.FAILED,
            finished_at=now,
            error=error,
            recommended_action=ACTION,
            blocked=False,
            **{column: int(counts.get(status, 0)) for status, column in COUNTER.items()},
        )
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        return []
    log.warning("job %s set aside (%s): %s unreadable", job_id, CODE, ", ".join(fields))
    job = await db.get(Job, job_id, populate_existing=True)
    if job is None:
        return []
    return await job_ended(db, job)
