"""How JSON columns (and the job routes' answers) are written: orjson, several times faster than
``json.dumps`` on results and events (bench/README.md), falling back to the standard library for what orjson
refuses (integers beyond 64 bits, strings that are not valid UTF-8), so every value the standard
library can write is written.

Reading stays with ``json.loads``: orjson reads an integer beyond 64 bits as a float, which would
silently change a stored result. Reading never raises: a stored value that cannot be read back
(nested beyond what the reader's recursion allows, written by an older version before the
platform measured depth at its doors, or not JSON at all) comes back as :class:`Unreadable`, so
one bad row cannot fail a query that reads many (a ``/jobs`` page, a dispatcher cycle, the
reconcile at start). The dispatcher quarantines a job whose definition is unreadable.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from computalot.jsonsafe import MAX_JSON_DEPTH, depth_exceeds, scrub

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: "a"} -> {"1": "a"}, as json.dumps writes it
#: How deep an answer may nest: stored values are at most MAX_JSON_DEPTH deep, and answers wrap
#: them in a few levels; anything deeper (an old row) is cut here, so every client can read it.
ANSWER_DEPTH = MAX_JSON_DEPTH + 20
#: The deepest stored value that is read back: what the doors let in plus what the platform wraps
#: around it when storing (a batched result's element, an event's data).
STORED_DEPTH = MAX_JSON_DEPTH + 10


class Unreadable(dict[str, str]):
    """Stands in for a stored JSON value that could not be read back. A plain dict to every
    writer (``{"_unreadable": "<why>"}``), so answers and events carrying it stay valid JSON;
    ``isinstance(value, Unreadable)`` tells the code that must not use it as data."""

    def __init__(self, reason: str) -> None:
        super().__init__(_unreadable=reason)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # crosses Ray process boundaries as itself
        return (Unreadable, (self.reason,))


def loads(text: str | bytes) -> Any:
    """A stored JSON column's value; :class:`Unreadable` instead of raising. (A value deep
    enough to trouble a reader with a lower recursion limit than this process's is caught where
    it would matter: :func:`is_unusable` for a job's definition, ``clip_depth`` for answers.)"""
    try:
        return json.loads(text)
    except RecursionError:
        return Unreadable("the stored value is nested too deeply to read")
    except ValueError as exc:
        return Unreadable(f"the stored value is not valid JSON: {str(exc)[:200]}")


def is_unreadable(value: Any) -> bool:
    return isinstance(value, Unreadable)


def is_unusable(value: Any, limit: int = STORED_DEPTH) -> bool:
    """Whether a value read from the store must not be used as data: it could not be read, or
    it nests deeper than ``limit`` (deeper than anything the platform writes: a runner or a
    client with a lower recursion limit than this process could not read it)."""
    return isinstance(value, Unreadable) or depth_exceeds(value, limit)


class RawJSON:
    """JSON text to store exactly as it is: :func:`dumps` passes it through, so a result the
    task's worker already checked and wrote is never decoded and encoded again on its way to
    the store (``engine.result_file``). A wrapper, not a ``str`` subclass: building one copies
    nothing, however big the text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJSON({len(self.text)} characters)"


def clip_depth(value: Any, limit: int = ANSWER_DEPTH) -> Any:
    """``value`` with every container deeper than ``limit`` replaced by a short string
    (iterative: no recursion, whatever the depth)."""
    marker = f"(cut: nested deeper than {limit} levels)"
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, int]] = [(root, 0, 0)]  # (parent, key, depth of the child)
    while stack:
        parent, key, depth = stack.pop()
        child = parent[key]
        if isinstance(child, dict):
            if depth >= limit:
                parent[key] = marker
                continue
            copy = dict(child)
            parent[key] = copy
            stack.extend((copy, k, depth + 1) for k in copy)
        elif isinstance(child, list):
            if depth >= limit:
                parent[key] = marker
                continue
            copy_list = list(child)
            parent[key] = copy_list
            stack.extend((copy_list, i, depth + 1) for i in range(len(copy_list)))
    return root[0]


def dumps(value: Any) -> str:
    if type(value) is RawJSON:
        return value.text
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        try:
            return json.dumps(value)
        except RecursionError:
            return json.dumps(clip_depth(value))


def dumps_fast(value: Any) -> bytes | None:
    """What :func:`dumps_bytes` writes when orjson can write it, else None: answers joined from
    parts encoded apart stay byte-for-byte what one :func:`dumps_bytes` of the whole writes."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return None


def dumps_bytes(value: Any) -> bytes:
    """UTF-8 JSON for an HTTP answer. What orjson refuses is written by the standard library
    after ``clip_depth`` and ``scrub`` (lone surrogates -> U+FFFD, NaN -> null) with ``str`` for
    unknown types, so an answer is always valid JSON that any client can read."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        clean, _warnings = scrub(clip_depth(value))
        return json.dumps(clean, ensure_ascii=False, default=str).encode("utf-8")
