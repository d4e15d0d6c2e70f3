"""Raw HTTP/1.1 over a socket, for requests no client library will send (over-long, malformed)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def envelope(self) -> dict[str, Any]:
        """The error envelope this answer must be (asserts its shape)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        error = json.loads(self.body)["error"]
        assert set(error) == {"code", "message", "details", "recommended_action"}, error
        assert error["code"] and error["message"] and error["recommended_action"], error
        return dict(error)


def exchange(port: int, raw: bytes, *, timeout_s: float = 30.0, half_close: bool = False) -> Answer:
    """Send ``raw`` to 127.0.0.1:``port`` and read one answer (the body by its Content-Length,
    else to the end of the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before an answer: {data[:200]!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "-1"))
        while length < 0 or len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return Answer(int(lines[0].split()[1]), headers, body[:length] if length >= 0 else body)


def request(method: str, target: str, headers: dict[str, str] | None = None) -> bytes:
    """A request head (``Connection: close``) with ``headers``."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
