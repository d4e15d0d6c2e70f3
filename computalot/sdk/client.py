"""Python SDK: :class:`ComputalotClient` (blocking) and :class:`AsyncComputalotClient` (asyncio).

    from computalot.sdk.client import ComputalotClient
    client = ComputalotClient(controller_url="http://127.0.0.1:8000", token="flk_…")
    job = client.submit_job(project="demo", runner_command=["python3", "job.py"])
    for event in client.stream(job["id"]):
        print(event["event"], event["data"])

Every route method (see :class:`computalot.sdk.endpoints.Endpoints`) returns the answer as a
plain dict and raises a typed :class:`computalot.sdk.errors.ApiError` subclass otherwise.
This module adds what needs a live connection: polling (``wait``), paging through results
(``iter_results``) and resumable SSE streams (``stream``, ``watch``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

# The asyncio twin lives in its own module; both are importable from here.
from computalot.sdk.async_client import AsyncComputalotClient
from computalot.sdk.base import (
    API,
    TERMINAL_STATUSES,
    Req,
    StreamState,
    connection_error,
    decode_json,
    decode_text,
    default_headers,
    seg,
)
from computalot.sdk.common import (
    JsonDict,
    _Common,
    _downloaded,
    _file_chunks,
    _not_a_stream,
    _upload_target,
)
from computalot.sdk.endpoints import Endpoints, Progress
from computalot.sdk.errors import ApiError, PaymentRequired, error_from_response
from computalot.sdk.transfers import MultipartPlan, file_sha256, read_part, with_upload_id
from computalot.sdk.x402_pay import payment_signature, quote_id, unexpected_answer

__all__ = ["AsyncComputalotClient", "ComputalotClient"]


class ComputalotClient(_Common, Endpoints[JsonDict, str]):
    """Blocking client over ``httpx.Client``; use as a context manager or call :meth:`close`.

    ``transport`` replaces the network (an ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        controller_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            controller_url,
            token,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
        )
        self._http = httpx.Client(
            base_url=self.controller_url,
            headers=default_headers(self.token),
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ComputalotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, req: Req) -> httpx.Response:
        """Send ``req``; an idempotent one again after no answer, a 429 or a 503
        (:class:`~computalot.sdk.base.RetryPolicy`)."""
        attempt = 0
        while True:
            try:
                response = self._http.request(**req.kwargs())
            except httpx.TransportError as exc:
                wait = self._retry_lost(req, attempt, exc)
            else:
                found = self._retry_after(req, attempt, response)
                if found is None:
                    return response
                wait = found
            time.sleep(wait)
            attempt += 1

    def _call(self, req: Req) -> JsonDict:
        return decode_json(self._send(req))

    def _call_text(self, req: Req) -> str:
        return decode_text(self._send(req))

    def _call_upload(
        self, req: Req, path: str | os.PathLike[str], progress: Progress | None = None
    ) -> JsonDict:
        kwargs, outside = _upload_target(req, path)
        body = _file_chunks(path, progress)
        try:
            if outside:
                with httpx.Client(timeout=self.timeout) as http:
                    return decode_json(http.request(**kwargs, content=body))
            return decode_json(self._http.request(**kwargs, content=body))
        except httpx.TransportError as exc:
            raise connection_error(self.controller_url, exc) from exc

    def _call_download(
        self, req: Req, path: str | os.PathLike[str], progress: Progress | None = None
    ) -> JsonDict:
        sha = hashlib.sha256()
        size = 0
        try:
            with self._http.stream(**req.kwargs()) as response:
                if not response.is_success:
                    response.read()
                    raise error_from_response(response)
                with open(path, "wb") as out:
                    for chunk in response.iter_bytes():  # as they arrive: re-chunking costs a copy
                        sha.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
        except httpx.TransportError as exc:
            raise connection_error(self.controller_url, exc) from exc
        return _downloaded(response, path, sha, size)

    def wait(
        self, job_id: str, timeout: float | None = None, poll_interval: float = 0.5
    ) -> JsonDict:
        """Poll until the job is terminal and return it; ``TimeoutError`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if job.get("status") in TERMINAL_STATUSES:
                return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout}s")
                time.sleep(min(poll_interval, left))
            else:
                time.sleep(poll_interval)

    def topup(self, amount_usd: float, account: Any) -> JsonDict:
        """Add ``amount_usd`` of credit paid over x402 by ``account`` (an eth-account
        ``LocalAccount`` or its private key): a top-up quote, an EIP-3009 authorisation signed
        for exactly that quote, the payment. Returns the receipt ``{"quote", "ledger_entry",
        "payment", "available_usd"}``. Needs the ``x402`` package."""
        try:
            answer = self.topup_quote(amount_usd)
        except PaymentRequired as refusal:
            signature = payment_signature(refusal, account)
            return self.pay_quote_x402(quote_id(refusal), signature)
        raise unexpected_answer(answer)

    def upload_artifact_resumable(
        self,
        path: str | os.PathLike[str],
        *,
        upload_id: str | None = None,
        filename: str | None = None,
        part_size: int | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> JsonDict:
        """Upload a file of any size as a multipart upload, or finish the one ``upload_id``
        names (only its missing parts are sent). A failure raises with ``exc.upload_id`` set:
        call again with it to resume. Returns the artifact."""
        size = os.path.getsize(path)
        if upload_id is None:
            started = self.start_multipart_upload(
                filename or os.path.basename(os.fspath(path)),
                size,
                sha256=file_sha256(path),
                part_size=part_size,
                content_type=content_type,
            )
            plan = MultipartPlan.from_start(started)
        else:
            plan = MultipartPlan.from_status(self.multipart_status(upload_id), size)
        if progress is not None and plan.sent_bytes:
            progress(plan.sent_bytes)
        try:
            for n in plan.missing:
                data = read_part(path, n, plan.part_size)
                self.upload_part(plan.upload_id, n, data)
                if progress is not None:
                    progress(len(data))
            return self.complete_multipart_upload(plan.upload_id)
        except ApiError as exc:
            raise with_upload_id(exc, plan.upload_id) from None

    def iter_result_pages(self, job_id: str, page_size: int = 1000) -> Iterator[JsonDict]:
        """Each ``GET /results`` page in turn (the first carries ``aggregate_result``)."""
        cursor: str | None = None
        while True:
            page = self.get_results(job_id, limit=page_size, cursor=cursor)
            yield page
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def iter_results(self, job_id: str, page_size: int = 1000) -> Iterator[JsonDict]:
        """Every element's result ``{"task_id", "index", "status", "result", …}`` in element
        order, page by page (``GET /results`` answers at most ``page_size`` at a time)."""
        for page in self.iter_result_pages(job_id, page_size):
            yield from page.get("results") or []

    def stream(self, job_id: str, last_event_id: int | str | None = None) -> Iterator[JsonDict]:
        """Events ``{"id", "event", "data"}`` of one job until its ``end`` event.

        ``id`` is the stored event id (an int), or None for the opening ``job`` snapshot, which
        the server sends unnumbered.

        A dropped connection is resumed with ``Last-Event-ID``, so no event is lost or repeated.
        """
        state = StreamState(
            last_id=str(last_event_id) if last_event_id is not None else None,
            max_retries=self.stream_retries,
        )
        return self._sse(f"{API}/jobs/{seg(job_id)}/stream", None, state)

    def stream_project(
        self, name: str, last_event_id: int | str | None = None
    ) -> Iterator[JsonDict]:
        """Events ``{"id", "event", "data"}`` of a project (``push``, ``init``, ``node``,
        ``status``, ``kv``) for as long as the caller reads: the stream has no end. A dropped
        connection resumes with ``Last-Event-ID``."""
        state = StreamState(
            last_id=str(last_event_id) if last_event_id is not None else None,
            max_retries=self.stream_retries,
        )
        return self._sse(f"{API}/projects/{seg(name)}/stream", None, state)

    def watch(
        self, ids: Iterable[str], last_event_id: int | str | None = None
    ) -> Iterator[JsonDict]:
        """Events of several jobs (≤ 100) on one stream, until every one of them has ended."""
        path, params, wanted = self._watch_args(ids)
        state = StreamState(
            last_id=str(last_event_id) if last_event_id is not None else None,
            want_ends=wanted,
            max_retries=self.stream_retries,
        )
        return self._sse(path, params, state)

    def _sse(
        self, path: str, params: dict[str, str] | None, state: StreamState
    ) -> Iterator[JsonDict]:
        while not state.done:
            reason: Exception | None = None
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    path,
                    params=params,
                    headers=state.headers(),
                    timeout=self._stream_timeout,
                ) as source:
                    if not source.response.is_success:
                        source.response.read()
                        raise error_from_response(source.response)
                    for sse in source.iter_sse():
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
            time.sleep(self.stream_retry_delay * state.failures)
