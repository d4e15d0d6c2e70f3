"""What the blocking and the asyncio SDK clients share (docs/python-sdk.md): settings, headers,
upload and download helpers."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from httpx_sse import SSEError

from computalot.sdk.base import (
    API,
    RETRY_STATUSES,
    STREAM_READ_TIMEOUT_S,
    Req,
    RetryPolicy,
    connection_error,
    resolve_token,
    resolve_url,
)
from computalot.sdk.endpoints import Progress
from computalot.sdk.errors import ApiError, error_from_response

JsonDict = dict[str, Any]


#: Bytes per read when streaming a file up or an answer down.
TRANSFER_CHUNK = 1024 * 1024


def _upload_target(req: Req, path: str | os.PathLike[str]) -> tuple[dict[str, Any], bool]:
    """``req``'s request arguments with the file's length set, and whether the URL lies
    outside the API (an S3 presigned URL: sent without the bearer token)."""
    kwargs = req.kwargs()
    headers = dict(kwargs.pop("headers", None) or {})
    headers["Content-Length"] = str(os.path.getsize(path))
    kwargs["headers"] = headers
    return kwargs, str(kwargs["url"]).startswith(("http://", "https://"))


def _file_chunks(path: str | os.PathLike[str], progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as src:
        while chunk := src.read(TRANSFER_CHUNK):
            if progress is not None:
                progress(len(chunk))
            yield chunk


def _downloaded(
    response: httpx.Response, path: str | os.PathLike[str], sha: Any, size: int
) -> JsonDict:
    digest = sha.hexdigest()
    etag = response.headers.get("etag", "").strip('"')
    if etag and len(etag) == 64 and etag != digest:
        raise ApiError(
            f"downloaded bytes have sha256 {digest}, the server promised {etag}",
            code="bad_download",
            recommended_action="download again",
        )
    return {"path": os.fspath(path), "size": size, "sha256": digest}


def _not_a_stream(exc: SSEError) -> ApiError:
    return ApiError(str(exc), code="bad_stream", recommended_action="check --url points at the API")


class _Common:
    """Construction shared by both clients: URL/token defaults and per-stream settings."""

    stream_retries = 3  # reconnects in a row without a new event before giving up
    stream_retry_delay = 0.5  # seconds, times the number of failures so far

    def __init__(
        self,
        controller_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
    ) -> None:
        self.controller_url = resolve_url(controller_url)
        self.token = resolve_token(token)
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries=max_retries, backoff_s=retry_backoff)
        self._stream_timeout = httpx.Timeout(timeout, read=max(timeout, STREAM_READ_TIMEOUT_S))

    def _retry_after(self, req: Req, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before sending ``req`` again, or None to keep this answer."""
        if response.status_code not in RETRY_STATUSES:
            return None
        error = error_from_response(response)
        return self.retry.delay(attempt, error) if self.retry.again(req, attempt, error) else None

    def _retry_lost(self, req: Req, attempt: int, exc: httpx.TransportError) -> float:
        """Seconds to wait before sending ``req`` again after no answer; raises if it is not."""
        error = connection_error(self.controller_url, exc)
        if not self.retry.again(req, attempt, error):
            raise error from exc
        return self.retry.delay(attempt, error)

    def _watch_args(self, ids: Iterable[str]) -> tuple[str, dict[str, str], frozenset[str]]:
        wanted = [str(i) for i in ids]
        if not wanted:
            raise ValueError("watch needs at least one job id")
        return f"{API}/jobs/watch", {"ids": ",".join(wanted)}, frozenset(wanted)
