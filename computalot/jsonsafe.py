"""Values Python's ``json`` reads but the store or an answer cannot carry.

- ``NaN`` / ``Infinity``: not JSON. PostgreSQL refuses them in a ``json`` column and browsers'
  ``JSON.parse`` in an answer.
- a lone UTF-16 surrogate (``"\\ud800"`` without its pair): not encodable as UTF-8, so every
  answer that contains it fails.

- nesting deeper than :data:`MAX_JSON_DEPTH`: every reader has a limit (Python's ``json`` about
  1,000 levels, less in a deep call stack; orjson writes 255 and reads 1,024), and a parser that
  recurses through 100,000 levels can overflow a thread's C stack and kill the process. Bodies,
  result files and progress lines are measured *before* any parser sees them
  (:func:`nesting_exceeds`), so everything the platform stores and answers stays readable.

A request body carrying one is refused (``loads_strict``: 400, naming the problem and where). A
runner's result file is the user's program talking (``json.dump`` writes ``NaN`` by default), so
its bad values are replaced with a warning instead of failing the task: ``load_result`` says
whether a value needs it, ``scrub`` replaces them (non-finite → null, lone surrogate → U+FFFD).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from typing import IO, Any

# A JSON string (skipped) or a bare non-finite token, so one inside a string never matches.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')
# An escape (an even number of backslashes before it), not an escaped backslash + text.
_SURROGATE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")

#: The deepest nesting of arrays and objects the platform accepts in a request body, a result
#: file or a progress line. Answers wrap stored values in a few more levels (a result page, an
#: event), which every layer still reads: orjson writes up to 255 levels.
MAX_JSON_DEPTH = 100
# A complete JSON string (escapes included), removed before brackets are counted.
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


@functools.cache
def _step_table() -> Any:
    """byte -> +1 (opens), -1 (closes), in numpy: imported on first use, since the SDK-only
    install (``pip install computalot``, README) has no numpy and its CLI reads JSON here."""
    import numpy as np

    step = np.zeros(256, dtype=np.int8)
    step[list(b"[{")] = 1
    step[list(b"]}")] = -1
    return step


def _bracket_depth(brackets: bytes) -> int:
    """The deepest running sum of ``brackets`` (only ``[]{}`` bytes): numpy's C loop, or plain
    Python where numpy is not installed."""
    try:
        step = _step_table()
    except ImportError:
        return max(0, *itertools.accumulate(1 if b in b"[{" else -1 for b in brackets))
    import numpy as np

    steps = step[np.frombuffer(brackets, dtype=np.uint8)]
    return max(0, int(np.cumsum(steps, dtype=np.int32).max()))


def nesting_depth(data: bytes | str) -> int:
    """How deep arrays and objects nest in JSON text ``data`` (brackets inside strings do not
    count), without parsing it: linear time in C, no recursion, whatever the input. Invalid JSON
    (an unterminated string) can only make the count larger."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= 1:
        return raw.count(b"[") + raw.count(b"{")
    unquoted = _STRING_BYTES.sub(b"", raw) if b'"' in raw else raw
    brackets = unquoted.translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    return _bracket_depth(brackets)


