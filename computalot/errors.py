"""One exception tree and one error envelope for the whole platform.

Every error a caller can see is a :class:`ComputalotError`; every non-2xx answer, whoever writes
it (a route, FastAPI's own 404/405/422, the body-limit middleware, the ingress's pages), is the
envelope :func:`envelope` builds: ``{"error": {"code", "message", "details",
"recommended_action"}}`` (docs/llms-full.md, "Errors"). :data:`STATUS_ERRORS` is the one table of
what a status answers when the raise site names nothing more specific. Nothing here imports
FastAPI, so the SDK side and the ingress read the same table.

    ComputalotError (500, internal_error)
    ├── BadRequest (400, bad_request)
    │   └── UnsafeTarball (400, bad_request)
    ├── Unauthorized (401, unauthorized)
    ├── PaymentRequired (402, payment_required)
    ├── Forbidden (403, forbidden)
    ├── NotFound (404, not_found)
    ├── MethodNotAllowed (405, method_not_allowed)
    ├── Conflict (409, conflict)
    │   └── NotAvailable (409, not_available)
    ├── PayloadTooLarge (413, payload_too_large)
    ├── RangeNotSatisfiable (416, range_not_satisfiable)
    ├── UnsupportedMediaType (415, unsupported_media_type)
    ├── ValidationFailed (422, validation_error)
    │   └── UnsatisfiableRequirements (422, unsatisfiable_requirements)
    ├── RateLimited (429, rate_limited)
    ├── QuotaExceeded (429, quota_exceeded)
    ├── Unimplemented (501, not_implemented)
    └── NotReady (503, not_ready)
"""

from __future__ import annotations

import base64
import json
from typing import Any

_RETRY = "retry: reads are safe to repeat, and so is POST /api/v1/jobs with an Idempotency-Key"
_TOP_UP = (
    "top up: pay the quote in this answer with an x402 client (sign one of 'accepts' and resend"
    " with a PAYMENT-SIGNATURE header, or POST it to /api/v1/account/quotes/{id}/pay/x402),"
    " or ask an admin for a credit grant; then retry"
)

#: HTTP status -> (code, recommended_action): what an answer with this status says when its
#: raise site names nothing more specific. The ingress's own statuses are here too.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "fix the request body and resubmit"),
    401: (
        "unauthorized",
        "send 'Authorization: Bearer <token>' with a valid, unrevoked API key or wallet session",
    ),
    402: ("payment_required", _TOP_UP),
    403: ("forbidden", "ask an admin for an account or role that allows this action"),
    404: (
        "not_found",
        "check the path against /llms.txt, and the id or name against your own listings",
    ),
    405: ("method_not_allowed", "use one of the methods in the Allow header (see /llms.txt)"),
    408: ("request_timeout", "send the whole request head at once, then retry"),
    409: ("conflict", "re-read the current state and retry with a different name or version"),
    413: ("payload_too_large", "send a smaller body; see the size limits in /llms-full.txt"),
    414: ("uri_too_long", "send a shorter URL"),
    415: ("unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'"),
    416: (
        "range_not_satisfiable",
        "ask for a Range inside the file; Content-Range: bytes */<size> gives its size",
    ),
    422: ("validation_error", "fix the field named in details and resubmit"),
    425: ("too_early", "retry the request"),
    429: ("rate_limited", "wait for the number of seconds in Retry-After, then retry"),
    431: ("headers_too_large", "send only the headers the API needs"),
    500: ("internal_error", "retry later; if it persists, report it via POST /api/v1/feedback"),
    501: ("not_implemented", "send HTTP/1.1 with a Content-Length or a chunked body"),
    502: ("bad_gateway", _RETRY),
    503: ("not_ready", "wait a few seconds and retry; GET /ready names the part that is not ready"),
    504: ("gateway_timeout", _RETRY),
}


def _row(status: int) -> tuple[str, str]:
    return STATUS_ERRORS.get(status) or STATUS_ERRORS[400 if status < 500 else 500]


def status_code(status: int) -> str:
    return _row(status)[0]


def status_action(status: int) -> str:
    return _row(status)[1]


def envelope(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    recommended_action: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The body of every error answer; ``code`` and ``recommended_action`` default to
    :data:`STATUS_ERRORS`'s for ``status``; ``extra`` goes beside ``error`` (e.g. ``checks``)."""
    body = {
        "code": code or status_code(status),
        "message": message,
        "details": details or [],
        "recommended_action": status_action(status)
        if recommended_action is None
        else recommended_action,
    }
    return {"error": body, **extra}


class ComputalotError(Exception):
    """Base error: a stable ``code``, an HTTP ``status`` and a ``recommended_action``."""

    status: int = 500
    code: str = status_code(500)
    recommended_action: str = status_action(500)

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        recommended_action: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if recommended_action is not None:
            self.recommended_action = recommended_action
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}

    def to_dict(self) -> dict[str, Any]:
        """The envelope body (:func:`envelope`)."""
        return envelope(
            self.status,
            self.message,
            code=self.code,
            details=self.details,
            recommended_action=self.recommended_action,
            **self.extra,
        )


class BadRequest(ComputalotError):
    status = 400
    code = status_code(400)
    recommended_action = status_action(400)


