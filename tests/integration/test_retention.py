"""Retention on both backends, with a retention of seconds: old finished jobs (tasks, events,
keys), old idempotency keys, long-expired challenges and unused revisions (rows and directories)
go; fresh ones, unfinished jobs and revisions in use stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from computalot.ids import new_id
from computalot.maintenance.retention import sweep
from computalot.states import JobStatus
from computalot.store.db import Store
from computalot.store.models import (
    Event,
    IdempotencyKey,
    Job,
    Project,
    Revision,
    Task,
    WalletChallenge,
)
from computalot.timeutil import utcnow
from tests.support.store_rows import job_row, new_member, project_row, task_row

RETENTION = timedelta(seconds=5)


async def add(store: Store, *rows: Any) -> None:
    async with store.sessions() as db:
        for row in rows:
            db.add(row)
            await db.flush()
        await db.commit()


async def exists(store: Store, model: Any, key: Any) -> bool:
    async with store.sessions() as db:
        return await db.get(model, key) is not None


async def finished_job(store: Store, account_id: str, age: timedelta, **extra: Any) -> Job:
    at = utcnow() - age
    values: dict[str, Any] = {"status": JobStatus.COMPLETED, "finished_at": at, "n_total": 2}
    job = job_row(account_id, created_at=at, **{**values, **extra})
    event = Event(job_id=job.id, account_id=account_id, event="end", data={}, created_at=at)
    key = IdempotencyKey(account_id=account_id, key=job.id, job_id=job.id, created_at=utcnow())
    await add(store, job, task_row(job, 0), task_row(job, 1), event, key)
    return job


def revision(project: Project, root: Path, age: timedelta) -> Revision:
    content = new_id("rev")[-16:]
    path = root / "revisions" / project.account_id / project.id / content
    path.mkdir(parents=True)
    (path / "runner.py").write_text("print(1)\n")
    return Revision(
        id=new_id("rev"),
        project_id=project.id,
        account_id=project.account_id,
        content_hash=content,
        size_bytes=9,
        files=[],
        manifest={},
        runtime_kind="python",
        warnings=[],
        path=str(path),
        pushed_at=utcnow() - age,
    )


async def test_finished_jobs_go_after_the_retention_and_nothing_else(store: Store) -> None:
    account_id = await new_member(store, "ret")
    old = await finished_job(store, account_id, timedelta(seconds=60))
    fresh = await finished_job(store, account_id, timedelta(seconds=0))
    running = job_row(
        account_id, status=JobStatus.RUNNING, created_at=utcnow() - timedelta(days=90)
    )
    await add(store, running, task_row(running, 0, status="running"))
    swept = await sweep(store, Path("/nonexistent-data-dir"), RETENTION)
    assert swept.jobs >= 1 and swept.tasks >= 2 and swept.events >= 1
    assert not await exists(store, Job, old.id)
    for job in (fresh, running):
        assert await exists(store, Job, job.id)
    async with store.sessions() as db:
        left = set((await db.execute(select(Task.job_id))).scalars())
        events = set((await db.execute(select(Event.job_id))).scalars())
        keys = set((await db.execute(select(IdempotencyKey.job_id))).scalars())
    assert old.id not in left | events | keys
    assert {fresh.id, running.id} <= left
    assert fresh.id in events and fresh.id in keys


async def test_keys_and_challenges_expire(store: Store) -> None:
    account_id = await new_member(store, "keys")
    now = utcnow()
    stale = IdempotencyKey(
        account_id=account_id, key="old", job_id="j", created_at=now - timedelta(hours=25)
    )
    recent = IdempotencyKey(
        account_id=account_id, key="new", job_id="j", created_at=now - timedelta(hours=23)
    )

    def challenge(expired_for: timedelta) -> WalletChallenge:
        return WalletChallenge(
            id=new_id("wch"),
            wallet_address="0x" + "1" * 40,
            chain="base",
            nonce="n",
            message="m",
            created_at=now - expired_for - timedelta(minutes=5),
            expires_at=now - expired_for,
        )

    gone, kept = challenge(timedelta(days=2)), challenge(timedelta(hours=1))
    await add(store, stale, recent, gone, kept)
    await sweep(store, Path("/nonexistent-data-dir"), RETENTION)
    assert not await exists(store, IdempotencyKey, (account_id, "old"))
    assert await exists(store, IdempotencyKey, (account_id, "new"))
    assert not await exists(store, WalletChallenge, gone.id)
    assert await exists(store, WalletChallenge, kept.id)


async def test_unused_revisions_go_with_their_directories(store: Store, tmp_path: Path) -> None:
    account_id = await new_member(store, "revs")
    project = project_row(account_id)
    await add(store, project)
    old = timedelta(days=1)
    active, unused, in_use, recent = (
        revision(project, tmp_path, age) for age in (old, old, old, timedelta(0))
    )
    await add(store, active, unused, in_use, recent)
    async with store.sessions() as db:
        stored = await db.get(Project, project.id)
        assert stored is not None
        stored.active_revision_id = active.id
        await db.commit()
    user = job_row(account_id, status=JobStatus.QUEUED, revision_id=in_use.id)
    orphan = tmp_path / "revisions" / account_id / "prj_gone" / "abc"
    orphan.mkdir(parents=True)
    await add(store, user)
    swept = await sweep(store, tmp_path, RETENTION)
    assert swept.revisions == 1
    assert not await exists(store, Revision, unused.id)
    assert not Path(unused.path).exists()
    for kept in (active, in_use, recent):
        assert await exists(store, Revision, kept.id)
        assert Path(kept.path).is_dir()
    assert orphan.exists()  # too new to be called an orphan
    await sweep(store, tmp_path, timedelta(seconds=-60))
    assert not orphan.exists()