def nesting_exceeds(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text ``data`` nests deeper than ``limit`` (cheap when it has few brackets)."""
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= limit:
            return False
    elif data.count(b"[") + data.count(b"{") <= limit:
        return False
    return nesting_depth(data) > limit


def depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a decoded JSON value nests arrays/objects deeper than ``limit`` (iterative, stops
    at the first branch past it). A scalar is depth 0, ``[]`` depth 1."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        children = current.values() if isinstance(current, dict) else current
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


class TooDeep(ValueError):
    """JSON text nested deeper than :data:`MAX_JSON_DEPTH`."""

    def __init__(self, what: str, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"{what} nests arrays/objects deeper than {limit} levels")
        self.limit = limit


class UnstorableJSON(json.JSONDecodeError):
    """A request body held a value the store cannot keep (a ``JSONDecodeError``, so FastAPI
    answers it like any other malformed body)."""


def loads_strict(data: bytes | str) -> Any:
    """``json.loads`` that refuses nesting deeper than :data:`MAX_JSON_DEPTH` (:class:`TooDeep`,
    checked before parsing), NaN / Infinity and lone surrogates. (NUL is refused per field where
    it would reach a ``text`` column: ``computalot.schemas.text``; PostgreSQL's ``json`` keeps
    it.)"""
    if nesting_exceeds(data):
        raise TooDeep("the JSON body")
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data

    def refuse(name: str) -> Any:
        raise UnstorableJSON(
            f"{name} is not a JSON value; send null, a string or a finite number",
            text,
            _position(text, name),
        )

    def finite(token: str) -> float:
        number = float(token)
        if not math.isfinite(number):  # 1e400 overflows to infinity
            raise UnstorableJSON(
                f"{token[:40]} is beyond the largest number JSON readers keep (about 1.8e308); "
                "send a smaller number, or the value as a string",
                text,
                max(0, text.find(token)),
            )
        return number

    value = json.loads(text, parse_constant=refuse, parse_float=finite)
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise UnstorableJSON(
            "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair), which "
            "is not text; send valid Unicode",
            text,
            _lone_surrogate_position(text),
        )
    return value


def _position(text: str, name: str) -> int:
    for match in _TOKEN.finditer(text):
        if match.group(1) == name:
            return match.start(1)
    return 0


def _lone_surrogate_position(text: str) -> int:
    escapes = list(_SURROGATE_ESCAPE.finditer(text))
    for i, match in enumerate(escapes):
        code = int(match.group()[-4:], 16)
        nxt = escapes[i + 1] if i + 1 < len(escapes) else None
        prev = escapes[i - 1] if i else None
        paired_after = code < 0xDC00 and nxt is not None and nxt.end() - 6 == match.end()
        paired_before = code >= 0xDC00 and prev is not None and prev.end() == match.end() - 6
        if not (paired_after or paired_before):
            return match.end() - 6
    return 0


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


class NonFinite:
    """Stands for a NaN / Infinity read from a result file until :func:`scrub` replaces it."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the Ray worker to the dispatcher
        return (NonFinite, (self.token,))

    def __repr__(self) -> str:
        return f"NonFinite({self.token!r})"


def load_result(fh: IO[bytes]) -> tuple[Any, bool]:
    """A result file's value (NaN / Infinity as :class:`NonFinite` marks) and whether it needs
    :func:`scrub` (False for plain JSON: the common case costs nothing more)."""
    raw = fh.read()
    marked = False

    def mark(token: str) -> NonFinite:
        nonlocal marked
        marked = True
        return NonFinite(token)

    value = json.loads(raw, parse_constant=mark)
    return value, marked or (
        b"\\u" in raw and _SURROGATE_ESCAPE.search(raw.decode(errors="replace")) is not None
    )


def scrub(value: Any) -> tuple[Any, list[str]]:
    """``value`` with NaN / Infinity (marks or floats) as ``None`` and lone surrogates as U+FFFD,
    and one warning per kind of replacement."""
    non_finite = bad_text = 0

    def text(s: str) -> str:
        nonlocal bad_text
        if _SURROGATE.search(s) is None:
            return s
        bad_text += 1
        return _SURROGATE.sub("\ufffd", s)

    def walk(v: Any) -> Any:
        nonlocal non_finite
        if isinstance(v, NonFinite) or (isinstance(v, float) and not math.isfinite(v)):
            non_finite += 1
            return None
        if isinstance(v, str):
            return text(v)
        if isinstance(v, dict):
            return {text(k): walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    clean = walk(value)
    warnings = []
    if non_finite:
        noun = "number" if non_finite == 1 else "numbers"
        warnings.append(
            f"{non_finite} non-finite {noun} (NaN/Infinity) in the result stored as null: JSON "
            "has no such values"
        )
    if bad_text:
        noun = "string" if bad_text == 1 else "strings"
        warnings.append(
            f"{bad_text} {noun} in the result held a lone UTF-16 surrogate, stored as U+FFFD"
        )
    return clean, warnings
