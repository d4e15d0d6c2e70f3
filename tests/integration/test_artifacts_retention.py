"""Retention of artifacts on both store backends (docs/llms-full.md, "Retention"): a finished
job's task artifacts go with it, their bytes only when nothing else references the same content;
bytes nothing references go; expired uploads go with their parts and pending artifacts."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from computalot.artifacts import service
from computalot.artifacts.store import ArtifactStore, StoreConfig
from computalot.artifacts.uploads import begin_direct, begin_multipart, put_part
from computalot.maintenance.retention import sweep
from computalot.settings import load_settings
from computalot.store.db import Store
from computalot.store.models import Artifact, ArtifactUpload, Blob
from computalot.timeutil import utcnow
from tests.integration.test_retention import RETENTION, add, exists, finished_job, revision
from tests.support.store_rows import new_member, project_row


def local_store(tmp_path: Path) -> ArtifactStore:
    return StoreConfig("local", root=str(tmp_path / "artifacts")).open()


async def artifact(
    db_store: Store, files: ArtifactStore, account_id: str, data: bytes, **extra: Any
) -> Artifact:
    with files.writer() as out:
        out.write(data)
        blob = out.commit()
    async with db_store.sessions() as db:
        art = await service.create_artifact(db, files, account_id, blob, "f.bin", **extra)
        await db.commit()
        return art


async def test_a_finished_jobs_task_artifacts_go_with_it_and_shared_bytes_stay(
    store: Store, tmp_path: Path
) -> None:
    files = local_store(tmp_path)
    account_id = await new_member(store, "art-ret")
    old = await finished_job(store, account_id, timedelta(seconds=60))
    fresh = await finished_job(store, account_id, timedelta(seconds=0))
    solo = await artifact(store, files, account_id, b"only the old job", job_id=old.id)
    shared = await artifact(store, files, account_id, b"also uploaded", job_id=old.id)
    upload = await artifact(store, files, account_id, b"also uploaded")
    kept = await artifact(store, files, account_id, b"the fresh job's", job_id=fresh.id)
    assert shared.storage_key == upload.storage_key

    swept = await sweep(store, tmp_path, RETENTION, files)
    assert swept.artifacts == 2
    assert not await exists(store, Artifact, solo.id) and not await exists(
        store, Artifact, shared.id
    )
    assert not files.exists(solo.storage_key or "")
    assert await exists(store, Blob, shared.sha256) and files.exists(shared.storage_key or "")
    assert b"".join(files.read(upload.storage_key or "")) == b"also uploaded"
    assert await exists(store, Artifact, kept.id) and files.exists(kept.storage_key or "")


async def test_bytes_nothing_references_go_an_hour_later(store: Store, tmp_path: Path) -> None:
    files = local_store(tmp_path)
    account_id = await new_member(store, "blob-ret")
    art = await artifact(store, files, account_id, b"orphaned by a crash")
    async with store.sessions() as db:  # as if the process died between the row and its blob
        await db.delete(await db.get(Artifact, art.id))
        await db.commit()
    assert (await sweep(store, tmp_path, RETENTION, files)).blobs == 0  # too young yet
    async with store.sessions() as db:
        hour_ago = utcnow() - timedelta(hours=2)
        await db.execute(update(Blob).where(Blob.sha256 == art.sha256).values(created_at=hour_ago))
        await db.commit()
    assert (await sweep(store, tmp_path, RETENTION, files)).blobs == 1
    assert not await exists(store, Blob, art.sha256)
    assert not files.exists(art.storage_key or "")


async def test_expired_uploads_go_with_their_parts_and_pending_artifact(
    store: Store, tmp_path: Path
) -> None:
    files = local_store(tmp_path)
    settings = load_settings(data_dir=tmp_path)
    account_id = await new_member(store, "upl-ret")

    async def one_chunk() -> Any:
        yield b"x" * 10

    async with store.sessions() as db:
        multi = await begin_multipart(
            db,
            files,
            settings,
            account_id,
            filename="m",
            size=10,
            sha256=None,
            part_size=None,
            content_type=None,
        )
        await put_part(db, files, account_id, multi["upload_id"], 1, one_chunk())
        direct = await begin_direct(
            db,
            files,
            settings,
            account_id,
            sha256="a" * 64,
            size=3,
            filename="d",
            content_type=None,
            base_url="http://127.0.0.1",
        )
    parts_dirs = list((tmp_path / "artifacts" / "multipart").iterdir())
    assert len(parts_dirs) == 1 and (parts_dirs[0] / "1").is_file()
    stale = tmp_path / "artifacts" / "tmp" / "crashed.part"
    stale.write_bytes(b"partial")
    day_ago = time.time() - 2 * 86400
    os.utime(stale, (day_ago, day_ago))

    assert (await sweep(store, tmp_path, RETENTION, files)).uploads == 0
    async with store.sessions() as db:
        await db.execute(update(ArtifactUpload).values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()
    assert (await sweep(store, tmp_path, RETENTION, files)).uploads == 2
    async with store.sessions() as db:
        assert list((await db.execute(select(ArtifactUpload.id))).scalars()) == []
    assert not await exists(store, Artifact, direct["artifact_id"])
    assert not parts_dirs[0].exists() and not stale.exists()


async def test_a_revisions_tarball_is_kept_while_the_revision_is_and_goes_with_it(
    store: Store, tmp_path: Path
) -> None:
    files = local_store(tmp_path)
    account_id = await new_member(store, "tar-ret")
    now = utcnow()
    project = project_row(account_id)
    await add(store, project)
    with files.writer() as out:
        out.write(b"a gzip'd tarball")
        blob = out.commit()
    async with store.sessions() as db:
        key = await service.add_reference(db, blob)
        await db.execute(update(Blob).values(created_at=now - timedelta(hours=2)))
        await db.commit()
    old = revision(project, tmp_path, timedelta(days=1))
    old.tarball_key = key
    await add(store, old)

    assert (await sweep(store, tmp_path, timedelta(days=30), files)).blobs == 0
    assert await exists(store, Blob, blob.sha256) and files.exists(key)
    assert (await sweep(store, tmp_path, RETENTION, files)).revisions == 1
    assert not await exists(store, Blob, blob.sha256) and not files.exists(key)
