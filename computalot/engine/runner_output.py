"""A running command's output, as the runner protocol reads it (docs/llms-full.md, "Output",
"Progress lines").

Both pipes are read in pieces of at most MAX_LINE_BYTES and split into lines; a stdout line
``COMPUTALOT_PROGRESS:{json}`` becomes a ``progress`` event, every other line is text. Text is
kept as tails (each stream's and the interleaved one: the last TAIL_CHARS) and, when someone
listens, coalesced into at most one ``output`` event per stream per FLUSH_INTERVAL_S; a stream
that writes faster than that has the excess skipped, and says so.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import selectors
import time
from collections.abc import Callable
from typing import Any

from computalot.jsonsafe import nesting_exceeds, scrub

log = logging.getLogger("computalot.engine.runner")

OnEvent = Callable[[str, dict[str, Any]], None]

TAIL_CHARS = 10 * 1024  # kept per tail (stdout, stderr, interleaved)
MAX_LINE_BYTES = 64 * 1024  # longer lines are cut into pieces of this size
FLUSH_INTERVAL_S = 0.1  # live output is coalesced into at most one event per stream per interval
MAX_PENDING_CHARS = 64 * 1024  # live output kept per stream between flushes; the excess is skipped
PROGRESS_PREFIX = b"COMPUTALOT_PROGRESS:"


def _parse_progress(raw: bytes) -> dict[str, Any] | None:
    """The progress object; NaN / Infinity (Python's ``json`` writes them) read as null, lone
    surrogates as U+FFFD (see ``computalot.jsonsafe``). A line nested deeper than
    ``MAX_JSON_DEPTH`` is not progress (it stays plain output)."""
    if nesting_exceeds(raw):
        return None
    try:
        obj = json.loads(raw, parse_constant=_null)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    return scrub(obj)[0] if b"\\u" in raw else obj  # lone surrogates -> U+FFFD


def _null(_token: str) -> None:
    return None


class _Stream:
    def __init__(self, name: str, file: Any) -> None:
        self.name = name
        self.file = file
        self.fd: int = file.fileno()
        self.buf = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.mid_line = False  # last piece was cut at MAX_LINE_BYTES, not at a newline
        self.tail = ""
        self.pending = ""  # live output not yet sent to on_event
        self.skipped = 0  # chars dropped from pending since the last flush
        self.open = True


def _keep_tail(tail: str, text: str) -> str:
    tail += text
    return tail[-TAIL_CHARS:] if len(tail) > 2 * TAIL_CHARS else tail


class Output:
    """The output of one child: its two pipes (registered with ``sel``), tails, progress and
    live events. Every method runs in the thread that called ``run_command``."""

    def __init__(self, proc: Any, on_event: OnEvent | None, sel: selectors.BaseSelector) -> None:
        self.on_event = on_event
        self.sel = sel
        self.streams = [_Stream("stdout", proc.stdout), _Stream("stderr", proc.stderr)]
        self.output_tail = ""
        self.last_progress: dict[str, Any] | None = None
        self.next_flush = 0.0
        for s in self.streams:
            sel.register(s.fd, selectors.EVENT_READ, s)

    def any_open(self) -> bool:
        return any(s.open for s in self.streams)

    def any_pending(self) -> bool:
        return any(s.pending or s.skipped for s in self.streams)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(kind, data)
        except Exception:
            log.debug("runner on_event(%r) failed; ignored", kind, exc_info=True)

    def read(self, s: _Stream) -> None:
        try:
            data = os.read(s.fd, MAX_LINE_BYTES)
        except OSError:
            data = b""
        if not data:
            self.eof(s)
            return
        s.buf += data
        start = 0
        while True:
            nl = s.buf.find(b"\n", start, start + MAX_LINE_BYTES)
            if nl >= 0:
                end = nl + 1
            elif len(s.buf) - start >= MAX_LINE_BYTES:
                end = start + MAX_LINE_BYTES
            else:
                break
            self.line(s, bytes(s.buf[start:end]))
            start = end
        del s.buf[:start]

    def eof(self, s: _Stream, process: bool = True) -> None:
        if process:
            if s.buf:
                self.line(s, bytes(s.buf))
            tail = s.decoder.decode(b"", final=True)
            if tail:
                self.text(s, tail)
        s.buf.clear()
        s.open = False
        self.sel.unregister(s.fd)
        s.file.close()

    def line(self, s: _Stream, raw: bytes) -> None:
        at_start, s.mid_line = not s.mid_line, not raw.endswith(b"\n")
        if at_start and s.name == "stdout" and raw.startswith(PROGRESS_PREFIX):
            progress = _parse_progress(raw[len(PROGRESS_PREFIX) :])
            if progress is not None:
                self.last_progress = progress
                self.emit("progress", {"progress": progress})
                return
        self.text(s, s.decoder.decode(raw))

    def text(self, s: _Stream, text: str) -> None:
        if "\x00" in text:  # binary output: PostgreSQL text cannot hold NUL
            text = text.replace("\x00", "\ufffd")
        s.tail = _keep_tail(s.tail, text)
        self.output_tail = _keep_tail(self.output_tail, text)
        if self.on_event is not None:
            s.pending += text
            if len(s.pending) > 2 * MAX_PENDING_CHARS:
                s.skipped += len(s.pending) - MAX_PENDING_CHARS
                s.pending = s.pending[-MAX_PENDING_CHARS:]

    def flush(self) -> None:
        for s in self.streams:
            if s.pending or s.skipped:
                note = f"[computalot: {s.skipped} characters skipped]\n" if s.skipped else ""
                self.emit("output", {"stream": s.name, "text": note + s.pending})
                s.pending, s.skipped = "", 0
                self.next_flush = time.monotonic() + FLUSH_INTERVAL_S
