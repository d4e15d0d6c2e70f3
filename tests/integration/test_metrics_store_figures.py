"""The store's figures for /metrics on both backends (docs/metrics.md): jobs by status and
tasks by priority, from the store's rows; terminal counts re-read on their own period."""

from __future__ import annotations

from typing import Any

from computalot.metrics.store_figures import StoreFigures
from computalot.store.db import Store
from tests.support.store_rows import job_row, new_member


def values(snapshot: Any, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (_sample, labels), v in snapshot[name].samples.items()}


async def test_jobs_by_status_and_tasks_by_priority_match_the_rows(store: Store) -> None:
    account = await new_member(store)
    rows = [
        job_row(account, status="queued", priority="high", n_total=5, n_queued=5),
        job_row(account, status="running", priority="high", n_total=4, n_queued=1, n_running=3),
        job_row(account, status="running", priority="low", n_total=2, n_running=2),
        job_row(account, status="completed", n_total=1, n_completed=1),
        job_row(account, status="failed", n_total=1, n_failed=1),
        job_row(account, status="failed", n_total=1, n_failed=1),
    ]
    async with store.sessions() as db:
        db.add_all(rows)
        await db.commit()
    figures = StoreFigures(terminal_refresh_s=30.0)
    snap = await figures.take(store, now=0.0)
    jobs = values(snap, "computalot_jobs")
    assert jobs[(("status", "queued"),)] == 1
    assert jobs[(("status", "running"),)] == 2
    assert jobs[(("status", "completed"),)] == 1
    assert jobs[(("status", "failed"),)] == 2
    assert jobs[(("status", "cancelled"),)] == 0
    tasks = values(snap, "computalot_tasks")
    assert tasks[(("priority", "high"), ("status", "queued"))] == 6
    assert tasks[(("priority", "high"), ("status", "running"))] == 3
    assert tasks[(("priority", "low"), ("status", "running"))] == 2
    assert tasks[(("priority", "normal"), ("status", "queued"))] == 0

    async with store.sessions() as db:
        db.add(job_row(account, status="cancelled"))
        db.add(job_row(account, status="queued", priority="normal", n_total=7, n_queued=7))
        await db.commit()
    # Live figures move after ACTIVE_TTL_S; terminal counts only after their own period.
    snap = await figures.take(store, now=2.0)
    assert values(snap, "computalot_jobs")[(("status", "queued"),)] == 2
    assert values(snap, "computalot_jobs")[(("status", "cancelled"),)] == 0
    tasks = values(snap, "computalot_tasks")
    assert tasks[(("priority", "normal"), ("status", "queued"))] == 7
    snap = await figures.take(store, now=31.0)
    assert values(snap, "computalot_jobs")[(("status", "cancelled"),)] == 1
