"""Releasing jobs that wait on others (docs/llms-full.md, "Dependencies").

A job submitted with ``depends_on`` stays ``blocked`` until every dependency completed; if one
ends otherwise (failed, partial, cancelled, or deleted) the waiting job fails with
``dependency_failed`` and never runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.counters import job_ended
from computalot.engine.finalize import fail_job
from computalot.engine.quarantine import quarantine_job
from computalot.engine.rows import JOBS, chunked, job_event
from computalot.states import TERMINAL_JOB, JobStatus
from computalot.store.events import Events
from computalot.store.jsoncodec import is_unusable
from computalot.store.models import Job

DELETED = "deleted"  # a dependency no longer in the store
BAD_ENDS = frozenset((TERMINAL_JOB - {JobStatus.COMPLETED}) | {DELETED})
DEPENDENCY_ACTION = "fix and rerun the dependency, then resubmit this job"
WAITING_QUERY = select(JOBS.c.id, JOBS.c.account_id, JOBS.c.status, JOBS.c.depends_on).where(
    JOBS.c.blocked.is_(True), JOBS.c.status.not_in(TERMINAL_JOB)
)
UNBLOCK = update(Job).where(Job.blocked.is_(True))


async def _statuses(db: AsyncSession, job_ids: set[str]) -> dict[str, str]:
    """Each job's status, one query per chunk of ids (a missing job is absent)."""
    statuses: dict[str, str] = {}
    for chunk in chunked(sorted(job_ids)):
        rows = await db.execute(select(Job.id, Job.status).where(Job.id.in_(chunk)))
        statuses.update(rows.tuples().all())
    return statuses


def _verdict(depends_on: list[str], statuses: dict[str, str]) -> str | None:
    """The first dependency that ended badly, ``""`` when all completed, None while waiting."""
    bad = [d for d in depends_on if statuses.get(d, DELETED) in BAD_ENDS]
    if bad:
        return bad[0]
    if all(statuses.get(d) == JobStatus.COMPLETED for d in depends_on):
        return ""
    return None


async def _fail_waiting(db: AsyncSession, job_id: str, culprit: str, ended: str) -> Events:
    job = await db.get(Job, job_id)
    if job is None:
        return []
    message = f"dependency {culprit} ended {ended}"
    if not await fail_job(db, job, "dependency_failed", message, DEPENDENCY_ACTION):
        return []
    await db.refresh(job)
    return await job_ended(db, job)


async def _unblock(db: AsyncSession, ready: Sequence[tuple[str, str, str]]) -> Events:
    """Unblock the ``(id, account, status)`` jobs in one statement per chunk."""
    events: Events = []
    for chunk in chunked([job_id for job_id, _a, _s in ready]):
        await db.execute(UNBLOCK.where(Job.id.in_(chunk)).values(blocked=False))
    for job_id, account_id, status in ready:
        events.append(
            job_event(job_id, account_id, {"id": job_id, "status": status, "blocked": False})
        )
    return events


async def release_dependencies(db: AsyncSession) -> tuple[Events, bool]:
    """Unblock jobs whose dependencies all completed; fail those with a dependency gone bad.

    Two queries however many jobs wait (the waiting jobs, then their dependencies' statuses),
    one more per chunk of released jobs. Also returns whether jobs are still waiting afterwards.
    """
    waiting: list[tuple[str, str, str, Any]] = list(
        (await db.execute(WAITING_QUERY)).tuples().all()
    )
    if not waiting:
        return [], False
    events: Events = []
    for job_id, _account, _status, deps in waiting:
        if is_unusable(deps) or not isinstance(deps, list):
            events += await quarantine_job(db, job_id, ["depends_on"])
    waiting = [row for row in waiting if isinstance(row[3], list)]
    statuses = await _statuses(db, {d for *_head, deps in waiting for d in deps})
    ready: list[tuple[str, str, str]] = []
    still_waiting = False
    for job_id, account_id, status, depends_on in waiting:
        culprit = _verdict(depends_on, statuses)
        if culprit is None:
            still_waiting = True
        elif culprit:
            ended = statuses.get(culprit, DELETED)
            events += await _fail_waiting(db, job_id, culprit, ended)
        else:
            ready.append((job_id, account_id, status))
    events += await _unblock(db, ready)
    return events, still_waiting
