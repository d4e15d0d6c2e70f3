"""A TCP proxy in front of the API that drops an SSE connection mid-stream, as a load balancer
or a flaky network would: the test client talks to the proxy, the proxy to the real server.

The first ``drops`` responses that carry at least ``after_events`` numbered events (``id:``
lines) and no ``end`` event yet are cut right after that chunk: both sockets are closed, so
the client sees its stream end without an ``end`` event and must resume with
``Last-Event-ID``. Each connection's request head is kept, to check what the client resent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ")


@dataclass
class DropProxy:
    upstream: str
    after_events: int = 2
    drops: int = 1
    heads: list[str] = field(default_factory=list)
    cut: int = 0

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _take_drop(self) -> bool:
        with self._lock:
            if self.cut >= self.drops:
                return False
            self.cut += 1
            return True

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        state: dict[str, Any] = {"stream": False, "seen": b""}

        def upward() -> None:
            # A request head arrives in one write (httpx sends it so); a keep-alive connection
            # may carry a plain GET first and a stream request later.
            try:
                while chunk := client.recv(65536):
                    if chunk.startswith(METHODS):
                        text = chunk.split(b"\r\n\r\n", 1)[0].decode("latin-1")
                        self.heads.append(text)
                        line = text.split("\r\n", 1)[0]
                        state["stream"] = "/stream" in line or "/jobs/watch" in line
                        state["seen"] = b""
                    upstream.sendall(chunk)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)

        threading.Thread(target=upward, daemon=True).start()
        try:
            while chunk := upstream.recv(65536):
                client.sendall(chunk)
                if not state["stream"]:
                    continue
                seen = state["seen"] = state["seen"] + chunk
                numbered = seen.count(b"\nid: ") + seen.startswith(b"id: ")
                if (
                    numbered >= self.after_events
                    and b"event: end" not in seen
                    and self._take_drop()
                ):
                    break
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
