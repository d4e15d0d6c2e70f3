"""computalot-haproxy in front of a real HTTP server: each answer HAProxy makes is the envelope.

The config is the shape Ray Serve 2.60 writes (its sections, its 502/503/504 -> plain 500
errorfile, its plain-text 404 backend), started the way Serve starts it: the wrapper with
HAProxy's arguments. What the platform cannot be made to do on demand (a replica that dies
mid-answer, none at all, one at capacity, a slow one) is done here by the server.
"""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from computalot.ingress import WRAPPER, patch_config_file, wrapper_path
from computalot.ingress_pages import MAX_HEADER_BYTES, MAX_URL_BYTES
from tests.support.helpers import pid_alive, wait_for
from tests.support.postgres import free_port
from tests.support.raw_http import exchange, request

HEAD_TIMEOUT_S = 1
RAY_LIKE_CONFIG = """global
    stats socket {dir}/admin.sock mode 666 level admin expose-fd listeners
    maxconn 1024
    nbthread 2
    tune.bufsize 262144
defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    timeout http-keep-alive 90s
    option abortonclose
    option splice-request
    option splice-response
    option redispatch 1
    retry-on conn-failure
    option http-no-delay
    # Normalize 502/503/504 to 500 per Serve's default behavior.
    errorfile 502 {dir}/500.http
    errorfile 503 {dir}/500.http
    errorfile 504 {dir}/500.http
    balance leastconn
frontend http_frontend
    bind 127.0.0.1:{port}
    acl is_http-computalot path_beg /
    use_backend http-gone if {{ path_beg /gone }}
    use_backend http-computalot if is_http-computalot
    default_backend default_backend
backend default_backend
    http-request return status 404 content-type text/plain lf-string "Path '%[path]' not found."
backend http-computalot
    http-reuse always
    timeout server 2s
    server SERVE_REPLICA_api 127.0.0.1:{server_port}
backend http-gone
    server SERVE_REPLICA_gone 127.0.0.1:{dead_port}
"""
SERVE_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\n"
    b"Internal Server Error"
)


