"""Retention: what the platform forgets, and when (docs/llms-full.md, "Retention").

* A finished job (``completed``, ``partial``, ``failed``, ``cancelled``) is kept, whole, for
  ``COMPUTALOT_RETENTION_DAYS`` after it ended (30 by default, like rq's ``result_ttl``): the job
  row, its tasks (with their results and output) and its events. Then all of it goes and
  ``GET /jobs/:id`` answers 404. An unfinished job is never touched, however old.
* An idempotency key lasts 24 hours (the promise of "Idempotency keys").
* A wallet challenge goes a day after it expired (until then a late answer still reads
  "challenge expired").
* A finished job's task artifacts go with the job (their rows; their bytes when no other
  artifact references the same content), and so do its tasks' saved checkpoints
  (``engine.checkpoints``; a live task's checkpoint is never touched). Bytes in the artifact
  store that no artifact references any more (``blobs`` rows left by an interrupted delete) go an hour later; uploads never
  completed go when they expire (multipart after 24 hours, direct when their URL does), with
  their parts and their pending artifact; the local store's partial files of a crashed process
  a day later.
* A revision goes when it was pushed before the retention cutoff, its project does not point at
  it and no unfinished job uses it: its row, then its directory under the data dir, and its
  tarball in the artifact store when no other revision has the same one. A directory
  under ``revisions/`` that no revision row names (its project was deleted) goes once it is older
  than the cutoff.

Deletes run in chunks of :data:`CHUNK_ROWS` rows, one short transaction each, so a sweep never
holds SQLite's write lock (or PostgreSQL row locks) for long, and yields to the event loop
between chunks. Every delete is idempotent: several API processes may sweep at once.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, delete, exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts import service as artifact_rows
from computalot.artifacts.store import ArtifactStore, MultipartUpload
from computalot.engine.checkpoints import job_checkpoint_keys
from computalot.states import OPEN_JOB, TERMINAL_JOB
from computalot.store.db import Store
from computalot.store.models import (
    Artifact,
    ArtifactUpload,
    Blob,
    Event,
    IdempotencyKey,
    Job,
    Project,
    Revision,
    Task,
    WalletChallenge,
)
from computalot.timeutil import utcnow

log = logging.getLogger("computalot.retention")

#: Rows per delete transaction.
CHUNK_ROWS = 1000
#: Expired jobs handled per pass (their tasks and events are then deleted in chunks).
JOBS_PER_PASS = 100
IDEMPOTENCY_TTL = timedelta(hours=24)
CHALLENGE_GRACE = timedelta(days=1)
#: An unreferenced blob is left this long (a create in flight may be about to reference it).
BLOB_GRACE = timedelta(hours=1)
#: Partial files of the local store older than this belong to no live upload.
TEMP_FILE_AGE = timedelta(days=1)


@dataclass
class Swept:
    """Rows (and directories) one sweep removed."""

    jobs: int = 0
    tasks: int = 0
    events: int = 0
    idempotency_keys: int = 0
    challenges: int = 0
    revisions: int = 0
    directories: int = 0
    artifacts: int = 0
    blobs: int = 0
    uploads: int = 0

    def total(self) -> int:
        return sum(vars(self).values())


async def sweep(
    store: Store,
    data_dir: Path,
    retention: timedelta,
    artifacts: ArtifactStore | None = None,
) -> Swept:
    """One retention pass over everything this module's docstring lists (the artifact store's
    bytes only when ``artifacts`` is given; the rows always)."""
    now = utcnow()
    cutoff = now - retention
    swept = Swept()
    await _expire_jobs(store, cutoff, swept, artifacts)
    swept.uploads = await _expire_uploads(store, now, artifacts)
    swept.blobs = await _unreferenced_blobs(store, now - BLOB_GRACE, artifacts)
    if artifacts is not None and artifacts.kind == "local":
        await asyncio.to_thread(_old_temp_files, artifacts, (now - TEMP_FILE_AGE).timestamp())
    swept.idempotency_keys = await _expire_keys(store, now - IDEMPOTENCY_TTL)
    challenges = WalletChallenge.expires_at < now - CHALLENGE_GRACE
    swept.challenges = await delete_chunks(store, WalletChallenge.id, challenges)
    root = data_dir.resolve() / "revisions"  # as push_revision names revision paths
    swept.revisions = await _expire_revisions(store, root, cutoff, artifacts)
    swept.directories = await _orphan_directories(store, root, cutoff)
    return swept


async def delete_chunks(store: Store, key: Any, *where: Any) -> int:
    """Delete the rows of ``key``'s table matching ``where``, :data:`CHUNK_ROWS` at a time."""
    table: Table = key.table
    total = 0
    while True:
        async with store.sessions() as db:
            ids = list((await db.execute(select(key).where(*where).limit(CHUNK_ROWS))).scalars())
            if not ids:
                return total
            await db.execute(delete(table).where(key.in_(ids)))
            await db.commit()
        total += len(ids)
        await asyncio.sleep(0)


