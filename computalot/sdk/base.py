"""Transport-neutral pieces shared by the sync and async SDK clients.

The two clients differ only in *how* they send (``httpx.Client`` vs ``httpx.AsyncClient``), so
everything else lives here once: defaults from the environment, the :class:`Req` description of
one call, decoding answers into dicts or typed errors, packing a project directory into the
gzip'd tarball that ``POST /projects/:name/push`` wants, and the resume bookkeeping of an SSE
stream (:class:`StreamState`).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent

from computalot.sdk.errors import (
    ApiConnectionError,
    ApiError,
    NotReady,
    QuotaExceeded,
    RateLimited,
    error_from_response,
)
from computalot.sdk.ignore import Rule, ignored, parse_rules, read_rules
from computalot.states import TERMINAL_JOB

DEFAULT_URL = "http://127.0.0.1:8000"
API = "/api/v1"
USER_AGENT = "computalot-python/0.2.0"
TERMINAL_STATUSES: frozenset[str] = frozenset(TERMINAL_JOB)
# Never worth shipping to the cluster: VCS metadata, bytecode, local virtualenvs, tool caches.
DEFAULT_EXCLUDES = frozenset(
    {".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".DS_Store"}
)
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
# The server's heartbeat comes every 15 s, so a read that waits this long means a dead link.
STREAM_READ_TIMEOUT_S = 45.0


def resolve_url(controller_url: str | None) -> str:
    """The API root: the argument, else ``COMPUTALOT_URL``, else the local default."""
    url = controller_url or os.environ.get("COMPUTALOT_URL") or DEFAULT_URL
    return url.rstrip("/")


def resolve_token(token: str | None) -> str | None:
    """The bearer token: the argument, else ``COMPUTALOT_TOKEN`` (None = public routes only)."""
    return token or os.environ.get("COMPUTALOT_TOKEN") or None


def default_headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def seg(value: object) -> str:
    """One URL path segment: ids and names are quoted so a '/' can never change the route."""
    return quote(str(value), safe="")


def clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values, so an unset keyword never overrides a server default."""
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Req:
    """One API call, described before it is sent, so both clients build it the same way."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    expect: Literal["json", "text"] = "json"
    #: False: never sent twice (a compare-and-set PUT whose first try may have landed).
    retry: bool = True

    @property
    def idempotent(self) -> bool:
        """Safe to send again: an idempotent HTTP method, or a POST carrying an
        ``Idempotency-Key`` (the server answers a repeat with the first result)."""
        if not self.retry:
            return False
        keyed = any(k.lower() == "idempotency-key" for k in (self.headers or {}))
        return self.method.upper() in IDEMPOTENT_METHODS or keyed

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "url": self.path}
        if self.params:
            out["params"] = clean(self.params)
        if self.json is not None:
            out["json"] = self.json
        if self.content is not None:
            out["content"] = self.content
        headers = clean(self.headers or {})
        if self.expect == "text":
            headers.setdefault("Accept", "text/plain, text/markdown, */*")
        if headers:
            out["headers"] = headers
        return out


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending an idempotent call again.

    Retried: no answer at all (connection refused or reset, timeout), 429 ``rate_limited``
    (after the server's ``Retry-After``), 503 ``not_ready``. Never retried: a call that is not
    idempotent (a POST without an ``Idempotency-Key``), 429 ``quota_exceeded`` (waiting
    seconds does not free a quota), any other error. Backoff doubles from ``backoff_s``
    (seconds) up to ``max_backoff_s``, with jitter so that many clients do not retry in step.
    """

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def again(self, req: Req, attempt: int, error: ApiError) -> bool:
        """Whether the call that failed with ``error`` on try ``attempt`` (0-based) is sent again."""
        if attempt >= self.max_retries or not req.idempotent:
            return False
        if isinstance(error, QuotaExceeded):
            return False
        return isinstance(error, ApiConnectionError | RateLimited | NotReady)

    def delay(self, attempt: int, error: ApiError) -> float:
        """Seconds to wait before try ``attempt + 1``."""
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_backoff_s)
        base = min(self.backoff_s * 2**attempt, self.max_backoff_s)
        return base * (0.5 + random.random() / 2)


#: The statuses worth decoding to ask :class:`RetryPolicy` about.
RETRY_STATUSES = frozenset({429, 503})


def _raise_for(response: httpx.Response) -> None:
    if not response.is_success:
        raise error_from_response(response)


def decode_json(response: httpx.Response) -> dict[str, Any]:
    """A 2xx answer as a dict (``{}`` when empty); anything else raises the typed error."""
    _raise_for(response)
    if not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        return {"text": response.text}
    return data if isinstance(data, dict) else {"data": data}


def decode_text(response: httpx.Response) -> str:
    _raise_for(response)
    return response.text