class Replica(http.server.BaseHTTPRequestHandler):
    """Answers the way a replica, Serve's fallback proxy or uvicorn do."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/die":  # the replica's process ends halfway through its answer
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.path == "/slow":  # past the backend's 2 s server timeout, then gone
            time.sleep(4)
            self.close_connection = True
            return
        answers: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
            "/backpressure": (
                503,
                "text/plain",
                b"Request dropped due to backpressure",
                {"Retry-After": "5"},
            ),
            "/crash": (500, "text/plain", b"Internal Server Error", {}),
            "/uvicorn-400": (
                400,
                "text/plain; charset=utf-8",
                b"Invalid HTTP request received.",
                {},
            ),
            "/app-error": (
                503,
                "application/json",
                b'{"error":{"code":"not_ready","message":"engine down","details":[],'
                b'"recommended_action":"wait"}}',
                {},
            ),
            "/events": (200, "text/event-stream", b"event: end\ndata: {}\n\n", {}),
            "/page": (200, "text/html", b"<html>docs</html>", {}),
        }
        status, ctype, body, extra = answers.get(self.path, (200, "text/plain", b"ok", {}))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


class ReplicaServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # HAProxy hung up: expected
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    wrapper = wrapper_path()
    assert wrapper is not None and wrapper.endswith(WRAPPER), "pip install -e . installs it"
    folder = tmp_path_factory.mktemp("hap")
    (folder / "500.http").write_bytes(SERVE_500)
    server = ReplicaServer(("127.0.0.1", 0), Replica)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    config = folder / "haproxy.cfg"
    config.write_text(
        RAY_LIKE_CONFIG.format(
            dir=folder, port=port, server_port=server.server_address[1], dead_port=free_port()
        )
    )
    # Patched ahead with a short head timeout; the wrapper finds it patched and leaves it.
    patch_config_file(config, head_timeout_s=HEAD_TIMEOUT_S)
    proc = subprocess.Popen(
        [wrapper, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )

    def listening() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, "HAProxy listening", timeout_s=30)
    yield port
    proc.terminate()
    proc.wait(timeout=10)
    server.shutdown()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/backpressure", 503, "not_ready"),  # a replica at max_ongoing_requests
        ("/crash", 500, "internal_error"),  # uvicorn's own answer to an unhandled error
        ("/uvicorn-400", 400, "bad_request"),
        ("/die", 502, "bad_gateway"),  # Ray's errorfile made this a plain-text 500
        ("/gone/x", 503, "not_ready"),  # no replica to take it
        ("/slow", 504, "gateway_timeout"),
    ],
)
def test_errors_from_behind_the_ingress_are_envelopes(
    ingress: int, path: str, status: int, code: str
) -> None:
    answer = exchange(ingress, request("GET", path))
    assert answer.status == status, answer
    assert answer.envelope()["code"] == code
    if status in (502, 503, 504):
        assert answer.headers.get("retry-after") == "1"


def test_the_apps_own_answers_pass_untouched(ingress: int) -> None:
    app_error = exchange(ingress, request("GET", "/app-error"))
    assert app_error.status == 503 and app_error.envelope()["message"] == "engine down"
    for path, ctype in (("/events", "text/event-stream"), ("/page", "text/html"), ("/ok", "")):
        answer = exchange(ingress, request("GET", path))
        assert answer.status == 200, answer
        assert answer.headers["content-type"].startswith(ctype or "text/plain")


def test_over_long_heads_and_unknown_paths_are_envelopes(ingress: int) -> None:
    long_url = exchange(ingress, request("GET", "/api/v1/jobs/watch?ids=" + "j" * MAX_URL_BYTES))
    assert long_url.status == 414 and long_url.envelope()["code"] == "uri_too_long"
    big = {"Authorization": "Bearer flk_" + "a" * 60_000}
    headers = exchange(ingress, request("GET", "/api/v1/account", big))
    assert headers.status == 431 and headers.envelope()["code"] == "headers_too_large"
    near = {"X-Pad": "a" * (MAX_HEADER_BYTES - 200)}
    assert exchange(ingress, request("GET", "/ok", near)).status == 200
    star = exchange(ingress, request("OPTIONS", "*"))
    assert star.status == 404 and star.envelope()["code"] == "not_found"


def test_a_request_head_that_trickles_in_is_cut_off(ingress: int) -> None:
    """HAProxy 2.8 answers this one from its parser, so it may be its own page; what matters is
    that the connection is not held for ``timeout client`` (an hour)."""
    started = time.monotonic()
    answer = exchange(ingress, b"GET /ok HTTP/1.1\r\nHost: x\r\n", timeout_s=20)
    assert answer.status == 408
    assert time.monotonic() - started < 15


def test_haproxy_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    """Serve's proxy actor killed (ray.shutdown, a crash) used to leave HAProxy holding the port."""
    (tmp_path / "500.http").write_bytes(SERVE_500)
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        RAY_LIKE_CONFIG.format(dir=tmp_path, port=port, server_port=free_port(), dead_port=1)
    )
    starter = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.argv[1], '-db', '-f', sys.argv[2]])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    actor = subprocess.Popen(
        [sys.executable, "-c", starter, str(wrapper_path()), str(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert actor.stdout is not None
    haproxy = int(actor.stdout.readline())

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, "HAProxy listening", timeout_s=30)
    actor.send_signal(signal.SIGKILL)
    actor.wait(timeout=10)
    wait_for(lambda: not pid_alive(haproxy), "HAProxy to end with its parent", timeout_s=30)
    # The port is free again: nothing listens on it, or (an ephemeral port, which another
    # process of a busy machine may take at once) at least no HAProxy does.
    holders = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    assert not listening() or "haproxy" not in holders.stdout, holders.stdout
