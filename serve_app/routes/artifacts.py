"""Artifacts: raw, direct and multipart uploads, listing, ranged downloads, delete
(docs/llms-full.md, "Artifacts").

Bodies stream to the store and downloads stream from it (``computalot.artifacts.bridge``): the
replica holds a few MiB per transfer whatever the size.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from computalot.artifacts import bridge, service, uploads
from computalot.artifacts.store import ArtifactStore, open_store
from computalot.errors import NotFound, RangeNotSatisfiable, field_error
from computalot.schemas.accounts import Strict
from serve_app.deps import AppSettings, Caller, Db, TaskOrCaller, TaskOrWriter, Writer
from serve_app.routes.docs import base_url
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"], route_class=StrictJSONRoute)

SHA256 = r"^[0-9a-fA-F]{64}$"
FILENAME_BAD = re.compile(r"[\x00-\x1f\x7f]")
#: Content types a client sends by default for a raw body (curl --data-binary); the filename's
#: type is a better guess then.
GENERIC_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _store(request: Request) -> ArtifactStore:
    return open_store(request.app.state.settings)


def _filename(value: str | None, loc: list[str | int]) -> str:
    name = (value or "artifact").strip()
    if not name or len(name) > 1024 or FILENAME_BAD.search(name):
        raise field_error(loc, "1 to 1024 characters, no control characters")
    return name


def _content_type(value: str | None) -> str | None:
    if not value or value.split(";")[0].strip().lower() in GENERIC_TYPES:
        return None
    return value


class DirectBody(Strict):
    sha256: str = Field(pattern=SHA256)
    size: int = Field(ge=0)
    filename: str = Field(min_length=1, max_length=1024)
    content_type: str | None = Field(default=None, max_length=255)


class MultipartBody(Strict):
    filename: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=1)
    sha256: str | None = Field(default=None, pattern=SHA256)
    part_size: int | None = Field(default=None, ge=1)
    content_type: str | None = Field(default=None, max_length=255)


class CompleteBody(Strict):
    upload_id: str = Field(min_length=1, max_length=64)


@router.post("", status_code=201)
async def upload_artifact(
    request: Request,
    caller: TaskOrWriter,
    db: Db,
    settings: AppSettings,
    x_artifact_filename: Annotated[str | None, Header()] = None,
    x_artifact_sha256: Annotated[str | None, Header(pattern=SHA256)] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Raw body (``curl --data-binary @file -H 'X-Artifact-Filename: file'``), up to
    ``max_artifact_bytes``; over it is 413 while the body streams."""
    filename = _filename(x_artifact_filename, ["header", "X-Artifact-Filename"])
    store = _store(request)
    await db.commit()

    def write(chunks: Any) -> Any:
        with store.writer(max_bytes=settings.max_artifact_bytes) as out:
            out.write_all(chunks)
            return out.commit(expect_sha256=x_artifact_sha256)

    blob = await bridge.consume(request.stream(), write)
    try:
        art = await service.create_artifact(
            db, store, caller.account_id, blob, filename, _content_type(content_type)
        )
        await db.commit()
    except BaseException:
        await bridge.run(store.delete, blob.key)
        raise
    return service.artifact_out(art)


@router.post("/direct", status_code=201)
async def begin_direct(
    body: DirectBody, request: Request, caller: TaskOrWriter, db: Db, settings: AppSettings
) -> dict[str, Any]:
    return await uploads.begin_direct(
        db,
        _store(request),
        settings,
        caller.account_id,
        sha256=body.sha256.lower(),
        size=body.size,
        filename=_filename(body.filename, ["body", "filename"]),
        content_type=body.content_type,
        base_url=base_url(request),
    )


@router.put("/direct/{token}", status_code=201)
async def put_direct(token: str, request: Request, db: Db, settings: AppSettings) -> dict[str, Any]:
    """The signed URL of a direct upload (local store): no bearer token, the URL is the
    credential; single-use, and it expires."""
    return await uploads.receive_direct(db, _store(request), settings, token, request.stream())


@router.post("/direct/{artifact_id}/complete")
async def complete_direct(
    artifact_id: str, request: Request, caller: TaskOrWriter, db: Db
) -> dict[str, Any]:
    return await uploads.complete_direct(db, _store(request), caller.account_id, artifact_id)


