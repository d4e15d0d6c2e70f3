"""Project KV compare-and-set in the store, on SQLite and real PostgreSQL: concurrent writers in
separate sessions (separate connections) never lose an update, and a refused write leaves
nothing behind."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from computalot.artifacts.store import StoreConfig
from computalot.errors import Conflict
from computalot.maintenance.retention import sweep
from computalot.projects import kv
from computalot.projects.events import project_events_after
from computalot.store.db import Store
from computalot.store.models import Project, Task
from tests.integration.test_retention import RETENTION, add, finished_job
from tests.support.store_rows import job_row, new_member, project_row, task_row

WRITERS = 12


async def _project(store: Store) -> Project:
    account_id = await new_member(store)
    async with store.sessions() as db:
        project = project_row(account_id)
        db.add(project)
        await db.commit()
        return project


async def _increment(store: Store, project: Project, key: str) -> tuple[int, int]:
    """Read, add one, write back with If-Match; retry on 409: (version written, conflicts)."""
    conflicts = 0
    while True:
        async with store.sessions() as db:
            try:
                current = await kv.get_value(db, project, key)
                version, value = current.version, current.value
            except Exception:
                version, value = 0, 0
            await db.rollback()
            await asyncio.sleep(random.random() * 0.01)
            try:
                entry = await kv.put_value(db, project, project.account_id, key, value + 1, version)
                await db.commit()
                return entry.version, conflicts
            except Conflict:
                await db.rollback()
                conflicts += 1
            except Exception as exc:  # a serialization or busy error counts as a lost race
                if "lock" not in str(exc).lower() and "serializ" not in str(exc).lower():
                    raise
                await db.rollback()
                conflicts += 1


async def test_concurrent_increments_land_exactly_once(store: Store) -> None:
    project = await _project(store)
    written = await asyncio.gather(*(_increment(store, project, "n") for _ in range(WRITERS)))
    assert sorted(v for v, _c in written) == list(range(1, WRITERS + 1))
    async with store.sessions() as db:
        final = await kv.get_value(db, project, "n")
        events = await project_events_after(db, project.id, 0, limit=1000)
    assert (final.value, final.version) == (WRITERS, WRITERS)
    assert [d["version"] for _i, e, d in events if e == "kv"] == list(range(1, WRITERS + 1))


async def test_racing_creates_have_one_winner_and_upserts_all_count(store: Store) -> None:
    project = await _project(store)

    async def create(i: int) -> Any:
        async with store.sessions() as db:
            try:
                await kv.put_value(db, project, project.account_id, "once", i, 0)
                await db.commit()
                return "won"
            except Conflict as exc:
                await db.rollback()
                return exc.details[0]["current_version"]

    outcomes = await asyncio.gather(*(create(i) for i in range(WRITERS)))
    assert outcomes.count("won") == 1 and outcomes.count(1) == WRITERS - 1

    async def upsert(i: int) -> int:
        async with store.sessions() as db:
            entry = await kv.put_value(db, project, project.account_id, "up", i, None)
            await db.commit()
            return entry.version

    versions = await asyncio.gather(*(upsert(i) for i in range(WRITERS)))
    assert sorted(versions) == list(range(1, WRITERS + 1))


async def test_refused_writes_change_nothing_and_listing_pages(store: Store) -> None:
    project = await _project(store)
    async with store.sessions() as db:
        await kv.put_value(db, project, project.account_id, "a/1", {"x": 1}, None)
        await db.commit()
        with pytest.raises(Conflict):
            await kv.put_value(db, project, project.account_id, "a/1", {"x": 2}, 7)
        with pytest.raises(Conflict):
            await kv.delete_value(db, project, "a/1", 0)
        await db.rollback()
        assert (await kv.get_value(db, project, "a/1")).value == {"x": 1}
        for i in range(2, 6):
            await kv.put_value(db, project, project.account_id, f"a/{i}", i, None)
        await kv.put_value(db, project, project.account_id, "A/upper", 0, None)
        await kv.put_value(db, project, project.account_id, "a_/not", 0, None)
        await db.commit()
        first = await kv.list_values(db, project, prefix="a/", limit=2, cursor=None, values=False)
        rest = await kv.list_values(
            db, project, prefix="a/", limit=10, cursor=first["next_cursor"], values=True
        )
        names = [e["key"] for e in first["keys"] + rest["keys"]]
        assert names == [f"a/{i}" for i in range(1, 6)] and rest["next_cursor"] is None
        events = await project_events_after(db, project.id, 0)
        versions = [(d["key"], d["version"]) for _i, e, d in events if d["key"] == "a/1"]
        assert versions == [("a/1", 1)]
        stored = await db.execute(select(Project.id).where(Project.id == project.id))
        assert stored.scalar_one() == project.id


async def test_retention_deletes_a_finished_jobs_checkpoints_and_keeps_live_ones(
    store: Store, tmp_path: Any
) -> None:
    """A finished job's checkpoint blobs go with its tasks; a running job's stay."""

    files = StoreConfig("local", root=str(tmp_path / "artifacts")).open()

    def blob(data: bytes) -> dict[str, Any]:
        with files.writer() as out:
            out.write(data)
            stored = out.commit()
        return {"key": stored.key, "size": stored.size, "sha256": stored.sha256, "attempt": 1}

    account_id = await new_member(store, "ckpt-ret")
    old = await finished_job(store, account_id, timedelta(seconds=60))
    live = job_row(account_id, status="running", created_at=old.created_at)
    old_ckpt, live_ckpt = blob(b"old job's state"), blob(b"live job's state")
    await add(store, live, task_row(live, 0, status="running", checkpoint=live_ckpt))
    async with store.sessions() as db:
        await db.execute(update(Task).where(Task.job_id == old.id).values(checkpoint=old_ckpt))
        await db.commit()
    assert files.exists(old_ckpt["key"]) and files.exists(live_ckpt["key"])
    await sweep(store, tmp_path, RETENTION, files)
    assert not files.exists(old_ckpt["key"])
    assert files.exists(live_ckpt["key"])
