"""Callback signatures: what the platform sends in ``X-Computalot-Signature`` and how a receiver
checks it (docs/llms-full.md, "Callbacks").

The signature is ``sha256=<hex>``: the HMAC-SHA256 of the request body's exact bytes, keyed with
the account's ``callback_secret`` (``GET /api/v1/account``). A receiver must check the bytes it
received, before parsing them: JSON re-encoded by the receiver need not be the same bytes. This
module imports only the standard library, so any receiver can use it.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Computalot-Signature"
PREFIX = "sha256="


def sign_body(secret: str, body: bytes) -> str:
    """The ``X-Computalot-Signature`` value for ``body`` under ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return PREFIX + digest


def verify_callback_signature(secret: str, body: bytes | str, header: str | None) -> bool:
    """True when ``header`` (the ``X-Computalot-Signature`` value) signs ``body`` with
    ``secret``. Compared in constant time; a missing or malformed header is False."""
    if not header or not secret:
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    expected = sign_body(secret, raw)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8"))


__all__ = ["PREFIX", "SIGNATURE_HEADER", "sign_body", "verify_callback_signature"]
