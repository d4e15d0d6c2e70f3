"""A mock-transport API for SDK and CLI unit tests."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from computalot.sdk.base import RetryPolicy
from computalot.sdk.client import ComputalotClient
from computalot.sdk.endpoints import NOT_IN_SDK, ROUTES

BASE = "http://api.test"
Handler = Callable[[httpx.Request], httpx.Response]


def envelope(code: str, message: str, action: str = "do the thing", **extra: Any) -> dict[str, Any]:
    details = [{"loc": ["x"], "msg": "bad"}]
    err = {"code": code, "message": message, "details": details, "recommended_action": action}
    return {"error": err, **extra}


def _pattern(path: str) -> re.Pattern[str]:
    """A path template's ``{name}`` placeholders as one URL segment each."""
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")


class KnownRoutes:
    """Answers ``{"ok": True}`` on a route the server serves and a 404 envelope elsewhere, as
    the server would: a call to a route that does not exist fails here too. The routes are the
    SDK's table, which ``tests/unit/test_sdk_routes.py`` holds equal to the app's."""

    def __init__(self, routes: Iterable[tuple[str, str]] | None = None) -> None:
        table = routes or [(r.http_method, r.path) for r in ROUTES] + list(NOT_IN_SDK)
        # Literal paths first, as the server orders /jobs/watch before /jobs/{job_id}.
        ordered = sorted(table, key=lambda route: route[1].count("{"))
        self.routes = [(method, path, _pattern(path)) for method, path in ordered]
        self.matched: list[tuple[str, str]] = []

    def match(self, request: httpx.Request) -> tuple[str, str] | None:
        raw = request.url.raw_path.decode().split("?", 1)[0]
        for method, path, pattern in self.routes:
            if method == request.method and pattern.match(raw):
                return method, path
        return None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        found = self.match(request)
        if found is None:
            return httpx.Response(404, json=envelope("not_found", f"no route {request.url.path}"))
        self.matched.append(found)
        return httpx.Response(200, json={"ok": True})


class Recorder:
    """A MockTransport handler that remembers every request and answers from ``reply``
    (by default :class:`KnownRoutes`: a route the server does not serve answers 404)."""

    def __init__(self, reply: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.reply = reply or KnownRoutes()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.reply(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def client_for(handler: Handler, token: str | None = "flk_test") -> ComputalotClient:
    client = ComputalotClient(BASE, token, transport=httpx.MockTransport(handler))
    client.stream_retry_delay = 0.0
    client.retry = RetryPolicy(backoff_s=0.0, max_backoff_s=0.0)  # retries without the waits
    return client


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def make_project(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "job.py").write_text("print('hi')\n")
    (root / "sub" / "mod.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    for junk in (".git/config", "__pycache__/job.cpython-311.pyc", ".venv/bin/python", "sub/m.pyc"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("junk")
    (root / "link.py").symlink_to(root / "job.py")
    outside = root.parent / "secret.txt"
    outside.write_text("secret")
    (root / "escape.txt").symlink_to(outside)
    return root


def sse(event_id: int, event: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An event-stream body that can break off mid-way, like a dropped connection."""

    def __init__(self, chunks: list[bytes], drop: bool = False) -> None:
        self.chunks, self.drop = chunks, drop

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.drop:
            raise httpx.ReadError("connection reset")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.drop:
            raise httpx.ReadError("connection reset")


def event_stream(chunks: list[bytes], drop: bool = False) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Body(chunks, drop)
    )
