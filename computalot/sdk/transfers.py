"""File pieces for resumable multipart uploads (docs/python-sdk.md, "Artifacts").

``upload_artifact_resumable`` starts (or, given an ``upload_id``, resumes) a multipart upload:
it asks the server which parts are missing, sends only those, then completes. Each part is a
PUT, so the client's retry policy resends it after a dropped connection; a run that gives up
leaves the parts it sent on the server, and a later call with the same ``upload_id`` finishes
the upload without sending them again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from computalot.sdk.errors import ApiError

#: Bytes per read when hashing a file.
HASH_CHUNK = 1024 * 1024


def file_sha256(path: str | os.PathLike[str]) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(HASH_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def read_part(path: str | os.PathLike[str], n: int, part_size: int) -> bytes:
    """Part ``n`` (1-based) of the file: ``part_size`` bytes, fewer for the last one."""
    with open(path, "rb") as src:
        src.seek((n - 1) * part_size)
        return src.read(part_size)


@dataclass
class MultipartPlan:
    """Which parts of ``upload_id`` still have to be sent, and how many bytes already arrived."""

    upload_id: str
    part_size: int
    missing: list[int]
    sent_bytes: int

    @classmethod
    def from_start(cls, started: dict[str, Any]) -> MultipartPlan:
        count = int(started["part_count"])
        return cls(str(started["upload_id"]), int(started["part_size"]), [*range(1, count + 1)], 0)

    @classmethod
    def from_status(cls, status: dict[str, Any], size: int) -> MultipartPlan:
        if int(status.get("size", size)) != size:
            raise ApiError(
                f"upload {status.get('upload_id')} is for {status.get('size')} bytes, "
                f"the file has {size}",
                code="upload_mismatch",
                recommended_action="resume with the file the upload was started for",
            )
        sent = sum(int(p.get("size") or 0) for p in status.get("parts") or [])
        missing = [int(n) for n in status.get("missing") or []]
        return cls(str(status["upload_id"]), int(status["part_size"]), missing, sent)


def with_upload_id(exc: ApiError, upload_id: str) -> ApiError:
    """Say in the error which upload to resume (``exc.upload_id``, and the action)."""
    exc.upload_id = upload_id
    exc.recommended_action = (
        f"resume with upload_artifact_resumable(path, upload_id={upload_id!r}) "
        f"(CLI: computalot artifacts upload PATH --resume {upload_id})"
    )
    return exc
