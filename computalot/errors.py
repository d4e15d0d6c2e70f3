"""One exception tree for the whole platform.

Every error a caller can see is a :class:`ComputalotError`; the HTTP layer turns it into the
SPEC §2 envelope ``{"error": {"code", "message", "details", "recommended_action"}}``.

    ComputalotError (500, internal_error)
    ├── BadRequest (400, bad_request)
    │   └── UnsafeTarball (400, bad_request)
    ├── Unauthorized (401, unauthorized)
    ├── PaymentRequired (402, payment_required)
    ├── Forbidden (403, forbidden)
    ├── NotFound (404, not_found)
    ├── MethodNotAllowed (405, method_not_allowed)
    ├── Conflict (409, conflict)
    ├── PayloadTooLarge (413, payload_too_large)
    ├── ValidationFailed (422, validation_error)
    │   └── UnsatisfiableRequirements (422, unsatisfiable_requirements)
    ├── RateLimited (429, rate_limited)
    ├── QuotaExceeded (429, quota_exceeded)
    └── NotReady (503, not_ready)
"""

from __future__ import annotations

from typing import Any


class ComputalotError(Exception):
    """Base error: a stable ``code``, an HTTP ``status`` and a ``recommended_action``."""

    status: int = 500
    code: str = "internal_error"
    recommended_action: str = "retry later; if it persists, report it via POST /api/v1/feedback"

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
        """The SPEC §2 envelope body."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "recommended_action": self.recommended_action,
        }
        out: dict[str, Any] = {"error": body}
        out.update(self.extra)
        return out


class BadRequest(ComputalotError):
    status = 400
    code = "bad_request"
    recommended_action = "fix the request body and resubmit"


class UnsafeTarball(BadRequest):
    recommended_action = (
        "rebuild the tarball with relative paths only, no links, devices or FIFOs, then push again"
    )


class Unauthorized(ComputalotError):
    status = 401
    code = "unauthorized"
    recommended_action = (
        "send 'Authorization: Bearer <token>' with a valid, unrevoked API key or wallet session"
    )


class PaymentRequired(ComputalotError):
    status = 402
    code = "payment_required"
    recommended_action = (
        "fund the account (POST /api/v1/account/quotes/topup) and retry the same request"
    )


class Forbidden(ComputalotError):
    status = 403
    code = "forbidden"
    recommended_action = "ask an admin for an account or role that allows this action"


class NotFound(ComputalotError):
    status = 404
    code = "not_found"
    recommended_action = "check the id or name; list your resources to find it"


class MethodNotAllowed(ComputalotError):
    status = 405
    code = "method_not_allowed"
    recommended_action = "use one of the methods listed in the Allow header (see /llms.txt)"


class Conflict(ComputalotError):
    status = 409
    code = "conflict"
    recommended_action = "re-read the current state and retry with a different name or version"


class PayloadTooLarge(ComputalotError):
    status = 413
    code = "payload_too_large"
    recommended_action = "send a smaller body; upload large inputs as artifacts and reference them"


class ValidationFailed(ComputalotError):
    status = 422
    code = "validation_error"
    recommended_action = "fix the field named in details and resubmit"


class UnsatisfiableRequirements(ValidationFailed):
    code = "unsatisfiable_requirements"
    recommended_action = "lower the requirement or pick a preset from GET /api/v1/presets"


class RateLimited(ComputalotError):
    status = 429
    code = "rate_limited"
    recommended_action = "wait for the number of seconds in Retry-After, then retry"


class QuotaExceeded(ComputalotError):
    """A per-account quota (queued tasks, open jobs) is reached; ``details`` name it."""

    status = 429
    code = "quota_exceeded"
    recommended_action = "wait for some of your jobs to finish (or cancel some), then resubmit"


class NotReady(ComputalotError):
    status = 503
    code = "not_ready"
    recommended_action = "wait a few seconds and retry; check GET /ready"


def field_error(loc: list[str | int] | str, msg: str) -> ValidationFailed:
    """A 422 naming one failing field."""
    path: list[str | int] = [loc] if isinstance(loc, str) else list(loc)
    dotted = ".".join(str(p) for p in path)
    return ValidationFailed(f"{dotted}: {msg}", details=[{"loc": path, "msg": msg}])


__all__ = [
    "BadRequest",
    "ComputalotError",
    "Conflict",
    "Forbidden",
    "MethodNotAllowed",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "PaymentRequired",
    "QuotaExceeded",
    "RateLimited",
    "Unauthorized",
    "UnsafeTarball",
    "UnsatisfiableRequirements",
    "ValidationFailed",
    "field_error",
]