def connection_error(url: str, exc: Exception) -> ApiConnectionError:
    """No HTTP answer at all: say where we tried, so a wrong ``--url`` is obvious."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not connect"
    return ApiConnectionError(f"{kind} to {url}: {exc or type(exc).__name__}")


def _excluded(name: str, exclude: Iterable[str]) -> bool:
    return name in exclude or name.endswith(EXCLUDED_SUFFIXES)


def _walk(root: Path, exclude: frozenset[str], rules: list[Rule]) -> Iterator[tuple[str, Path]]:
    """(archive name, real file) for every regular file under ``root``, sorted.

    ``rules`` (the caller's patterns) are extended by each directory's ignore files as the
    walk enters it (:mod:`computalot.sdk.ignore`). The server refuses links, so a symlink is
    shipped as the file it points to when that file is inside ``root``, and left out otherwise
    (it would not exist on the cluster anyway).
    """
    scoped: dict[str, list[Rule]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        base = "" if rel == "." else rel
        parent = scoped.get(base.rpartition("/")[0] if base else "", rules)
        active = parent + read_rules(here, base)
        scoped[base] = active

        def arc(name: str, base: str = base) -> str:
            return f"{base}/{name}" if base else name

        dirnames[:] = sorted(
            d
            for d in dirnames
            if not _excluded(d, exclude)
            and not (here / d).is_symlink()
            and not ignored(active, arc(d), is_dir=True)
        )
        for name in sorted(filenames):
            if _excluded(name, exclude) or ignored(active, arc(name), is_dir=False):
                continue
            path = here / name
            real = path.resolve()
            if not real.is_file() or (path.is_symlink() and not real.is_relative_to(root)):
                continue
            yield arc(name), real


def build_tarball(
    directory: str | os.PathLike[str],
    exclude: Iterable[str] = DEFAULT_EXCLUDES,
    patterns: Iterable[str] = (),
) -> bytes:
    """A gzip'd tar of ``directory``'s files, skipping ``.git``, ``__pycache__``, ``.venv`` …,
    whatever the tree's ``.gitignore`` / ``.computalotignore`` files leave out, and what the
    ``.gitignore``-style ``patterns`` match.

    Deterministic (sorted names, zero gzip mtime, no owner names), so pushing the same tree
    twice sends the same bytes; the server's revision hash ignores mtimes anyway.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise NotADirectoryError(str(directory))
    skip = frozenset(exclude)
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for arcname, real in _walk(root, skip, parse_rules(patterns)):
            st = real.stat()
            info = tarfile.TarInfo(arcname)
            info.size = st.st_size
            info.mtime = int(st.st_mtime)
            info.mode = 0o755 if st.st_mode & 0o111 else 0o644
            with real.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def tarball_bytes(source: str | os.PathLike[str] | bytes, exclude: Iterable[str] = ()) -> bytes:
    """The push body: raw bytes as given, a directory packed (``exclude``: extra
    ``.gitignore``-style patterns), a ``.tar.gz`` file read as is."""
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    path = Path(source)
    if path.is_dir():
        return build_tarball(path, patterns=exclude)
    return path.read_bytes()


def push_request(name: str, content: bytes) -> Req:
    """``POST /projects/:name/push`` with a raw gzip body (the route refuses multipart)."""
    return Req(
        "POST",
        f"{API}/projects/{seg(name)}/push",
        content=content,
        headers={"Content-Type": "application/gzip"},
    )


def _event_data(raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"text": raw}
    return data if isinstance(data, dict) else {"data": data}


def _event_id(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@dataclass
class StreamState:
    """Resume bookkeeping for one SSE read that may span several connections.

    ``want_ends`` is None for a single job's stream (one ``end`` finishes it) or the job ids of
    a watch (finished once each has ended, or on an ``end`` that names no job). ``failures``
    counts drops in a row; any event received resets it, so only a stream that stays dead
    gives up.
    """

    last_id: str | None = None
    want_ends: frozenset[str] | None = None
    max_retries: int = 3
    ended: set[str] = field(default_factory=set)
    done: bool = False
    failures: int = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        return headers

    def accept(self, sse: ServerSentEvent) -> dict[str, Any] | None:
        """The public event for one SSE message (None for a keep-alive with nothing in it)."""
        if sse.id:
            self.last_id = sse.id
        if not sse.data and sse.event in ("", "message"):
            return None
        self.failures = 0
        name = sse.event or "message"
        data = _event_data(sse.data)
        if name == "end":
            job_id = data.get("job_id") or data.get("id")
            if self.want_ends is None or not job_id:
                self.done = True
            else:
                self.ended.add(str(job_id))
                self.done = self.ended >= self.want_ends
        event: dict[str, Any] = {"id": _event_id(sse.id), "event": name, "data": data}
        return event

    def dropped(self, url: str, exc: Exception | None) -> None:
        """Count a lost connection (or a close before ``end``); raise once retries are spent."""
        self.failures += 1
        if self.failures > self.max_retries:
            why = exc or RuntimeError("stream closed before its end event")
            raise connection_error(url, why) from exc