async def _expire_jobs(
    store: Store, cutoff: datetime, swept: Swept, artifacts: ArtifactStore | None
) -> None:
    """Finished jobs older than ``cutoff``: events, tasks, task artifacts, keys, then the job
    rows."""
    expired = (Job.status.in_(TERMINAL_JOB), Job.finished_at < cutoff)
    while True:
        async with store.sessions() as db:
            query = select(Job.id).where(*expired).limit(JOBS_PER_PASS)
            job_ids = list((await db.execute(query)).scalars())
        if not job_ids:
            return
        swept.events += await delete_chunks(store, Event.id, Event.job_id.in_(job_ids))
        async with store.sessions() as db:  # a task's checkpoint goes with it
            checkpoint_keys = await job_checkpoint_keys(db, job_ids)
        swept.tasks += await delete_chunks(store, Task.id, Task.job_id.in_(job_ids))
        await _drop_bytes(artifacts, checkpoint_keys)
        swept.artifacts += await _drop_job_artifacts(store, job_ids, artifacts)
        async with store.sessions() as db:
            await db.execute(delete(IdempotencyKey).where(IdempotencyKey.job_id.in_(job_ids)))
            gone = await db.execute(delete(Job).where(Job.id.in_(job_ids), *expired))
            await db.commit()
        swept.jobs += int(gone.rowcount)  # type: ignore[attr-defined]
        log.info("retention: %d finished jobs removed with their tasks and events", len(job_ids))


async def _expire_keys(store: Store, before: datetime) -> int:
    """Idempotency keys (a two-column key: chunks by row value)."""
    pair = tuple_(IdempotencyKey.account_id, IdempotencyKey.key)
    total = 0
    while True:
        async with store.sessions() as db:
            query = select(IdempotencyKey.account_id, IdempotencyKey.key).where(
                IdempotencyKey.created_at < before
            )
            pairs = [tuple(row) for row in (await db.execute(query.limit(CHUNK_ROWS))).tuples()]
            if not pairs:
                return total
            await db.execute(delete(IdempotencyKey).where(pair.in_(pairs)))
            await db.commit()
        total += len(pairs)
        await asyncio.sleep(0)


def _unused_revision(cutoff: datetime) -> tuple[Any, ...]:
    """A revision pushed before ``cutoff`` that no project points at and no unfinished job
    uses (checked again by the DELETE itself, so a push or submit in between keeps it)."""
    active = exists().where(Project.active_revision_id == Revision.id)
    in_use = exists().where(Job.revision_id == Revision.id, Job.status.in_(OPEN_JOB))
    return (Revision.pushed_at < cutoff, ~active, ~in_use)


async def _expire_revisions(
    store: Store, root: Path, cutoff: datetime, artifacts: ArtifactStore | None
) -> int:
    unused = _unused_revision(cutoff)
    total = 0
    while True:
        async with store.sessions() as db:
            query = select(Revision.id, Revision.path).where(*unused).limit(CHUNK_ROWS)
            rows = [tuple(row) for row in (await db.execute(query)).tuples()]
            if not rows:
                return total
            gone = await _delete_revisions(db, [rev_id for rev_id, _path in rows], unused)
            keys = await _release_tarballs(db, list(gone.values()))
            await db.commit()
        paths = [path for rev_id, path in rows if rev_id in gone]
        await asyncio.to_thread(_remove_dirs, root, paths)
        await _drop_bytes(artifacts, keys)
        total += len(gone)


async def _delete_revisions(
    db: AsyncSession, ids: list[str], unused: Sequence[Any]
) -> dict[str, str | None]:
    """Delete those of ``ids`` still unused; {revision id: its tarball's store key}."""
    deleted = await db.execute(
        delete(Revision)
        .where(Revision.id.in_(ids), *unused)
        .returning(Revision.id, Revision.tarball_key)
    )
    return {rev_id: key for rev_id, key in deleted.tuples()}


async def _release_tarballs(db: AsyncSession, keys: list[str | None]) -> list[str]:
    """One reference less to each deleted revision's tarball; the keys whose last one went."""
    wanted = [key for key in keys if key]
    if not wanted:
        return []
    rows = await db.execute(
        select(Blob.storage_key, Blob.sha256).where(Blob.storage_key.in_(wanted))
    )
    sha_of = dict(list(rows.tuples()))
    return await artifact_rows.release(db, [sha_of.get(key) for key in wanted])


def _remove_dirs(root: Path, paths: list[str]) -> None:
    """Remove revision directories, only ever under ``root`` (blocking: a thread's job)."""
    base = root.resolve()
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_relative_to(base) and path != base:
            shutil.rmtree(path, ignore_errors=True)


