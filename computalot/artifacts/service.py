"""Artifact rows: the ``art_`` ids, owners and names given to bytes in the store.

Every function takes the caller's session and leaves the commit to it. Bytes are counted in
the ``blobs`` table (sha256 -> the one store key that keeps them, and how many artifact rows
reference it): :func:`create_artifact` adds a reference (and drops a second copy of bytes the
store already has), :func:`delete_artifact` and :func:`release` remove one and answer the keys
whose last reference went, to delete from the store *after* the commit (:func:`drop_keys`).
Another account's artifact is 404, never 403 (docs/llms-full.md, "Artifacts").
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts import bridge
from computalot.artifacts.store import ArtifactStore
from computalot.artifacts.store import Blob as StoredBlob
from computalot.errors import Conflict, NotFound
from computalot.ids import new_id
from computalot.store.models import Artifact, Blob
from computalot.store.paging import newest_first
from computalot.timeutil import iso, utcnow

log = logging.getLogger("computalot.artifacts")

AVAILABLE = "available"
PENDING = "pending"
MAX_PAGE = 1000


def artifact_out(art: Artifact) -> dict[str, Any]:
    """The public view of an artifact (docs/llms-full.md, "Artifacts")."""
    out: dict[str, Any] = {
        "id": art.id,
        "filename": art.filename,
        "size": art.size,
        "sha256": art.sha256,
        "content_type": art.content_type,
        "created_at": iso(art.created_at),
        "state": art.state,
    }
    if art.job_id:
        out["job_id"] = art.job_id
        out["task_id"] = art.task_id
    return out


def guess_type(filename: str, given: str | None = None) -> str:
    if given and given.strip():
        return given.strip()[:255]
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def insert_for(db: AsyncSession) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_…``) for ``db``'s backend."""
    return (postgresql if db.get_bind().dialect.name == "postgresql" else sqlite).insert


async def add_reference(db: AsyncSession, blob: StoredBlob) -> str:
    """Count one more reference to ``blob``'s bytes; answer the key that keeps them (an
    existing copy's key when the store already had these bytes, else ``blob.key``)."""
    for _ in range(5):
        bumped = await db.execute(
            update(Blob)
            .where(Blob.sha256 == blob.sha256, Blob.refs > 0)
            .values(refs=Blob.refs + 1)
            .returning(Blob.storage_key)
        )
        key = bumped.scalar_one_or_none()
        if key is not None:
            return str(key)
        added = await db.execute(
            insert_for(db)(Blob)
            .values(
                sha256=blob.sha256,
                storage_key=blob.key,
                size=blob.size,
                refs=1,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(Blob.storage_key)
        )
        if added.scalar_one_or_none() is not None:
            return blob.key
    raise Conflict("the artifact store is busy with these bytes; retry")


async def create_artifact(
    db: AsyncSession,
    store: ArtifactStore,
    account_id: str,
    blob: StoredBlob,
    filename: str,
    content_type: str | None = None,
    *,
    job_id: str | None = None,
    task_id: str | None = None,
    artifact_id: str | None = None,
) -> Artifact:
    """An available artifact row of ``account_id`` for bytes just written to ``store``. When
    the store already had the same bytes, the new copy is deleted at once (nothing references
    it) and the row points at the old one."""
    key = await add_reference(db, blob)
    if key != blob.key:
        await bridge.run(store.delete, blob.key)
    art = Artifact(
        id=artifact_id or new_id("art"),
        account_id=account_id,
        job_id=job_id,
        task_id=task_id,
        filename=filename,
        size=blob.size,
        sha256=blob.sha256,
        content_type=guess_type(filename, content_type),
        state=AVAILABLE,
        storage_key=key,
        created_at=utcnow(),
    )
    db.add(art)
    await db.flush()
    return art


def _not_found(artifact_id: str) -> NotFound:
    return NotFound(
        f"artifact {artifact_id} not found",
        details=[{"loc": ["path", "artifact_id"], "msg": "no such artifact in your account"}],
        recommended_action="list your artifacts with GET /api/v1/artifacts",
    )


async def get_artifact(
    db: AsyncSession, account_id: str, artifact_id: str, *, available: bool = False
) -> Artifact:
    """The account's artifact, or 404 (also for another account's id). ``available``: an
    artifact whose bytes have not arrived yet (a direct upload) is 409."""
    art = await db.get(Artifact, artifact_id) if artifact_id.startswith("art_") else None
    if art is None or art.account_id != account_id:
        raise _not_found(artifact_id)
    if available and art.state != AVAILABLE:
        raise Conflict(
            f"artifact {artifact_id} is {art.state}: its bytes have not arrived",
            details=[{"loc": ["path", "artifact_id"], "msg": f"state is {art.state}"}],
            recommended_action="PUT the bytes to the upload_url of POST /api/v1/artifacts/direct, "
            "then POST /api/v1/artifacts/direct/{artifact_id}/complete",
        )
    return art


async def owned_ids(db: AsyncSession, account_id: str, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are available artifacts of ``account_id`` (to check payload refs)."""
    wanted = {i for i in ids if isinstance(i, str) and i.startswith("art_")}
    if not wanted:
        return set()
    rows = await db.execute(
        select(Artifact.id).where(
            Artifact.id.in_(wanted),
            Artifact.account_id == account_id,
            Artifact.state == AVAILABLE,
        )
    )
    return set(rows.scalars())


async def list_artifacts(
    db: AsyncSession, account_id: str, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Artifact], str | None]:
    """Newest first, ``limit`` per page, and the cursor of the next page (None at the end)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Artifact).where(Artifact.account_id == account_id)
    return await newest_first(db, Artifact, query, limit=limit, cursor=cursor)


async def release(db: AsyncSession, shas: Iterable[str | None]) -> list[str]:
    """Drop one reference per sha256 in ``shas`` (repeats count); answer the store keys whose
    last reference went (their ``blobs`` rows are gone: delete the keys after the commit)."""
    counts: dict[str, int] = {}
    for sha in shas:
        if sha:
            counts[sha] = counts.get(sha, 0) + 1
    gone: list[str] = []
    for sha, n in counts.items():
        left = await db.execute(
            update(Blob)
            .where(Blob.sha256 == sha)
            .values(refs=Blob.refs - n)
            .returning(Blob.refs, Blob.storage_key)
        )
        row = left.one_or_none()
        if row is not None and row[0] <= 0:
            await db.execute(delete(Blob).where(Blob.sha256 == sha, Blob.refs <= 0))
            gone.append(str(row[1]))
    return gone


async def delete_artifact(db: AsyncSession, art: Artifact) -> list[str]:
    """Remove the row; answer the store keys to delete after the commit (:func:`drop_keys`)."""
    await db.execute(delete(Artifact).where(Artifact.id == art.id))
    if art.state != AVAILABLE:
        return []
    return await release(db, [art.sha256])


async def drop_keys(store: ArtifactStore, keys: Iterable[str]) -> None:
    """Delete bytes nothing references any more; a failure is logged (the next sweep of
    unreferenced bytes is not needed: the row is already gone, so the bytes are only space)."""
    for key in keys:
        try:
            await bridge.run(store.delete, key)
        except Exception:
            log.exception("could not delete artifact bytes %s", key)
