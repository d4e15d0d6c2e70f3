"""Pure-ASGI middleware: body limits, metrics, and the last-resort 500 envelope.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps streaming responses streaming and costs
microseconds per request.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException

from computalot.errors import envelope
from computalot.metrics.reporter import Reporter
from computalot.metrics.snapshot import Snapshot, take
from computalot.metrics.store_figures import StoreFigures, statement_histogram, watch_statements

log = logging.getLogger("computalot.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUSH_PATH = re.compile(r"^/api/v1/projects/[^/]+/push$")
#: Routes whose body is an artifact's raw bytes (an upload, a part, a direct PUT).
ARTIFACT_PATH = re.compile(r"^/api/v1/artifacts(/multipart/[^/]+/parts/[^/]+|/direct/[^/]+)?$")


class BodyLimits:
    """Per-route byte caps (413, docs/llms-full.md "Limits"): enforced on Content-Length and on streamed bytes."""

    def __init__(self, json_bytes: int, tarball_bytes: int, artifact_bytes: int) -> None:
        self.json_bytes = json_bytes
        self.tarball_bytes = tarball_bytes
        self.artifact_bytes = artifact_bytes

    def for_path(self, path: str) -> tuple[int, str]:
        if PUSH_PATH.match(path):
            return self.tarball_bytes, "tarball"
        if ARTIFACT_PATH.match(path):
            return self.artifact_bytes, "artifact"
        return self.json_bytes, "JSON body"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _send_json(send, 400, _nul_in_url())
            return
        limit, what = self.limits.for_path(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _send_json(send, 413, _too_large(what, limit))
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"{what} is over the {limit} byte limit")
            return message

        await self.app(scope, limited_receive, send)


def _nul_in_url() -> dict[str, Any]:
    return envelope(
        400,
        "the URL contains a NUL (%00) character",
        details=[{"loc": ["url"], "msg": "NUL is not allowed"}],
        recommended_action="remove %00 from the path and query",
    )


def _too_large(what: str, limit: int) -> dict[str, Any]:
    return envelope(
        413,
        f"{what} is over the {limit} byte limit",
        details=[{"loc": ["body"], "msg": f"limit is {limit} bytes"}],
    )


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


class Metrics:
    """This replica's figures (one registry per app): requests and latency by route template
    and status, store statements, pooled connections, SSE streams. ``GET /metrics`` answers
    them merged with every other replica's and the engine's (``serve_app.metrics_scrape``,
    docs/metrics.md)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.replica_id, self.in_serve = replica_id()
        self.reporter: Reporter | None = None
        self.store_figures: StoreFigures | None = None
        self.statements = statement_histogram(self.registry)
        self.answered = 0  # requests answered: the reporter pushes when it moved
        self.requests = Counter(
            "computalot_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "computalot_http_request_duration_seconds",
            "HTTP request latency in seconds by route",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.db_connections = Gauge(
            "computalot_db_connections_in_use",
            "Database connections this process has checked out of its pool now",
            registry=self.registry,
        )
        self.sse_streams = Gauge(
            "computalot_sse_streams", "Open SSE streams on this replica", registry=self.registry
        )
        self.sse_jobs = Gauge(
            "computalot_sse_watched_jobs",
            "Jobs this replica's stream feed follows for its open streams",
            registry=self.registry,
        )

    def watch_store(self, store: Any) -> None:
        """Report ``store``'s pooled connections in use (read when /metrics is scraped)."""
        pool = store.engine.pool
        if hasattr(pool, "checkedout"):
            self.db_connections.set_function(pool.checkedout)
        watch_statements(store, self.statements)

    def watch_streams(self, streams: Callable[[], float], jobs: Callable[[], float]) -> None:
        self.sse_streams.set_function(streams)
        self.sse_jobs.set_function(jobs)

    def take(self) -> Snapshot:
        return take(self.registry)

    def start_reporting(self, state: Any) -> None:
        """Push this replica's figures to the metrics board from now on (``app.state`` gives
        the settings); called on the replica's first request, on its event loop. An app
        outside Serve (plain uvicorn, in-process tests) is no replica of the platform: it
        answers for itself."""
        if self.reporter is not None:
            return
        settings = state.settings
        self.store_figures = StoreFigures(settings.metrics_jobs_refresh_s)
        self.reporter = Reporter(
            self.replica_id,
            "api",
            self.take,
            settings.ray_namespace,
            settings.metrics_push_interval_s,
            version=lambda: self.answered,
        )
        if self.in_serve:
            self.reporter.start()


def replica_id() -> tuple[str, bool]:
    """Serve's id of this replica (new for each incarnation) and True, or host, pid and a
    random tag and False outside Serve; sent as ``X-Computalot-Replica`` and the replica's
    source on the metrics board."""
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id), True
    except Exception:  # not a Serve replica (plain uvicorn, tests)
        return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}", False


class ObserveMiddleware:
    """Outermost layer: records metrics and turns an escaped exception into a 500 envelope."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.replica_header = (b"x-computalot-replica", metrics.replica_id.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False
        if self.metrics.reporter is None and "app" in scope:
            self.metrics.start_reporting(scope["app"].state)

        async def observed_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), self.replica_header]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            error_id = "err_" + secrets.token_hex(8)
            log.exception("unhandled error %s on %s %s", error_id, scope["method"], scope["path"])
            status = 500
            if not started:
                body = envelope(
                    500,
                    f"internal error (id {error_id})",
                    recommended_action="retry later; if it persists, report the error id "
                    "via POST /api/v1/feedback",
                )
                body["error"]["error_id"] = error_id
                await _send_json(send, 500, body)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
            self.metrics.answered += 1
