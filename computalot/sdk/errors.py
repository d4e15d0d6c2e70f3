"""Typed exceptions for the Python SDK, one per error code (``docs/llms-full.md``, "Errors").

The server answers every failure with ``{"error": {"code", "message", "details",
"recommended_action"}}``; callers want to ``except NotFound`` rather than compare status numbers,
and the CLI wants the ``recommended_action`` to print as a hint. These classes are the client's
mirror of :mod:`computalot.errors` (the server's tree); they live in their own module so that the
SDK never imports server code and the names cannot be confused.

    ApiError (any non-2xx, or no answer at all)
    ├── ApiConnectionError (status 0: connection refused, DNS, timeout)
    ├── BadRequest (400)
    ├── Unauthorized (401)
    ├── PaymentRequired (402, .quote, .payment_requirements)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409)
    │   └── NotAvailable (409 not_available: no alive node has the capability)
    ├── PayloadTooLarge (413)
    ├── ValidationError (422)
    │   └── UnsatisfiableRequirements (422 unsatisfiable_requirements)
    ├── RateLimited (429, .retry_after)
    │   └── QuotaExceeded (429 quota_exceeded: a queued-task or open-job quota)
    └── ServerError (5xx)
        └── NotReady (503)

The class is picked by the envelope's ``code`` first (a code of its own, such as
``quota_exceeded``), then by the HTTP status.
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class ApiError(Exception):
    """A request the server refused or could not answer.

    ``status`` is the HTTP status (0 when nothing came back), ``code`` the stable error code,
    ``body`` the decoded answer (a dict, or ``{"text": ...}`` when it was not JSON).
    """

    default_code = "error"
    default_action = "check the request against /llms.txt and retry"
    #: Set on a failed resumable upload: the multipart upload to resume.
    upload_id: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str | None = None,
        details: list[Any] | None = None,
        recommended_action: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or self.default_code
        self.message = message
        self.details = details or []
        self.recommended_action = recommended_action or self.default_action
        self.body = body or {}
        self.headers = headers or {}

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        return f"{prefix}{self.code}: {self.message}"


class ApiConnectionError(ApiError):
    default_code = "connection_error"
    default_action = "check --url / COMPUTALOT_URL and that the server is up (computalot up)"


class BadRequest(ApiError):
    default_code = "bad_request"
    default_action = "fix the request body and resubmit"


class Unauthorized(ApiError):
    default_code = "unauthorized"
    default_action = "pass a valid token (--token or COMPUTALOT_TOKEN)"


class PaymentRequired(ApiError):
    """402: the balance cannot cover it. ``quote`` is the quote to pay (``quote["id"]``,
    ``quote["amount_usd"]``); ``payment_requirements`` the x402 requirements that pay it
    (``{"x402Version", "resource", "accepts": [...]}``), as the ``PAYMENT-REQUIRED`` header
    carries them for an x402 client."""

    default_code = "payment_required"
    default_action = "top up (pay the quote over x402, or ask an admin for a grant), then retry"

    @property
    def quote(self) -> dict[str, Any] | None:
        quote = self.body.get("quote")
        return quote if isinstance(quote, dict) else None

    @property
    def payment_requirements(self) -> dict[str, Any] | None:
        quote = self.quote or {}
        found = quote.get("payment_requirements")
        return found if isinstance(found, dict) else None


class Forbidden(ApiError):
    default_code = "forbidden"
    default_action = "ask an admin for an account or role that allows this action"


class NotFound(ApiError):
    default_code = "not_found"
    default_action = "check the id or name; list your resources to find it"


class Conflict(ApiError):
    default_code = "conflict"
    default_action = "re-read the current state and retry"


class NotAvailable(Conflict):
    """409 ``not_available``: the operation needs a worker capability no alive node has;
    ``details`` name it."""

    default_code = "not_available"
    default_action = "wait for a node with the capability, or ask an operator to add one"


class PayloadTooLarge(ApiError):
    default_code = "payload_too_large"
    default_action = "send a smaller body; upload large inputs as artifacts"


class ValidationError(ApiError):
    default_code = "validation_error"
    default_action = "fix the field named in details and resubmit"


class UnsatisfiableRequirements(ValidationError):
    """422 ``unsatisfiable_requirements``: no node of this cluster could ever run the task."""

    default_code = "unsatisfiable_requirements"
    default_action = "ask for fewer resources or a preset this cluster has (GET /presets)"


class RateLimited(ApiError):
    """429: ``retry_after`` is the server's ``Retry-After`` in seconds (None if absent)."""

    default_code = "rate_limited"
    default_action = "wait for Retry-After seconds, then retry"

    @property
    def retry_after(self) -> float | None:
        raw = {k.lower(): v for k, v in self.headers.items()}.get("retry-after")
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


class QuotaExceeded(RateLimited):
    """429 ``quota_exceeded``: too many queued tasks or open jobs; waiting for some of them to
    finish helps, retrying at once does not (the SDK never retries it)."""

    default_code = "quota_exceeded"
    default_action = "wait for running jobs to finish (or cancel some), then resubmit"


class ServerError(ApiError):
    default_code = "internal_error"
    default_action = "retry later; if it persists, report it via POST /api/v1/feedback"


class NotReady(ServerError):
    default_code = "not_ready"
    default_action = "wait a few seconds and retry; check GET /ready"


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    402: PaymentRequired,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    503: NotReady,
}


#: Codes with a class of their own (a narrower class than their status's).
_BY_CODE: dict[str, type[ApiError]] = {
    "not_available": NotAvailable,
    "unsatisfiable_requirements": UnsatisfiableRequirements,
    "quota_exceeded": QuotaExceeded,
}


def error_class(status: int, code: str | None = None) -> type[ApiError]:
    """The exception class for an error code and HTTP status: the code's own class, else the
    status's exact match, else 5xx → ServerError."""
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ApiError


def error_from_response(response: httpx.Response) -> ApiError:
    """Build the typed error from a non-2xx answer (the body must already be read).

    A proxy or a crashed worker may answer with HTML or nothing; the status still picks the class
    and the first bytes of the text become the message, so the caller never sees a JSON error.
    """
    status = response.status_code
    body: dict[str, Any]
    try:
        decoded = response.json()
        body = decoded if isinstance(decoded, dict) else {"data": decoded}
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = {"text": response.text[:2000]}
    envelope = body.get("error")
    if isinstance(envelope, dict):
        message = str(envelope.get("message") or response.reason_phrase or "error")
        code = envelope.get("code")
        details = envelope.get("details")
        action = envelope.get("recommended_action")
    else:
        text = str(body.get("text") or "").strip() or str(envelope or "")
        message = text[:500] or response.reason_phrase or f"HTTP {status}"
        code, details, action = None, None, None
    cls = error_class(status, str(code) if code else None)
    return cls(
        message,
        status=status,
        code=str(code) if code else None,
        details=details if isinstance(details, list) else ([details] if details else []),
        recommended_action=str(action) if action else None,
        body=body,
        headers=dict(response.headers),
    )


__all__ = [
    "ApiConnectionError",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotAvailable",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "PaymentRequired",
    "QuotaExceeded",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "UnsatisfiableRequirements",
    "ValidationError",
    "error_class",
    "error_from_response",
]
