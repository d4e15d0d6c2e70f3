"""Identifiers and bearer secrets (docs/llms-full.md, "Auth").

Below every layer: the store mints ids with it, and the auth layer checks tokens with it.

Ids and secrets both come from :mod:`secrets`, so they are unguessable: an id leaks nothing
about other ids, and a bearer token cannot be enumerated. Only the hash of a secret token is
ever stored; the plain token is shown once, at issue time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

ID_PREFIXES: frozenset[str] = frozenset(
    {
        "acct",
        "key",
        "job",
        "tsk",
        "art",
        "rev",
        "hold",
        "quote",
        "led",
        "wch",
        "upl",
        "fb",
        "wss",
        "prj",
    }
)
"""Every id prefix the platform hands out; a typo in a caller fails fast instead of minting
ids nobody can route."""

SECRET_KINDS: frozenset[str] = frozenset({"flk", "fls", "flt"})
"""``flk`` API key, ``fls`` wallet session, ``flt`` task-scoped token."""

_ID_BYTES = 16  # 128 bits, above the 96-bit floor the docs promise
_SECRET_BYTES = 32  # 256 bits: a bearer secret is the whole credential
_SECRET_BODY_LEN = -(-_SECRET_BYTES * 4 // 3)  # token_urlsafe emits unpadded base64: 43 chars
_ID_BODY_LEN = -(-_ID_BYTES * 4 // 3)  # 22 chars

_SECRET_RE = re.compile(rf"^(flk|fls|flt)_[A-Za-z0-9_-]{{{_SECRET_BODY_LEN}}}$")
_ID_RE = re.compile(rf"^([a-z]+)_[A-Za-z0-9_-]{{{_ID_BODY_LEN}}}$")


def new_id(prefix: str) -> str:
    """A fresh public id such as ``job_…`` with 128 random bits.

    Random rather than sequential so that ids reveal neither volume nor each other, and so a
    guessed id cannot reach another account's resource (the data layer still scopes reads).
    """
    if prefix not in ID_PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}; use one of {sorted(ID_PREFIXES)}")
    return f"{prefix}_{secrets.token_urlsafe(_ID_BYTES)}"


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` has the shape of an id minted by :func:`new_id` with ``prefix``.

    Lets a route turn a garbled path parameter into a 404 without a database round trip.
    """
    match = _ID_RE.fullmatch(value)
    return match is not None and match.group(1) == prefix


def new_secret_token(kind: str) -> str:
    """A fresh bearer secret such as ``flk_…`` (256 random bits); show it once, store its hash."""
    if kind not in SECRET_KINDS:
        raise ValueError(f"unknown token kind {kind!r}; use one of {sorted(SECRET_KINDS)}")
    return f"{kind}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def hash_token(token: str) -> str:
    """SHA-256 hex digest of ``token``, the only form in which secrets are stored.

    A fast, unsalted hash is right here, unlike for passwords: the token carries 256 bits of
    randomness, so there is nothing to brute-force and no dictionary to precompute, and a slow
    KDF would only add latency to every authenticated request. Being deterministic, the digest
    doubles as the indexed lookup key for the token's row.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_equal(a_hash: str, b_hash: str) -> bool:
    """Constant-time comparison of two token hashes, so timing leaks no matching prefix."""
    return hmac.compare_digest(a_hash.encode("utf-8"), b_hash.encode("utf-8"))


def token_kind(token: str) -> str | None:
    """``"flk"``, ``"fls"`` or ``"flt"`` for a well-formed secret token, else ``None``.

    Checks prefix, charset and exact length so garbled or truncated tokens are rejected before
    any hashing or storage lookup.
    """
    match = _SECRET_RE.fullmatch(token)
    return match.group(1) if match else None


__all__ = [
    "ID_PREFIXES",
    "SECRET_KINDS",
    "hash_token",
    "is_id",
    "new_id",
    "new_secret_token",
    "token_kind",
    "tokens_equal",
]
