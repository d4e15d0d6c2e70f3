"""Many SSE clients in one process, for bench/streams.py: raw asyncio sockets, HTTP/1.1.

Each client sends one ``GET .../stream`` and reads the chunked answer, keeping the event ids it
got, the receipt time of each ``progress`` event next to the ``t`` its runner wrote, and how the
stream ended (``end``, an ``error`` event, a dropped connection, or a failed open). Runs in a
child process so its parsing does not share a GIL with the probe that times other requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

OPEN_TIMEOUT_S = 30.0
#: Clients start this far apart (seconds): 1,000 connects arrive over 2 s, not in one burst.
RAMP_S = 0.002


@dataclass
class Client:
    index: int
    job_id: str
    key: str  # which token it used: "main" or "revoked"
    status: int | None = None
    opened_at: float | None = None
    closed_at: float | None = None
    how: str = "running"  # end | error | dropped | failed | timeout
    detail: str = ""
    ids: list[int] = field(default_factory=list)
    #: (t written by the runner, time received), both time.time()
    progress: list[tuple[float, float]] = field(default_factory=list)


def _frames(buffer: bytearray) -> list[bytes]:
    """Complete SSE frames at the front of ``buffer`` (removed from it)."""
    out = []
    while True:
        cut = buffer.find(b"\n\n")
        if cut < 0:
            return out
        out.append(bytes(buffer[:cut]))
        del buffer[: cut + 2]


def _take(client: Client, raw: bytes, now: float) -> bool:
    """Record one frame; True when the stream is over (``end`` of its job, or ``error``)."""
    event_id, name, data = None, "", b""
    for line in raw.split(b"\n"):
        if line.startswith(b"id: "):
            event_id = int(line[4:])
        elif line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
    if event_id is not None:
        client.ids.append(event_id)
    if name == "progress":
        progress = json.loads(data).get("progress") or {}
        if "t" in progress:
            client.progress.append((float(progress["t"]), now))
    elif name == "error":
        client.how, client.detail = "error", data.decode()[:300]
        return True
    elif name == "end":
        client.how = "end"
        return True
    return False


async def _follow(client: Client, url: str, token: str, delay_s: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET /api/v1/jobs/{client.job_id}/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    writer = None
    await asyncio.sleep(delay_s)
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status_line = await reader.readline()
            client.status = int(status_line.split()[1]) if status_line else None
            chunked = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line:
                    chunked = True
        client.opened_at = time.time()
        if client.status != 200:
            client.how, client.detail = "failed", f"HTTP {client.status}"
            return
        buffer = bytearray()
        while True:
            if chunked:
                size_line = await reader.readline()
                if not size_line:
                    break
                size = int(size_line.strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    break
                buffer += await reader.readexactly(size)
                await reader.readexactly(2)
            else:
                block = await reader.read(65536)
                if not block:
                    break
                buffer += block
            now = time.time()
            for raw in _frames(buffer):
                if _take(client, raw, now):
                    return
        client.how = "dropped"
    except TimeoutError:
        client.how, client.detail = "timeout", "no answer to the request"
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        client.how, client.detail = ("failed" if client.status is None else "dropped"), repr(exc)
    finally:
        client.closed_at = time.time()
        if writer is not None:
            writer.close()


async def _run(
    url: str, plan: list[dict[str, str]], tokens: dict[str, str], ready: Any
) -> list[Client]:
    clients = [Client(i, p["job_id"], p["key"]) for i, p in enumerate(plan)]
    tasks = [asyncio.create_task(_follow(c, url, tokens[c.key], c.index * RAMP_S)) for c in clients]
    while any(c.status is None and c.how == "running" for c in clients):
        await asyncio.sleep(0.1)
    ok = sum(c.status == 200 for c in clients)
    ready.send({"opened": ok, "failed": len(clients) - ok, "at": time.time()})
    await asyncio.gather(*tasks)
    return clients


def run_fleet(
    url: str, plan: list[dict[str, str]], tokens: dict[str, str], out: str, ready: Any
) -> None:
    """Entry point of the child process: follow every stream of ``plan`` to its close, then
    write the clients as JSON to ``out``."""
    clients = asyncio.run(_run(url, plan, tokens, ready))
    with open(out, "w") as fh:
        json.dump([asdict(c) for c in clients], fh)
