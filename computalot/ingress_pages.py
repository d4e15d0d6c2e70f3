"""The ingress's answers in the API's error envelope (SPEC §2), and the limits they name.

Used by :mod:`computalot.ingress`, which installs them into Ray Serve's HAProxy config: as
``errorfile``\\ s (whole HTTP answers) for the statuses HAProxy 2.8 lets one replace, and as JSON
bodies for the two head-size answers (414, 431) that its ``http-request return`` rules send.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

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

_RETRY = "retry: reads are safe to repeat, and so is POST /api/v1/jobs with an Idempotency-Key"
#: status -> (reason, code, message, recommended_action, Retry-After seconds or None)
ENVELOPES: dict[int, tuple[str, str, str, str, int | None]] = {
    400: (
        "Bad Request",
        "bad_request",
        "the request could not be read: it is not well-formed HTTP/1.1",
        "send a well-formed HTTP/1.1 request (any HTTP client library does)",
        None,
    ),
    403: ("Forbidden", "forbidden", "the ingress refused this request", "check the URL", None),
    404: (
        "Not Found",
        "not_found",
        "no such route",
        "check the path against /llms.txt or GET /api/v1/docs",
        None,
    ),
    405: (
        "Method Not Allowed",
        "method_not_allowed",
        "the ingress does not accept this method",
        "use the method /llms.txt lists for the route",
        None,
    ),
    408: (
        "Request Timeout",
        "request_timeout",
        f"the request's line and headers did not arrive within {REQUEST_HEAD_TIMEOUT_S} s",
        "send the whole request head at once, then retry",
        None,
    ),
    413: (
        "Payload Too Large",
        "payload_too_large",
        "the request is larger than the ingress accepts",
        "see the size limits in /llms-full.txt (Errors) and send less",
        None,
    ),
    414: (
        "URI Too Long",
        "uri_too_long",
        f"the URL is over {MAX_URL_BYTES:,} bytes",
        f"keep the path and query under {MAX_URL_BYTES:,} bytes: GET /api/v1/jobs/watch takes at "
        "most 100 ids per request, so watch more jobs with several requests",
        None,
    ),
    425: ("Too Early", "too_early", "the request was sent too early", "retry the request", None),
    429: (
        "Too Many Requests",
        "rate_limited",
        "the API is taking no more requests right now",
        "retry after the Retry-After header's seconds",
        1,
    ),
    431: (
        "Request Header Fields Too Large",
        "headers_too_large",
        f"the request's headers are over {MAX_HEADER_BYTES:,} bytes together",
        "send only the headers the API needs: an API key is about 50 characters "
        "('Authorization: Bearer flk_...')",
        None,
    ),
    500: (
        "Internal Server Error",
        "internal_error",
        "the API could not answer this request",
        "retry; if it keeps failing, report it with POST /api/v1/feedback",
        None,
    ),
    501: (
        "Not Implemented",
        "not_implemented",
        "the ingress does not support this request's method or transfer encoding",
        "send HTTP/1.1 with a Content-Length or a chunked body",
        None,
    ),
    502: (
        "Bad Gateway",
        "bad_gateway",
        "an API replica closed the connection before its answer was complete (it may have "
        "restarted)",
        _RETRY,
        1,
    ),
    503: (
        "Service Unavailable",
        "not_ready",
        "no API replica can take the request right now (starting, restarting or at capacity)",
        "retry after the Retry-After header's seconds; GET /ready names the part that is not ready",
        1,
    ),
    504: ("Gateway Timeout", "gateway_timeout", "an API replica did not answer in time", _RETRY, 1),
}
#: The statuses HAProxy's rules answer with a JSON body of their own (no errorfile possible).
BODY_STATUSES = tuple(status for status in ENVELOPES if status not in ERRORFILE_STATUSES)


def envelope(status: int) -> bytes:
    """The JSON body the ingress answers ``status`` with."""
    _reason, code, message, action, _retry = ENVELOPES[status]
    error = {"code": code, "message": message, "details": [], "recommended_action": action}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def error_page(status: int) -> bytes:
    """A whole HTTP/1.1 answer, as HAProxy's ``errorfile`` wants it."""
    reason, _code, _message, _action, retry_after = ENVELOPES[status]
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
