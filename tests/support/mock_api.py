"""A mock-transport API for SDK and CLI unit tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from computalot.client import ComputalotClient

BASE = "http://api.test"
Handler = Callable[[httpx.Request], httpx.Response]


def envelope(code: str, message: str, action: str = "do the thing", **extra: Any) -> dict[str, Any]:
    details = [{"loc": ["x"], "msg": "bad"}]
    err = {"code": code, "message": message, "details": details, "recommended_action": action}
    return {"error": err, **extra}


class Recorder:
    """A MockTransport handler that remembers every request and answers from ``reply``."""

    def __init__(self, reply: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.reply = reply or (lambda req: httpx.Response(200, json={"ok": True}))

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
