"""Exit codes of the ``computalot`` user commands (docs/python-sdk.md, "Exit codes").

Scripts branch on these, so they never change meaning. Every failure prints one line
``error: <code>: <message>`` (and a ``hint:``) on stderr; a traceback only with ``--debug``.
"""

from __future__ import annotations

from enum import IntEnum

from computalot.sdk.errors import (
    ApiConnectionError,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    RateLimited,
    ServerError,
    Unauthorized,
    ValidationError,
)


class Exit(IntEnum):
    """What a command's exit status means."""

    OK = 0
    JOB_NOT_COMPLETED = 1  # the job ended failed, partial or cancelled (watch, submit --watch)
    USAGE = 2  # a bad option or argument, unreadable JSON, a missing local file
    NO_ANSWER = 3  # the server could not be reached (refused, DNS, timeout)
    AUTH = 4  # 401 / 403: no token, a bad or revoked one, or a role that may not do it
    NOT_FOUND = 5  # 404: no such id or name in this account
    PAYMENT = 6  # 402: the balance cannot cover it (computalot topup)
    REFUSED = 7  # 400 / 409 / 413 / 422: the request itself was refused
    RATE_LIMITED = 8  # 429: too many requests, or a queued-task / open-job quota
    SERVER = 9  # 5xx: the server failed or is not ready
    INTERNAL = 10  # a bug in the CLI itself (run again with --debug and report it)


_BY_CLASS: tuple[tuple[type[ApiError], Exit], ...] = (
    (ApiConnectionError, Exit.NO_ANSWER),
    (Unauthorized, Exit.AUTH),
    (Forbidden, Exit.AUTH),
    (NotFound, Exit.NOT_FOUND),
    (PaymentRequired, Exit.PAYMENT),
    (BadRequest, Exit.REFUSED),
    (Conflict, Exit.REFUSED),
    (PayloadTooLarge, Exit.REFUSED),
    (ValidationError, Exit.REFUSED),
    (RateLimited, Exit.RATE_LIMITED),
    (ServerError, Exit.SERVER),
)


def exit_code(error: ApiError) -> Exit:
    """The exit status for an API error (an unknown 4xx is a refused request)."""
    for cls, code in _BY_CLASS:
        if isinstance(error, cls):
            return code
    return Exit.REFUSED
