"""The asyncio SDK client, :class:`AsyncComputalotClient` (docs/python-sdk.md): the same methods as
:class:`computalot.sdk.client.ComputalotClient`, awaited."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from computalot.sdk.base import (
    API,
    TERMINAL_STATUSES,
    Req,
    StreamState,
    connection_error,
    decode_json,
    decode_text,
    default_headers,
    push_request,
    seg,
    tarball_bytes,
)
from computalot.sdk.common import (
    TRANSFER_CHUNK,
    JsonDict,
    _Common,
    _downloaded,
    _not_a_stream,
    _upload_target,
)
from computalot.sdk.endpoints import Endpoints, Progress
from computalot.sdk.errors import ApiError, PaymentRequired, error_from_response
from computalot.sdk.transfers import MultipartPlan, file_sha256, read_part, with_upload_id
from computalot.sdk.x402_pay import payment_signature, quote_id, unexpected_answer


class AsyncComputalotClient(_Common, Endpoints[Awaitable[JsonDict], Awaitable[str]]):
    """The asyncio twin of :class:`ComputalotClient`: the same methods, awaited."""

    def __init__(
        self,
        controller_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            controller_url,
            token,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
        )
        self._http = httpx.AsyncClient(
            base_url=self.controller_url,
            headers=default_headers(self.token),
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncComputalotClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, req: Req) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(**req.kwargs())
            except httpx.TransportError as exc:
                wait = self._retry_lost(req, attempt, exc)
            else:
                found = self._retry_after(req, attempt, response)
                if found is None:
                    return response
                wait = found
            await asyncio.sleep(wait)
            attempt += 1

    async def _call(self, req: Req) -> JsonDict:
        return decode_json(await self._send(req))

    async def _call_text(self, req: Req) -> str:
        return decode_text(await self._send(req))

    async def _call_upload(
        self, req: Req, path: str | os.PathLike[str], progress: Progress | None = None
    ) -> JsonDict:
        kwargs, outside = _upload_target(req, path)

        async def chunks() -> AsyncIterator[bytes]:
            src = await asyncio.to_thread(open, path, "rb")
            try:
                while chunk := await asyncio.to_thread(src.read, TRANSFER_CHUNK):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk
            finally:
                src.close()

        try:
            if outside:
                async with httpx.AsyncClient(timeout=self.timeout) as http:
                    return decode_json(await http.request(**kwargs, content=chunks()))
            return decode_json(await self._http.request(**kwargs, content=chunks()))
        except httpx.TransportError as exc:
            raise connection_error(self.controller_url, exc) from exc

    async def _call_download(
        self, req: Req, path: str | os.PathLike[str], progress: Progress | None = None
    ) -> JsonDict:
        sha = hashlib.sha256()
        size = 0
        try:
            async with self._http.stream(**req.kwargs()) as response:
                if not response.is_success:
                    await response.aread()
                    raise error_from_response(response)
                out = await asyncio.to_thread(open, path, "wb")
                try:
                    async for chunk in response.aiter_bytes(TRANSFER_CHUNK):
                        sha.update(chunk)
                        size += len(chunk)
                        await asyncio.to_thread(out.write, chunk)
                        if progress is not None:
                            progress(len(chunk))
                finally:
                    out.close()
        except httpx.TransportError as exc:
            raise connection_error(self.controller_url, exc) from exc
        return _downloaded(response, path, sha, size)

    async def push_project(
        self,
        name: str,
        path_or_tarball: str | os.PathLike[str] | bytes,
        exclude: Iterable[str] = (),
    ) -> JsonDict:
        """As the sync method; the directory is packed in a thread so the loop keeps running."""
        content = await asyncio.to_thread(tarball_bytes, path_or_tarball, exclude)
        return await self._call(push_request(name, content))

    async def topup(self, amount_usd: float, account: Any) -> JsonDict:
        """As the sync method: quote, sign over x402 with ``account``, pay; the receipt."""
        try:
            answer = await self.topup_quote(amount_usd)
        except PaymentRequired as refusal:
            signature = await asyncio.to_thread(payment_signature, refusal, account)
            return await self.pay_quote_x402(quote_id(refusal), signature)
        raise unexpected_answer(answer)

    async def upload_artifact_resumable(
        self,
        path: str | os.PathLike[str],
        *,
        upload_id: str | None = None,
        filename: str | None = None,
        part_size: int | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> JsonDict:
        """As the sync method (files are read in a thread)."""
        size = os.path.getsize(path)
        if upload_id is None:
            started = await self.start_multipart_upload(
                filename or os.path.basename(os.fspath(path)),
                size,
                sha256=await asyncio.to_thread(file_sha256, path),
                part_size=part_size,
                content_type=content_type,
            )
            plan = MultipartPlan.from_start(started)
        else:
            plan = MultipartPlan.from_status(await self.multipart_status(upload_id), size)
        if progress is not None and plan.sent_bytes:
            progress(plan.sent_bytes)
        try:
            for n in plan.missing:
                data = await asyncio.to_thread(read_part, path, n, plan.part_size)
                await self.upload_part(plan.upload_id, n, data)
                if progress is not None:
                    progress(len(data))
            return await self.complete_multipart_upload(plan.upload_id)
        except ApiError as exc:
            raise with_upload_id(exc, plan.upload_id) from None

    async def iter_result_pages(
        self, job_id: str, page_size: int = 1000
    ) -> AsyncIterator[JsonDict]:
        """Each ``GET /results`` page in turn (see the sync client)."""
        cursor: str | None = None
        while True:
            page = await self.get_results(job_id, limit=page_size, cursor=cursor)
            yield page
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def iter_results(self, job_id: str, page_size: int = 1000) -> AsyncIterator[JsonDict]:
        """Every element's result in element order, page by page (see the sync client)."""
        async for page in self.iter_result_pages(job_id, page_size):
            for result in page.get("results") or []:
                yield result

    async def wait(
        self, job_id: str, timeout: float | None = None, poll_interval: float = 0.5
    ) -> JsonDict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.get_job(job_id)
            if job.get("status") in TERMINAL_STATUSES:
                return job
            delay = poll_interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout}s")
                delay = min(poll_interval, left)
            await asyncio.sleep(delay)

    def stream(
        self, job_id: str, last_event_id: int | str | None = None
    ) -> AsyncIterator[JsonDict]:
        state = StreamState(
            last_id=str(last_event_id) if last_event_id is not None else None,
            max_retries=self.stream_retries,
        )
        return self._sse(f"{API}/jobs/{seg(job_id)}/stream", None, state)

    def stream_project(
        self, name: str, last_event_id: int | str | None = None
    ) -> AsyncIterator[JsonDict]:
        state = StreamState(
            last_id=str(last_event_id) if last_event_id is not None else None,
            max_retries=self.stream_retries,
        )
        return self._sse(f"{API}/projects/{seg(name)}/stream", None, state)

    def watch(
        self, ids: Iterable[str], last_event_id: int | str | None = None
    ) -> AsyncIterator[JsonDict]:
        path, params, wanted = self._watch_args(ids)
        state = StreamState(
            last_id=str(last_event_id) if last_event_id is not None else None,
            want_ends=wanted,
            max_retries=self.stream_retries,
        )
        return self._sse(path, params, state)

    async def _sse(
        self, path: str, params: dict[str, str] | None, state: StreamState
    ) -> AsyncIterator[JsonDict]:
        while not state.done:
            reason: Exception | None = None
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    path,
                    params=params,
                    headers=state.headers(),
                    timeout=self._stream_timeout,
                ) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                        raise error_from_response(source.response)
                    async for sse in source.aiter_sse():
                        event = state.accept(sse)
                        if event is not None:
                            yield event
                        if state.done:
                            return
            except SSEError as exc:
                raise _not_a_stream(exc) from exc
            except httpx.TransportError as exc:
                reason = exc
            state.dropped(self.controller_url, reason)
            await asyncio.sleep(self.stream_retry_delay * state.failures)


__all__ = ["AsyncComputalotClient"]