@router.post("/multipart", status_code=201)
async def begin_multipart(
    body: MultipartBody, request: Request, caller: TaskOrWriter, db: Db, settings: AppSettings
) -> dict[str, Any]:
    return await uploads.begin_multipart(
        db,
        _store(request),
        settings,
        caller.account_id,
        filename=_filename(body.filename, ["body", "filename"]),
        size=body.size,
        sha256=body.sha256.lower() if body.sha256 else None,
        part_size=body.part_size,
        content_type=body.content_type,
    )


@router.post("/multipart/complete")
async def complete_multipart(
    body: CompleteBody, request: Request, caller: TaskOrWriter, db: Db
) -> dict[str, Any]:
    return await uploads.complete_multipart(db, _store(request), caller.account_id, body.upload_id)


@router.put("/multipart/{upload_id}/parts/{n}")
async def put_part(
    upload_id: str, n: int, request: Request, caller: TaskOrWriter, db: Db
) -> dict[str, Any]:
    return await uploads.put_part(
        db, _store(request), caller.account_id, upload_id, n, request.stream()
    )


@router.get("/multipart/{upload_id}")
async def multipart_status(upload_id: str, caller: TaskOrCaller, db: Db) -> dict[str, Any]:
    return await uploads.multipart_status(db, caller.account_id, upload_id)


@router.get("")
async def list_artifacts(
    caller: Caller,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    rows, next_cursor = await service.list_artifacts(
        db, caller.account_id, limit=limit, cursor=cursor
    )
    return {"artifacts": [service.artifact_out(a) for a in rows], "next_cursor": next_cursor}


@router.get("/{artifact_id}/meta")
async def artifact_meta(artifact_id: str, caller: Caller, db: Db) -> dict[str, Any]:
    return service.artifact_out(await service.get_artifact(db, caller.account_id, artifact_id))


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """``(start, end exclusive)`` of a single ``bytes=`` range; None to send the whole file
    (no header, or one we do not read: several ranges, another unit); False when the range
    lies outside the file (416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first + last).isascii() or len(first + last) > 40:
        return None
    if not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # the last N bytes
        n = int(last)
        return (max(0, size - n), size) if n > 0 and size > 0 else False
    start = int(first)
    if last and (not last.isdigit() or int(last) < start):
        return None  # not a valid range: ignored, as RFC 9110 says
    end = min(size, int(last) + 1) if last else size
    if start >= size:
        return False
    return start, end


@router.get("/{artifact_id}")
async def download_artifact(
    artifact_id: str,
    request: Request,
    caller: Caller,
    db: Db,
    range: Annotated[str | None, Header()] = None,
) -> Response:
    """The bytes, streamed; ``Range: bytes=a-b`` answers 206, a range outside the file 416."""
    art = await service.get_artifact(db, caller.account_id, artifact_id, available=True)
    key, size, sha = art.storage_key or "", art.size, art.sha256 or ""
    headers = {
        "ETag": f'"{sha}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(art.filename, safe='')}",
    }
    content_type = art.content_type or "application/octet-stream"
    await db.commit()
    wanted = parse_range(range, size)
    if wanted is False:
        raise RangeNotSatisfiable(
            f"Range {range!r} lies outside the {size} bytes of {artifact_id}",
            details=[{"loc": ["header", "Range"], "msg": f"the file has {size} bytes"}],
            headers={"Content-Range": f"bytes */{size}"},
        )
    start, end = wanted if isinstance(wanted, tuple) else (0, size)
    store = _store(request)
    try:
        chunks = await bridge.run(store.read, key, start, end)
    except FileNotFoundError:
        raise NotFound(
            f"the bytes of artifact {artifact_id} are missing from the store",
            recommended_action="upload the artifact again; report this via POST /api/v1/feedback",
        ) from None
    headers["Content-Length"] = str(end - start)
    status = 200
    if isinstance(wanted, tuple):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(
        bridge.produce(chunks), status_code=status, headers=headers, media_type=content_type
    )


@router.delete("/{artifact_id}")
async def delete_artifact(
    artifact_id: str, request: Request, caller: Writer, db: Db
) -> dict[str, Any]:
    art = await service.get_artifact(db, caller.account_id, artifact_id)
    keys = await service.delete_artifact(db, art)
    await uploads.forget_direct(db, artifact_id)
    await db.commit()
    await service.drop_keys(_store(request), keys)
    return {"deleted": True, "id": artifact_id}
