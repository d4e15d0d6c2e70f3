"""Figures read from the store for ``/metrics``: jobs by status, tasks queued and running by
priority, and every statement's latency (docs/metrics.md).

A scrape must stay cheap on a store with millions of jobs: the live figures (planning, queued
and running jobs, their tasks' counters ``n_queued``/``n_running``) come from the few rows
``ix_jobs_status`` finds for those statuses, re-read at most every ``ACTIVE_TTL_S``; the
terminal statuses' counts, which need the whole index, are re-read at most every
``metrics_jobs_refresh_s`` (30 s by default) per replica.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Histogram
from sqlalchemy import event, func, select

from computalot.metrics.snapshot import Labels, Snapshot, gauge
from computalot.schemas.jobs import PRIORITY_RANK
from computalot.states import TERMINAL_JOB, JobStatus
from computalot.store.models import Job

#: Seconds the live figures are kept between scrapes.
ACTIVE_TTL_S = 1.0
ACTIVE_JOBS = (JobStatus.PLANNING, JobStatus.QUEUED, JobStatus.RUNNING)
TERMINAL_JOBS = tuple(sorted(TERMINAL_JOB))
ACTIVE_QUERY = select(Job.status, func.count()).where(Job.status.in_(ACTIVE_JOBS))
ACTIVE_QUERY = ACTIVE_QUERY.group_by(Job.status)
TASKS_QUERY = (
    select(Job.priority, func.sum(Job.n_queued), func.sum(Job.n_running))
    .where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
    .group_by(Job.priority)
)
TERMINAL_QUERY = select(Job.status, func.count()).where(Job.status.in_(TERMINAL_JOBS))
TERMINAL_QUERY = TERMINAL_QUERY.group_by(Job.status)


class StoreFigures:
    """The store's figures as a snapshot, cached as the module docstring says."""

    def __init__(self, terminal_refresh_s: float) -> None:
        self.terminal_refresh_s = terminal_refresh_s
        self._active: tuple[float, Snapshot] = (float("-inf"), {})
        self._terminal: tuple[float, dict[str, float]] = (float("-inf"), {})

    async def take(self, store: Any, now: float | None = None) -> Snapshot:
        now = time.monotonic() if now is None else now
        if (
            now - self._active[0] < ACTIVE_TTL_S
            and now - self._terminal[0] < self.terminal_refresh_s
        ):
            return self._active[1]
        async with store.sessions() as db:
            active = {str(s): float(n) for s, n in (await db.execute(ACTIVE_QUERY)).all()}
            by_priority = (await db.execute(TASKS_QUERY)).all()
            if now - self._terminal[0] >= self.terminal_refresh_s:
                terminal = {str(s): float(n) for s, n in (await db.execute(TERMINAL_QUERY)).all()}
                self._terminal = (now, terminal)
        jobs: dict[Labels, float] = {(("status", str(s)),): 0.0 for s in JobStatus}
        for status, n in {**self._terminal[1], **active}.items():
            jobs[(("status", status),)] = n
        tasks: dict[Labels, float] = {}
        for priority in PRIORITY_RANK:
            for status in ("queued", "running"):
                tasks[(("priority", priority), ("status", status))] = 0.0
        for priority, queued, running in by_priority:
            tasks[(("priority", str(priority)), ("status", "queued"))] = float(queued or 0)
            tasks[(("priority", str(priority)), ("status", "running"))] = float(running or 0)
        snapshot = {
            "computalot_jobs": gauge(
                "computalot_jobs",
                "Jobs in the store by status (terminal statuses refreshed every "
                "metrics_jobs_refresh_s)",
                jobs,
            ),
            "computalot_tasks": gauge(
                "computalot_tasks", "Tasks queued and running, by their job's priority", tasks
            ),
        }
        self._active = (now, snapshot)
        return snapshot


def operation_of(statement: str) -> str:
    """``select``, ``insert``, ``update``, ``delete`` or ``other`` (a label of few values)."""
    word = statement.lstrip()[:6].lower()
    return word if word in ("select", "insert", "update", "delete") else "other"


def watch_statements(store: Any, histogram: Histogram) -> None:
    """Observe every statement ``store`` runs into ``histogram`` (seconds, by operation)."""
    engine = store.engine.sync_engine

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        context = args[-2]
        if context is not None:
            context._computalot_t0 = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        t0 = getattr(args[-2], "_computalot_t0", None)
        if t0 is not None:
            histogram.labels(operation_of(statement)).observe(time.perf_counter() - t0)


def statement_histogram(registry: Any) -> Histogram:
    return Histogram(
        "computalot_store_statement_duration_seconds",
        "Store statement latency in seconds by operation, as this process's driver saw it",
        ["operation"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
