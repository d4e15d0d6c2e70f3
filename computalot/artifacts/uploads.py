"""Uploads that do not fit one request: resumable multipart, and direct (URL) uploads.

Multipart (``upl_`` ids): the client declares the size (and optionally the sha256), sends parts
``1..part_count`` in any order, as often as it likes (a part sent again replaces the old one),
asks which have arrived after a dropped connection, and completes; the store joins them (S3
multipart underneath on S3). Direct: the API hands out a URL the bytes go to (S3's presigned
PUT, or a signed, expiring, single-use URL on the API for the local store); the artifact stays
``pending`` until bytes with the promised sha256 and size have arrived.

No database transaction stays open while bytes stream: the row is read (or claimed with a
compare-and-set) and committed first, and the result is written in a new transaction.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import math
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts import bridge, service
from computalot.artifacts.store import ArtifactStore, MultipartUpload, PartInfo, too_large
from computalot.errors import BadRequest, Conflict, Forbidden, NotFound, field_error
from computalot.ids import new_id
from computalot.private_files import FILE_MODE, make_private_dirs
from computalot.settings import GiB, MiB, Settings
from computalot.store.models import Artifact, ArtifactUpload, ArtifactUploadPart
from computalot.timeutil import iso, utcnow

DEFAULT_PART_BYTES = 64 * MiB
#: S3's floor for every part but the last, kept on both backends so an upload is portable.
MIN_PART_BYTES = 5 * MiB
MAX_PART_BYTES = 1 * GiB
MAX_PARTS = 10_000
MULTIPART_TTL = timedelta(hours=24)

OPEN, BUSY, DONE = "open", "busy", "done"


@dataclass(frozen=True)
class UploadView:
    """What streaming needs of an upload row, read before the transaction ends."""

    id: str
    size: int
    sha256: str | None
    part_size: int
    part_count: int
    storage_key: str | None
    backend_id: str | None
    artifact_id: str | None
    filename: str
    content_type: str | None

    @classmethod
    def of(cls, row: ArtifactUpload) -> UploadView:
        return cls(
            row.id,
            row.size,
            row.sha256,
            row.part_size,
            row.part_count,
            row.storage_key,
            row.backend_id,
            row.artifact_id,
            row.filename,
            row.content_type,
        )

    @property
    def multipart(self) -> MultipartUpload:
        return MultipartUpload(key=self.storage_key or "", backend_id=self.backend_id or "")

    def part_bytes(self, n: int) -> int:
        return self.part_size if n < self.part_count else self.size - self.part_size * (n - 1)


async def _claim(db: AsyncSession, upload_id: str, frm: str, to: str) -> bool:
    moved = await db.execute(
        update(ArtifactUpload)
        .where(ArtifactUpload.id == upload_id, ArtifactUpload.state == frm)
        .values(state=to)
    )
    return bool(getattr(moved, "rowcount", 0))


async def _set_state(db: AsyncSession, upload_id: str, state: str) -> None:
    await db.execute(
        update(ArtifactUpload).where(ArtifactUpload.id == upload_id).values(state=state)
    )
    await db.commit()


def check_size(size: int, settings: Settings) -> None:
    if size > settings.max_artifact_bytes:
        exc = too_large(settings.max_artifact_bytes)
        exc.details = [{"loc": ["body", "size"], "msg": exc.details[0]["msg"]}]
        raise exc


# --- multipart ---------------------------------------------------------------------------


async def begin_multipart(
    db: AsyncSession,
    store: ArtifactStore,
    settings: Settings,
    account_id: str,
    *,
    filename: str,
    size: int,
    sha256: str | None,
    part_size: int | None,
    content_type: str | None,
) -> dict[str, Any]:
    check_size(size, settings)
    part = part_size or max(DEFAULT_PART_BYTES, math.ceil(size / MAX_PARTS))
    if not MIN_PART_BYTES <= part <= MAX_PART_BYTES:
        raise field_error(
            ["body", "part_size"], f"must be between {MIN_PART_BYTES} and {MAX_PART_BYTES} bytes"
        )
    count = max(1, math.ceil(size / part))
    if count > MAX_PARTS:
        raise field_error(["body", "part_size"], f"gives {count} parts; at most {MAX_PARTS}")
    handle = await bridge.run(store.begin_multipart)
    now = utcnow()
    row = ArtifactUpload(
        id=new_id("upl"),
        account_id=account_id,
        kind="multipart",
        state=OPEN,
        filename=filename,
        content_type=content_type,
        size=size,
        sha256=sha256,
        part_size=part,
        part_count=count,
        storage_key=handle.key,
        backend_id=handle.backend_id,
        created_at=now,
        expires_at=now + MULTIPART_TTL,
    )
    db.add(row)
    await db.commit()
    return {
        "upload_id": row.id,
        "part_size": part,
        "part_count": count,
        "size": size,
        "expires_at": iso(row.expires_at),
    }


async def _upload(db: AsyncSession, account_id: str, upload_id: str, kind: str) -> ArtifactUpload:
    row = await db.get(ArtifactUpload, upload_id) if upload_id.startswith("upl_") else None
    if row is None or row.account_id != account_id or row.kind != kind:
        raise NotFound(
            f"upload {upload_id} not found",
            details=[{"loc": ["upload_id"], "msg": "no such upload in your account"}],
            recommended_action="start one with POST /api/v1/artifacts/multipart",
        )
    if row.expires_at <= utcnow():
        raise Conflict(
            f"upload {upload_id} expired at {iso(row.expires_at)}",
            details=[{"loc": ["upload_id"], "msg": "expired"}],
            recommended_action="start a new upload with POST /api/v1/artifacts/multipart",
        )
    return row


async def _parts(db: AsyncSession, upload_id: str) -> list[ArtifactUploadPart]:
    rows = await db.execute(
        select(ArtifactUploadPart)
        .where(ArtifactUploadPart.upload_id == upload_id)
        .order_by(ArtifactUploadPart.n)
    )
    return list(rows.scalars())


async def put_part(
    db: AsyncSession,
    store: ArtifactStore,
    account_id: str,
    upload_id: str,
    n: int,
    body: AsyncIterator[bytes],
) -> dict[str, Any]:
    row = await _upload(db, account_id, upload_id, "multipart")
    view = UploadView.of(row)
    if row.state != OPEN:
        raise Conflict(f"upload {upload_id} is {row.state}", details=[{"loc": ["upload_id"]}])
    if not 1 <= n <= view.part_count:
        raise BadRequest(
            f"part number {n} is out of range 1..{view.part_count}",
            details=[{"loc": ["path", "n"], "msg": f"must be 1..{view.part_count}"}],
            recommended_action="number parts from 1 to part_count",
        )
    await db.commit()  # no transaction stays open while the part streams
    expected = view.part_bytes(n)
    info: PartInfo = await bridge.consume(
        body, lambda chunks: store.put_part(view.multipart, n, chunks, expected)
    )
    if info.size != expected:
        msg = f"part {n} must be {expected} bytes, got {info.size}"
        raise BadRequest(msg, details=[{"loc": ["body"], "msg": msg}])
    still_open = await db.execute(
        select(ArtifactUpload.id)
        .where(ArtifactUpload.id == upload_id, ArtifactUpload.state == OPEN)
        .with_for_update()
    )
    if still_open.scalar_one_or_none() is None:
        await db.rollback()
        raise Conflict(
            f"upload {upload_id} was completed or discarded while part {n} arrived",
            details=[{"loc": ["upload_id"], "msg": "no longer open"}],
            recommended_action="GET the upload (404 once it is gone) before sending more parts",
        )
    values = {
        "upload_id": upload_id,
        "n": n,
        "sha256": info.sha256,
        "size": info.size,
        "etag": info.etag or None,
        "created_at": utcnow(),
    }
    # The same part sent twice at once: the last one stored wins, each row once.
    await db.execute(
        service.insert_for(db)(ArtifactUploadPart)
        .values(**values)
        .on_conflict_do_update(
            index_elements=["upload_id", "n"],
            set_={k: v for k, v in values.items() if k not in ("upload_id", "n")},
        )
    )
    await db.commit()
    return {"n": n, "sha256": info.sha256, "size": info.size}


async def multipart_status(db: AsyncSession, account_id: str, upload_id: str) -> dict[str, Any]:
    row = await _upload(db, account_id, upload_id, "multipart")
    parts = await _parts(db, upload_id)
    have = {p.n for p in parts}
    return {
        "upload_id": row.id,
        "filename": row.filename,
        "size": row.size,
        "sha256": row.sha256,
        "part_size": row.part_size,
        "part_count": row.part_count,
        "state": row.state,
        "parts": [{"n": p.n, "sha256": p.sha256, "size": p.size} for p in parts],
        "missing": [n for n in range(1, row.part_count + 1) if n not in have],
        "expires_at": iso(row.expires_at),
    }


async def complete_multipart(
    db: AsyncSession, store: ArtifactStore, account_id: str, upload_id: str
) -> dict[str, Any]:
    row = await _upload(db, account_id, upload_id, "multipart")
    view = UploadView.of(row)
    if not await _claim(db, upload_id, OPEN, BUSY):
        raise Conflict(f"upload {upload_id} is already being completed")
    parts = await _parts(db, upload_id)
    missing = sorted(set(range(1, view.part_count + 1)) - {p.n for p in parts})
    if missing:
        await db.rollback()
        shown = ", ".join(str(n) for n in missing[:50]) + (" …" if len(missing) > 50 else "")
        raise Conflict(
            f"parts {shown} of {view.part_count} have not arrived",
            details=[{"loc": ["parts", n], "msg": "missing"} for n in missing[:1000]],
            recommended_action="PUT the missing parts (GET the upload to see them), then "
            "complete again",
        )
    infos = [PartInfo(p.n, p.sha256, p.size, p.etag or "") for p in parts]
    await db.commit()
    try:
        blob = await bridge.run(store.complete, view.multipart, infos, view.sha256, view.size)
    except BaseException:
        with contextlib.suppress(Exception):
            await bridge.run(store.abort_multipart, view.multipart)
        await db.execute(delete(ArtifactUpload).where(ArtifactUpload.id == upload_id))
        await db.commit()
        raise
    art = await service.create_artifact(
        db, store, account_id, blob, view.filename, view.content_type
    )
    await db.execute(delete(ArtifactUpload).where(ArtifactUpload.id == upload_id))
    await db.commit()
    return service.artifact_out(art)


# --- direct ------------------------------------------------------------------------------


def _url_key(settings: Settings) -> bytes:
    """The HMAC key of direct-upload URLs, kept (0600) in the data dir and shared by replicas."""
    path = make_private_dirs(settings.data_dir.resolve()) / "artifact_url.key"
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
    key = Path(path).read_bytes()
    if len(key) < 32:  # written meanwhile by another replica; read again once it is whole
        key = Path(path).read_bytes()
    return key


def _sign(settings: Settings, text: str) -> str:
    mac = hmac.new(_url_key(settings), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _forbidden(msg: str) -> Forbidden:
    return Forbidden(
        msg,
        details=[{"loc": ["path", "token"], "msg": msg}],
        recommended_action="ask for a new URL with POST /api/v1/artifacts/direct",
    )


async def begin_direct(
    db: AsyncSession,
    store: ArtifactStore,
    settings: Settings,
    account_id: str,
    *,
    sha256: str,
    size: int,
    filename: str,
    content_type: str | None,
    base_url: str,
) -> dict[str, Any]:
    check_size(size, settings)
    now = utcnow()
    ttl = settings.artifact_direct_ttl_s
    expires = now + timedelta(seconds=ttl)
    art = Artifact(
        id=new_id("art"),
        account_id=account_id,
        filename=filename,
        size=size,
        sha256=sha256,
        content_type=service.guess_type(filename, content_type),
        state=service.PENDING,
        created_at=now,
    )
    upload = ArtifactUpload(
        id=new_id("upl"),
        account_id=account_id,
        kind="direct",
        state=OPEN,
        artifact_id=art.id,
        filename=filename,
        content_type=art.content_type,
        size=size,
        sha256=sha256,
        part_size=size,
        part_count=1,
        created_at=now,
        expires_at=expires,
    )
    presigned = await bridge.run(store.presigned_put, sha256, size, ttl)
    if presigned is not None:
        upload.storage_key, url, headers = presigned
    else:
        stamp = int(expires.timestamp())
        token = f"{upload.id}.{stamp}.{_sign(settings, f'{upload.id}.{stamp}')}"
        url = f"{base_url.rstrip('/')}/api/v1/artifacts/direct/{token}"
        headers = {"Content-Type": "application/octet-stream"}
    db.add_all([art, upload])
    await db.commit()
    return {
        "artifact_id": art.id,
        "upload_id": upload.id,
        "upload_url": url,
        "method": "PUT",
        "headers": headers,
        "expires_at": iso(expires),
        "complete_url": f"/api/v1/artifacts/direct/{art.id}/complete",
    }


async def receive_direct(
    db: AsyncSession,
    store: ArtifactStore,
    settings: Settings,
    token: str,
    body: AsyncIterator[bytes],
) -> dict[str, Any]:
    """The bytes of a local direct upload, PUT to its signed URL by anyone holding it."""
    upload_id, _, rest = token.partition(".")
    stamp, _, sig = rest.partition(".")
    well_formed = stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 and sig.isascii()
    if not (well_formed and hmac.compare_digest(sig, _sign(settings, f"{upload_id}.{stamp}"))):
        raise _forbidden("this upload URL is not valid")
    if int(stamp) <= utcnow().timestamp():
        raise _forbidden("this upload URL has expired")
    row = await db.get(ArtifactUpload, upload_id)
    if row is None or row.kind != "direct":
        raise _forbidden("this upload URL was used already")
    view = UploadView.of(row)
    account_id = row.account_id
    if not await _claim(db, upload_id, OPEN, BUSY):
        raise _forbidden("this upload URL was used already")
    await db.commit()

    def write(chunks: Any) -> Any:
        with store.writer(max_bytes=view.size) as out:
            out.write_all(chunks)
            return out.commit(view.sha256, view.size)

    try:
        blob = await bridge.consume(body, write)
    except BaseException:
        await _set_state(db, upload_id, OPEN)  # the URL may be tried again until it expires
        raise
    return await _publish_direct(db, store, account_id, view, blob)


async def _publish_direct(
    db: AsyncSession, store: ArtifactStore, account_id: str, view: UploadView, blob: Any
) -> dict[str, Any]:
    art = await db.get(Artifact, view.artifact_id or "")
    if art is None:  # deleted while its bytes were on their way
        await db.execute(delete(ArtifactUpload).where(ArtifactUpload.id == view.id))
        await db.commit()
        await bridge.run(store.delete, blob.key)
        raise NotFound(f"artifact {view.artifact_id} was deleted during the upload")
    key = await service.add_reference(db, blob)
    if key != blob.key:
        await bridge.run(store.delete, blob.key)
    art.storage_key = key
    art.state = service.AVAILABLE
    await db.execute(update(ArtifactUpload).where(ArtifactUpload.id == view.id).values(state=DONE))
    await db.commit()
    return service.artifact_out(art)


async def complete_direct(
    db: AsyncSession, store: ArtifactStore, account_id: str, artifact_id: str
) -> dict[str, Any]:
    """Publish a direct upload's bytes once they have arrived (S3); the artifact if already."""
    art = await service.get_artifact(db, account_id, artifact_id)
    if art.state == service.AVAILABLE:
        return service.artifact_out(art)
    row = (
        await db.execute(select(ArtifactUpload).where(ArtifactUpload.artifact_id == artifact_id))
    ).scalar_one_or_none()
    if row is None or row.storage_key is None:
        raise Conflict(
            f"artifact {artifact_id} has not received its bytes",
            details=[{"loc": ["path", "artifact_id"], "msg": "pending"}],
            recommended_action="PUT the bytes to the upload_url you were given",
        )
    view = UploadView.of(row)
    if not await _claim(db, view.id, OPEN, BUSY):
        raise Conflict(f"artifact {artifact_id} is being completed already")
    await db.commit()
    try:
        blob = await bridge.run(
            store.finish_direct, view.storage_key or "", view.sha256 or "", view.size
        )
    except FileNotFoundError:
        await _set_state(db, view.id, OPEN)
        raise Conflict(
            f"artifact {artifact_id}: no bytes have arrived at its upload URL yet",
            details=[{"loc": ["path", "artifact_id"], "msg": "pending"}],
            recommended_action="PUT the bytes to the upload_url you were given, then retry",
        ) from None
    except BaseException:
        await _set_state(db, view.id, OPEN)
        raise
    return await _publish_direct(db, store, account_id, view, blob)


async def forget_direct(db: AsyncSession, artifact_id: str) -> None:
    """Drop the direct upload of a deleted artifact (its URL then answers 403)."""
    await db.execute(delete(ArtifactUpload).where(ArtifactUpload.artifact_id == artifact_id))