async def _orphan_directories(store: Store, root: Path, cutoff: datetime) -> int:
    """Revision directories older than ``cutoff`` that no revision row names."""
    candidates = await asyncio.to_thread(_old_revision_dirs, root, cutoff.timestamp())
    orphans: list[str] = []
    for start in range(0, len(candidates), CHUNK_ROWS):
        chunk = candidates[start : start + CHUNK_ROWS]
        async with store.sessions() as db:
            query = select(Revision.path).where(Revision.path.in_(chunk))
            named = set((await db.execute(query)).scalars())
        orphans += [path for path in chunk if path not in named]
    if orphans:
        await asyncio.to_thread(_remove_dirs, root, orphans)
    return len(orphans)


def _old_revision_dirs(root: Path, before: float) -> list[str]:
    """``root/<account>/<project>/<content hash>`` directories last changed before ``before``
    (a Unix time), as the paths revision rows store."""
    found: list[str] = []
    if not root.is_dir():
        return found
    for account in root.iterdir():
        for project in account.iterdir() if account.is_dir() else ():
            for tree in project.iterdir() if project.is_dir() else ():
                if tree.is_dir() and tree.stat().st_mtime < before:
                    found.append(str(tree))
    return found


async def _drop_bytes(artifacts: ArtifactStore | None, keys: list[str]) -> None:
    if artifacts is not None and keys:
        await artifact_rows.drop_keys(artifacts, keys)


async def _drop_job_artifacts(
    store: Store, job_ids: list[str], artifacts: ArtifactStore | None
) -> int:
    """The task artifacts of these jobs, and the bytes no other artifact references."""
    total = 0
    while True:
        async with store.sessions() as db:
            query = select(Artifact.id, Artifact.sha256, Artifact.state).where(
                Artifact.job_id.in_(job_ids)
            )
            rows = [tuple(row) for row in (await db.execute(query.limit(CHUNK_ROWS))).tuples()]
            if not rows:
                return total
            await db.execute(delete(Artifact).where(Artifact.id.in_([r[0] for r in rows])))
            keys = await artifact_rows.release(
                db, [sha for _id, sha, state in rows if state == artifact_rows.AVAILABLE]
            )
            await db.commit()
        await _drop_bytes(artifacts, keys)
        total += len(rows)


async def _unreferenced_blobs(
    store: Store, before: datetime, artifacts: ArtifactStore | None
) -> int:
    """``blobs`` rows older than ``before`` that no available artifact and no revision's
    tarball references."""
    referenced = exists().where(
        Artifact.sha256 == Blob.sha256, Artifact.state == artifact_rows.AVAILABLE
    )
    a_tarball = exists().where(Revision.tarball_key == Blob.storage_key)
    unused = (Blob.created_at < before, ~referenced, ~a_tarball)
    total = 0
    while True:
        async with store.sessions() as db:
            query = select(Blob.sha256).where(*unused).limit(CHUNK_ROWS)
            shas = list((await db.execute(query)).scalars())
            if not shas:
                return total
            gone = await db.execute(
                delete(Blob).where(Blob.sha256.in_(shas), *unused).returning(Blob.storage_key)
            )
            keys = [str(k) for k in gone.scalars()]
            await db.commit()
        await _drop_bytes(artifacts, keys)
        total += len(shas)


async def _expire_uploads(store: Store, now: datetime, artifacts: ArtifactStore | None) -> int:
    """Uploads past ``expires_at``: a multipart one's stored parts, a direct one's pending
    artifact and whatever reached its S3 staging key."""
    total = 0
    while True:
        async with store.sessions() as db:
            query = select(ArtifactUpload).where(ArtifactUpload.expires_at < now)
            rows = list((await db.execute(query.limit(CHUNK_ROWS))).scalars())
            if not rows:
                return total
            pending = [r.artifact_id for r in rows if r.kind == "direct" and r.artifact_id]
            if pending:
                await db.execute(
                    delete(Artifact).where(
                        Artifact.id.in_(pending), Artifact.state == artifact_rows.PENDING
                    )
                )
            await db.execute(
                delete(ArtifactUpload).where(ArtifactUpload.id.in_([r.id for r in rows]))
            )
            await db.commit()
        if artifacts is not None:
            await asyncio.to_thread(_forget_uploads, artifacts, rows)
        total += len(rows)


def _forget_uploads(artifacts: ArtifactStore, rows: list[ArtifactUpload]) -> None:
    """The store's side of expired uploads (blocking: a thread's job); failures are logged."""
    for row in rows:
        try:
            if row.kind == "multipart":
                handle = MultipartUpload(key=row.storage_key or "", backend_id=row.backend_id or "")
                artifacts.abort_multipart(handle)
            elif row.storage_key and row.state != "done":
                artifacts.delete(row.storage_key)
        except Exception:
            log.exception("retention: could not discard upload %s in the artifact store", row.id)


def _old_temp_files(artifacts: ArtifactStore, before: float) -> None:
    """Partial files of the local store last written before ``before`` (a crashed upload)."""
    root = Path(artifacts.config.root)
    for path in [*(root / "tmp").glob("*"), *(root / "multipart").rglob("*.tmp")]:
        try:
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
        except OSError:
            log.warning("retention: could not remove %s", path)
