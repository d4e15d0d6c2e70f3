"""Task-scoped tokens (``flt_…``): what a running task of a project job uses to reach the API
(docs/llms-full.md, "Environment" and "Project KV").

A token is stateless and signed, so no table holds them and no replica has to be told about a
new one: ``flt_<body>.<mac>`` where ``body`` is base64url of ``<task id>:<attempt>:<expiry>``
(expiry in Unix seconds) and ``mac`` the HMAC-SHA256 of the body under the platform's task
token secret. The dispatcher mints one per attempt (``engine.launching``); an API replica
checks the MAC (its one canonical text) and the expiry here, then the store: the token is good only while its task is
``running`` that very attempt (``auth.principal``), so it dies with the task even before its
hard expiry.

The secret is the operator's ``COMPUTALOT_TASK_TOKEN_SECRET`` or, by default, one generated
once and kept in ``<data_dir>/task_token_key`` (0600), so the tasks a restarted platform adopts
keep working tokens. It travels to the dispatcher and the API replicas as a
:class:`computalot.settings.Secrets` argument, never in an environment variable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from computalot.private_files import make_private_dirs, write_private

PREFIX = "flt_"
#: Seconds a token outlives its attempt's ``timeout_s`` at most: an attempt may wait for its
#: runtime_env or its inputs before the timeout starts counting.
EXPIRY_MARGIN_S = 900
KEY_FILE = "task_token_key"
_MAX_TOKEN_CHARS = 256


class BadTaskToken(ValueError):
    """The token is not one this platform minted, or it has expired (the message says which)."""


@dataclass(frozen=True)
class TaskClaim:
    """What a verified token names: the task, its attempt, and its hard expiry (Unix s)."""

    task_id: str
    attempt: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> bytes:
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()


def mint_task_token(
    secret: str, task_id: str, attempt: int, timeout_s: float, now: float | None = None
) -> str:
    """A token for ``attempt`` of ``task_id``, expiring ``timeout_s`` + the margin from now."""
    if not secret:
        raise ValueError("no task token secret")
    expires = int((time.time() if now is None else now) + timeout_s + EXPIRY_MARGIN_S)
    body = _b64(f"{task_id}:{attempt}:{expires}".encode())
    return f"{PREFIX}{body}.{_b64(_mac(secret, body))}"


def is_task_token(token: str) -> bool:
    return token.startswith(PREFIX)


def verify_task_token(secret: str | None, token: str, now: float | None = None) -> TaskClaim:
    """The claim of a token this platform minted and that has not expired; else
    :class:`BadTaskToken`. The MAC is compared in constant time before anything is parsed."""
    if not secret:
        raise BadTaskToken("task tokens are not enabled on this server")
    if not token.startswith(PREFIX) or len(token) > _MAX_TOKEN_CHARS:
        raise BadTaskToken("malformed task token")
    body, dot, mac = token[len(PREFIX) :].partition(".")
    if not dot or not body or not mac:
        raise BadTaskToken("malformed task token")
    # The MAC's text is compared with the one canonical encoding, not decoded first: base64
    # decoding ignores a character outside the alphabet and the unused low bits of the last
    # one, so several texts would decode to the same MAC and a token would not be one string.
    if not mac.isascii() or not hmac.compare_digest(mac, _b64(_mac(secret, body))):
        raise BadTaskToken("task token signature does not match")
    try:
        task_id, attempt, expires = _unb64(body).decode().split(":")
        claim = TaskClaim(task_id, int(attempt), int(expires))
    except ValueError:
        raise BadTaskToken("malformed task token") from None
    if claim.expires_at <= (time.time() if now is None else now):
        raise BadTaskToken("task token expired")
    return claim


def load_or_create_secret(data_dir: Path) -> str:
    """The task token secret kept in ``data_dir`` (created 0600 on first use)."""
    path = data_dir / KEY_FILE
    if path.is_file():
        existing = path.read_text().strip()
        if existing:
            return existing
    make_private_dirs(data_dir)
    fresh = secrets.token_urlsafe(32)
    write_private(path, (fresh + "\n").encode())
    return fresh


__all__ = [
    "BadTaskToken",
    "TaskClaim",
    "is_task_token",
    "load_or_create_secret",
    "mint_task_token",
    "verify_task_token",
]
