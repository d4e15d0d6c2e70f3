"""Text checks shared by every request schema."""

from __future__ import annotations

from typing import Any


def reject_nul(value: Any) -> Any:
    """Refuse U+0000 in a string (or a list of them): PostgreSQL text cannot store it."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    if isinstance(value, list):
        for item in value:
            reject_nul(item)
    return value


def reject_control(value: str) -> str:
    """Refuse control characters (U+0000-U+001F, U+007F) in a short label such as a tag: they
    cannot be typed into a filter (``?tag=``) or shown in a terminal."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters (U+0000-U+001F, U+007F)")
    return value
