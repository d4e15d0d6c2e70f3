"""The one cursor codec of every paged list (docs/llms-full.md, "Conventions").

A cursor is the JSON list of the last position a page answered, base64url without padding. A
caller hands it back unchanged; anything else it sends is a 400 ``bad_request`` naming
``cursor``, never a query run with a value of the wrong type. Below the store: the store reads
and writes cursors, the API only passes them through.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from computalot.errors import BadRequest

#: A cursor longer than this was not made here (ours are under 100 characters).
MAX_CURSOR_CHARS = 512
#: Largest integer a cursor may hold: positions and indexes are below it (SQL BIGINT fits it).
MAX_INT = 2**62
#: Longest string a cursor may hold (ids and ISO timestamps are far shorter).
MAX_TEXT = 128


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def bad_cursor() -> BadRequest:
    return BadRequest(
        "cursor is not valid",
        details=[{"loc": ["cursor"], "msg": "not a cursor this list handed out"}],
        recommended_action="pass next_cursor from the previous page unchanged, or omit it",
    )


def decode_cursor(cursor: str, *shape: type) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor`; any other text is 400.

    ``shape`` (e.g. ``str, str`` or ``int``) is the exact type of each value: a cursor that
    decodes to anything else (``[]``, ``[null]``, ``["x"]`` where a number belongs, a boolean,
    a cursor of another list) is refused, never carried into a query."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise bad_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, RecursionError):
        raise bad_cursor() from None
    if not isinstance(values, list) or len(values) != len(shape):
        raise bad_cursor()
    if not all(_is(value, kind) for value, kind in zip(values, shape, strict=True)):
        raise bad_cursor()
    return values


def decode_positions(cursor: str, count: int) -> list[int]:
    """``count`` non-negative integers (positions, indexes), or 400."""
    values = decode_cursor(cursor, *([int] * count))
    if any(value < 0 for value in values):
        raise bad_cursor()
    return values


def decode_time_and_id(cursor: str) -> tuple[datetime, str]:
    """An aware timestamp and an id (a newest-first list's last row), or 400."""
    created, last_id = decode_cursor(cursor, str, str)
    try:
        at = datetime.fromisoformat(created)
    except ValueError:
        raise bad_cursor() from None
    if at.tzinfo is None:
        raise bad_cursor()
    return at, last_id


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < MAX_INT
    if kind is str:
        return isinstance(value, str) and len(value) <= MAX_TEXT
    return isinstance(value, kind)
