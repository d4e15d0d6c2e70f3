"""The ingress's answers in the API's error envelope (``computalot.errors``), and the limits they
name.

Used by :mod:`computalot.ingress`, which installs them into Ray Serve's HAProxy config: as
``errorfile``\\ s (whole HTTP answers) for the statuses HAProxy 2.8 lets one replace, and as JSON
bodies for the two head-size answers (414, 431) that its ``http-request return`` rules send.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from computalot import errors

#: HAProxy's buffer (bytes; ``tune.bufsize`` through RAY_SERVE_HAPROXY_TUNE_BUFSIZE). A request
#: head must fit in it, less HAProxy's 1 KiB rewrite reserve, to be answered in the envelope at
#: all; Ray's default (16 KiB) made a 60 KB header or a 5,000-id URL an HTML 400 from HAProxy.
INGRESS_BUFSIZE = 256 * 1024
#: Longest URL (path and query) the API reads, in bytes; longer answers 414.
MAX_URL_BYTES = 8192
#: Most bytes of request headers (all of them together) the API reads; more answers 431.
MAX_HEADER_BYTES = 16384
#: How long HAProxy waits for a request's line and headers once its first byte arrived (s).
REQUEST_HEAD_TIMEOUT_S = 30
#: The statuses HAProxy 2.8 takes an ``errorfile`` for (a config with another one fails).
ERRORFILE_STATUSES = (400, 403, 404, 405, 408, 413, 425, 429, 500, 501, 502, 503, 504)


class Page(NamedTuple):
    """What the ingress says for one status; its code, and its recommended_action unless
    ``action`` names a more specific one, come from ``computalot.errors.STATUS_ERRORS``."""

    reason: str
    message: str
    action: str | None = None
    retry_after_s: int | None = None


PAGES: dict[int, Page] = {
    400: Page(
        "Bad Request",
        "the request could not be read: it is not well-formed HTTP/1.1",
        "send a well-formed HTTP/1.1 request (any HTTP client library does)",
    ),
    403: Page("Forbidden", "the ingress refused this request", "check the URL"),
    404: Page("Not Found", "no such route"),
    405: Page("Method Not Allowed", "the ingress does not accept this method"),
    408: Page(
        "Request Timeout",
        f"the request's line and headers did not arrive within {REQUEST_HEAD_TIMEOUT_S} s",
    ),
    413: Page("Payload Too Large", "the request is larger than the ingress accepts"),
    414: Page(
        "URI Too Long",
        f"the URL is over {MAX_URL_BYTES:,} bytes",
        f"keep the path and query under {MAX_URL_BYTES:,} bytes: GET /api/v1/jobs/watch takes at "
        "most 100 ids per request, so watch more jobs with several requests",
    ),
    425: Page("Too Early", "the request was sent too early"),
    429: Page("Too Many Requests", "the API is taking no more requests right now", None, 1),
    431: Page(
        "Request Header Fields Too Large",
        f"the request's headers are over {MAX_HEADER_BYTES:,} bytes together",
        "send only the headers the API needs: an API key is about 50 characters "
        "('Authorization: Bearer flk_...')",
    ),
    500: Page("Internal Server Error", "the API could not answer this request"),
    501: Page(
        "Not Implemented",
        "the ingress does not support this request's method or transfer encoding",
    ),
    502: Page(
        "Bad Gateway",
        "an API replica closed the connection before its answer was complete (it may have "
        "restarted)",
        None,
        1,
    ),
    503: Page(
        "Service Unavailable",
        "no API replica can take the request right now (starting, restarting or at capacity)",
        None,
        1,
    ),
    504: Page("Gateway Timeout", "an API replica did not answer in time", None, 1),
}
#: The statuses HAProxy's rules answer with a JSON body of their own (no errorfile possible).
BODY_STATUSES = tuple(status for status in PAGES if status not in ERRORFILE_STATUSES)


def envelope(status: int) -> bytes:
    """The JSON body the ingress answers ``status`` with."""
    page = PAGES[status]
    body = errors.envelope(status, page.message, recommended_action=page.action)
    return json.dumps(body, separators=(",", ":")).encode()


def error_page(status: int) -> bytes:
    """A whole HTTP/1.1 answer, as HAProxy's ``errorfile`` wants it."""
    reason, retry_after = PAGES[status].reason, PAGES[status].retry_after_s
    body = envelope(status)
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-cache",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _write_if_changed(path: Path, content: bytes) -> None:
    if path.exists() and path.read_bytes() == content:
        return
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def write_pages(folder: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """The errorfiles (``<status>.http``) and the bodies (``<status>.json``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pages, bodies = {}, {}
    for status in ERRORFILE_STATUSES:
        pages[status] = folder / f"{status}.http"
        _write_if_changed(pages[status], error_page(status))
    for status in BODY_STATUSES:
        bodies[status] = folder / f"{status}.json"
        _write_if_changed(bodies[status], envelope(status))
    return pages, bodies
