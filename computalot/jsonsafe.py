"""NaN and Infinity: Python's ``json`` reads and writes them, JSON has no such values.

PostgreSQL refuses them in a ``json`` column and browsers' ``JSON.parse`` refuses them in an
answer, so they never get into the store:

- a request body carrying one is refused (``loads_strict``: 400, naming the token and where);
- a runner's result file is the user's program talking (``json.dump`` writes ``NaN`` by
  default), so its non-finite numbers become ``null`` with a warning instead of failing the task:
  ``load_result`` marks them, ``scrub`` replaces the marks and counts them per element.
"""

from __future__ import annotations

import json
import re
from typing import IO, Any

# A JSON string (skipped) or a bare non-finite token, so one inside a string never matches.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')


class NonFiniteJSON(json.JSONDecodeError):
    """A request body held ``NaN`` / ``Infinity`` (a ``JSONDecodeError``, so FastAPI answers it
    like any other malformed body)."""


def loads_strict(data: bytes | str) -> Any:
    """``json.loads`` that refuses the non-finite constants Python would accept."""
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data

    def refuse(name: str) -> Any:
        raise NonFiniteJSON(
            f"{name} is not a JSON value; send null, a string or a finite number",
            text,
            _position(text, name),
        )

    return json.loads(text, parse_constant=refuse)


def _position(text: str, name: str) -> int:
    for match in _TOKEN.finditer(text):
        if match.group(1) == name:
            return match.start(1)
    return 0


class NonFinite:
    """Stands for a NaN / Infinity read from a result file until :func:`scrub` replaces it."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the Ray worker to the dispatcher
        return (NonFinite, (self.token,))

    def __repr__(self) -> str:
        return f"NonFinite({self.token!r})"


def load_result(fh: IO[bytes]) -> tuple[Any, int]:
    """A result file's value with each non-finite number as a :class:`NonFinite` mark, and how
    many there were (0: the value is plain JSON and needs no :func:`scrub`)."""
    seen = 0

    def mark(token: str) -> NonFinite:
        nonlocal seen
        seen += 1
        return NonFinite(token)

    return json.load(fh, parse_constant=mark), seen


def scrub(value: Any) -> tuple[Any, int]:
    """``value`` with every :class:`NonFinite` (and any float NaN / Infinity) as ``None``, and
    how many were replaced."""
    count = 0

    def walk(v: Any) -> Any:
        nonlocal count
        if isinstance(v, NonFinite) or (isinstance(v, float) and not _finite(v)):
            count += 1
            return None
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value), count


def _finite(x: float) -> bool:
    return x - x == 0.0


def scrub_warning(count: int) -> str:
    noun = "number" if count == 1 else "numbers"
    return (
        f"{count} non-finite {noun} (NaN/Infinity) in the result stored as null: JSON has no such "
        "values"
    )
