"""A runner's result file → the exact JSON text the store keeps (on the task's worker;
docs/llms-full.md, "Exit status and result").

Every step of reading a result runs where the task ran, in parallel with other tasks, and none
on the dispatcher: the size cap (checked before the file is read), the depth check
(:data:`~computalot.jsonsafe.MAX_JSON_DEPTH`, before any parser sees it), NaN / lone surrogates
replaced, ``_quality`` / ``_warnings`` split off, a batched task's ``{"results": [...]}`` split
per element, and the JSON text written once. The dispatcher stores that text as it is
(``jsoncodec.RawJSON``) and never decodes a result.

The answer is a few outcome fields: ``result_state`` (``ok`` | ``invalid``), the text, its size
in UTF-8 bytes, quality and warnings, or a typed error code (``invalid_result``,
``result_too_large``) and message.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import Any

from computalot.jobs.merge import ResultError, extract_quality, split_batch_result
from computalot.jsonsafe import MAX_JSON_DEPTH, load_result, nesting_exceeds, scrub
from computalot.store.jsoncodec import dumps

MISSING_WARNING = "runner exited 0 without writing $COMPUTALOT_TASK_RESULT; result is null"


def _invalid(message: str, code: str = "invalid_result") -> dict[str, Any]:
    return {"result_state": "invalid", "result_code": code, "result_error": message}


def _too_large(what: str, size: int, limit: int) -> dict[str, Any]:
    return _invalid(f"{what} is {size} bytes; the limit is {limit}", "result_too_large")


def text_bytes(text: str) -> int:
    """UTF-8 size of ``text`` without encoding it when it is ASCII (JSON written by orjson is
    ASCII unless a string holds non-ASCII characters)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def read_result_file(
    path: Path, *, batched: bool, element_count: int, max_bytes: int
) -> dict[str, Any]:
    """The outcome fields for the result file at ``path`` (see the module docstring).

    The file is the task's: it is opened without following a link (a link to a file the
    worker can read but the task cannot would hand that file over as the result) and read only
    when it is a plain file (a FIFO would block the worker forever).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _invalid("the result file is a symbolic link; write a plain file")
        return _invalid(f"the result file could not be read: {exc.strerror}")
    if fd < 0:
        if batched:
            return _invalid("batched task exited 0 without writing a result file")
        return {
            "result_state": "ok",
            "result_text": "null",
            "result_bytes": 4,
            "result_quality": 1.0,
            "result_warnings": [MISSING_WARNING],
        }
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return _invalid("the result file is not a plain file; write a plain file")
        if st.st_size > max_bytes:
            return _too_large("the result file", st.st_size, max_bytes)
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        return _too_large("the result file", len(raw), max_bytes)
    return prepare_result(raw, batched=batched, element_count=element_count, max_bytes=max_bytes)


def prepare_result(
    raw: bytes, *, batched: bool, element_count: int, max_bytes: int
) -> dict[str, Any]:
    """The outcome fields for result file content ``raw``."""
    if nesting_exceeds(raw):
        return _invalid(
            f"the result nests arrays/objects deeper than {MAX_JSON_DEPTH} levels; "
            f"the limit is {MAX_JSON_DEPTH}"
        )
    try:
        value, needs_scrub = load_result(io.BytesIO(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        return _invalid(f"result file is not valid JSON: {exc}")
    except RecursionError:
        return _invalid("result file is nested too deeply to read")
    del raw
    try:
        stored, quality, warnings = _split(value, needs_scrub, batched, element_count)
    except ResultError as exc:
        return _invalid(str(exc))
    del value
    text = dumps(stored)
    del stored
    size = text_bytes(text)
    if size > max_bytes:
        return _too_large("the stored result", size, max_bytes)
    return {
        "result_state": "ok",
        "result_text": text,
        "result_bytes": size,
        "result_quality": quality,
        "result_warnings": warnings,
    }


def _split(
    value: Any, needs_scrub: bool, batched: bool, element_count: int
) -> tuple[Any, float, list[str]]:
    """(value to store, quality, task-level warnings). A batched task stores
    ``{"elements": [{"result", "quality", "warnings"}, …]}``, its quality the elements' mean."""
    if batched:
        elements = []
        for item in split_batch_result(value, element_count):
            item, w_scrub = scrub(item) if needs_scrub else (item, [])
            clean, quality, w = extract_quality(item)
            elements.append({"result": clean, "quality": quality, "warnings": w_scrub + w})
        mean = sum(e["quality"] for e in elements) / len(elements) if elements else 1.0
        return {"elements": elements}, mean, []
    value, w_scrub = scrub(value) if needs_scrub else (value, [])
    clean, quality, w = extract_quality(value)
    return clean, quality, w_scrub + w