class UnsafeTarball(BadRequest):
    recommended_action = (
        "rebuild the tarball with relative paths only, no links, devices or FIFOs, then push again"
    )


class Unauthorized(ComputalotError):
    status = 401
    code = status_code(401)
    recommended_action = status_action(401)


class PaymentRequired(ComputalotError):
    """402: the available balance cannot cover the request (docs/llms-full.md, "Billing").

    The envelope adds ``quote`` (``computalot.billing.quotes``) and, beside it, the x402
    payment requirements the quote carries (``x402Version``, ``resource``, ``accepts``), and
    the ``PAYMENT-REQUIRED`` header holds the same requirements base64-encoded as x402 v2
    clients read them, so a stock x402 client can pay the quote and retry the request.
    ``reason`` names why an offered payment was refused (it becomes the requirements'
    ``error``)."""

    status = 402
    code = "payment_required"
    recommended_action = _TOP_UP

    def __init__(
        self,
        message: str,
        *,
        quote: dict[str, Any],
        reason: str | None = None,
        details: list[dict[str, Any]] | None = None,
        recommended_action: str | None = None,
    ) -> None:
        requirements = dict(quote.get("payment_requirements") or {})
        if reason:
            requirements["error"] = reason
        body_accepts = [
            {
                **accept,
                "maxAmountRequired": accept.get("amount"),
                "resource": (requirements.get("resource") or {}).get("url"),
            }
            for accept in requirements.get("accepts", [])
        ]
        extra: dict[str, Any] = {"quote": quote}
        headers: dict[str, str] = {}
        if requirements:
            # The requirements' own "error" (the refusal reason) stays in the header: the
            # envelope's "error" is the error object.
            extra.update({k: v for k, v in requirements.items() if k != "error"})
            if reason:
                extra["x402Error"] = reason
            extra["accepts"] = body_accepts
            encoded = json.dumps(requirements, separators=(",", ":")).encode()
            headers["PAYMENT-REQUIRED"] = base64.b64encode(encoded).decode()
        if recommended_action is None and quote.get("id"):
            recommended_action = _TOP_UP.replace("{id}", str(quote["id"]))
        super().__init__(
            message,
            details=details,
            recommended_action=recommended_action,
            headers=headers,
            extra=extra,
        )
        self.quote = quote


class Forbidden(ComputalotError):
    status = 403
    code = status_code(403)
    recommended_action = status_action(403)


class NotFound(ComputalotError):
    status = 404
    code = status_code(404)
    recommended_action = status_action(404)


class MethodNotAllowed(ComputalotError):
    status = 405
    code = status_code(405)
    recommended_action = status_action(405)


class Conflict(ComputalotError):
    status = 409
    code = status_code(409)
    recommended_action = status_action(409)


class NotAvailable(Conflict):
    """409: the request is valid, but what it needs (a recipe operation, a worker capability)
    is not available on this deployment now; ``details`` name it."""

    code = "not_available"
    recommended_action = "see GET /api/v1/recipes/:name for what runs on this deployment now"


class PayloadTooLarge(ComputalotError):
    status = 413
    code = status_code(413)
    recommended_action = status_action(413)


class RangeNotSatisfiable(ComputalotError):
    status = 416
    code = status_code(416)
    recommended_action = status_action(416)


class ValidationFailed(ComputalotError):
    status = 422
    code = status_code(422)
    recommended_action = status_action(422)


class UnsatisfiableRequirements(ValidationFailed):
    code = "unsatisfiable_requirements"
    recommended_action = "lower the requirement or pick a preset from GET /api/v1/presets"


class RateLimited(ComputalotError):
    status = 429
    code = status_code(429)
    recommended_action = status_action(429)


class QuotaExceeded(ComputalotError):
    """A per-account quota (queued tasks, open jobs) is reached; ``details`` name it."""

    status = 429
    code = "quota_exceeded"
    recommended_action = "wait for some of your jobs to finish (or cancel some), then resubmit"


class UnsupportedMediaType(ComputalotError):
    status = 415
    code = status_code(415)
    recommended_action = status_action(415)


class Unimplemented(ComputalotError):
    """501: the route exists and its checks ran, but what it promises is not built yet."""

    status = 501
    code = "not_implemented"
    recommended_action = "see docs/llms-full.md for what this route does today"


class NotReady(ComputalotError):
    status = 503
    code = status_code(503)
    recommended_action = status_action(503)


def field_error(loc: list[str | int] | str, msg: str) -> ValidationFailed:
    """A 422 naming one failing field."""
    path: list[str | int] = [loc] if isinstance(loc, str) else list(loc)
    dotted = ".".join(str(p) for p in path)
    return ValidationFailed(f"{dotted}: {msg}", details=[{"loc": path, "msg": msg}])


__all__ = [
    "STATUS_ERRORS",
    "BadRequest",
    "ComputalotError",
    "Conflict",
    "Forbidden",
    "MethodNotAllowed",
    "NotAvailable",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "PaymentRequired",
    "QuotaExceeded",
    "RangeNotSatisfiable",
    "RateLimited",
    "Unauthorized",
    "Unimplemented",
    "UnsafeTarball",
    "UnsatisfiableRequirements",
    "UnsupportedMediaType",
    "ValidationFailed",
    "envelope",
    "field_error",
    "status_action",
    "status_code",
]
