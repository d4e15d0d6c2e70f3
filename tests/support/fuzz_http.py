"""One HTTP/1.1 exchange over a plain socket, for the route fuzz test.

A client library would normalise what the fuzz must send as it is (``..`` segments, bytes
outside ASCII in a header, a body that disagrees with its Content-Type), so requests are written
byte for byte. The answer is read by Content-Length or chunked framing; a Server-Sent Events
answer is read only until its first chunk or ``SSE_PEEK_S``, then the connection is closed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

#: How long a stream's first bytes are awaited (seconds) before it is closed as healthy.
SSE_PEEK_S = 0.5
#: How long an answer's head may take (seconds): a 16 MiB body is parsed before it is answered.
HEAD_TIMEOUT_S = 60.0


@dataclass
class Exchange:
    """What went over the wire: ``status`` 0 and ``failure`` set when no answer came."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    streamed: bool = False
    failure: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def fill(self) -> bool:
        chunk = self.sock.recv(1 << 16)
        self.buffer += chunk
        return bool(chunk)

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self.fill():
                raise ConnectionError(f"closed before {marker!r}: {self.buffer[:200]!r}")
        out, _, self.buffer = self.buffer.partition(marker)
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self.fill():
                raise ConnectionError(f"closed after {len(self.buffer)} of {n} body bytes")
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def rest(self) -> bytes:
        while self.fill():
            pass
        out, self.buffer = self.buffer, b""
        return out

    def chunked(self, first_only: bool = False) -> bytes:
        body = b""
        while True:
            size = int(self.until(b"\r\n").split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return body
            body += self.exactly(size)
            self.exactly(2)
            if first_only:
                return body


def head_bytes(method: str, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def exchange(
    port: int,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None = None,
    *,
    chunks: list[bytes] | None = None,
) -> Exchange:
    """Send one request to 127.0.0.1:``port``; ``chunks`` sends the body chunked instead."""
    framing = [(b"Content-Length", str(len(body)).encode())] if body is not None else []
    if chunks is not None:
        framing = [(b"Transfer-Encoding", b"chunked")]
    answer = Exchange()
    with socket.create_connection(("127.0.0.1", port), timeout=HEAD_TIMEOUT_S) as sock:
        try:
            sock.sendall(head_bytes(method, target, [*headers, *framing]))
            if body:
                sock.sendall(body)
            for chunk in chunks or []:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            if chunks is not None:
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:  # the server may answer (413) and close before the body is sent
            unsent = f"send: {exc!r}; "
        else:
            unsent = ""
        try:
            _read(sock, method, answer)
        except (OSError, ValueError) as exc:
            answer.failure = f"{unsent}read: {exc!r}"
    return answer


def _read(sock: socket.socket, method: str, answer: Exchange) -> None:
    reader = _Reader(sock)
    head = reader.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    answer.status = int(head[0].split()[1])
    for line in head[1:]:
        name, _, value = line.partition(":")
        answer.headers[name.strip().lower()] = value.strip()
    if method == "HEAD" or answer.status in (204, 304):
        return
    chunked = "chunked" in answer.headers.get("transfer-encoding", "").lower()
    if answer.content_type == "text/event-stream" and answer.status == 200:
        answer.streamed = True
        sock.settimeout(SSE_PEEK_S)
        try:
            if chunked:
                answer.body = reader.chunked(first_only=True)
            else:
                reader.fill()
                answer.body = reader.buffer
        except TimeoutError:
            pass  # open and quiet: a healthy stream with nothing to say yet
        return
    if chunked:
        answer.body = reader.chunked()
    elif "content-length" in answer.headers:
        answer.body = reader.exactly(int(answer.headers["content-length"]))
    else:
        answer.body = reader.rest()
