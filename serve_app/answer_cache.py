"""Encoded answers kept per replica, each valid only for the exact row it was built from (issue
#18 §3; bench/README.md, "API throughput").

``GET /jobs/:id`` and the ``/jobs`` list answer each job from its row alone, and a page of
``GET /results`` of a finished job from rows that no longer change. Building and encoding such
an answer cost more than reading the row, and most reads repeat the last one. So a replica keeps
each answer's bytes beside the *raw* job row it was built from (``store.raw_rows``: the values
as the driver returned them), and answers from them only when the row just read is equal:

* nothing is ever served without reading the store: the read is account-scoped (another
  account's job is 404 before this cache is asked), and a deleted job is 404;
* a change to any column of the job (status, counters, a charge, a warning, a retention
  delete) misses, on every replica at once: there is no invalidation to miss;
* a results page is only kept for a finished job with no queued or running task (the engine's
  own test that nothing of it will move: ``engine.cancelling.PENDING_QUERY``); its tasks'
  results are final, and anything that touches the job changes its row.

Entries are bounded in count and bytes and dropped oldest first.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from computalot.redact import rules_version

#: Answers kept per replica, and their bytes in all (each answer at most a tenth of it).
MAX_ENTRIES = 20_000
MAX_BYTES = 64 * 1024 * 1024


class AnswerCache:
    """``key -> (raw row, encoded answer)``: a hit needs the same key and an equal row."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: dict[Hashable, tuple[Any, bytes]] = {}
        self._rules = rules_version()

    def get(self, key: Hashable, row: Any) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] != row or self._rules != rules_version():
            self._drop(key)
            return None
        return found[1]

    def put(self, key: Hashable, row: Any, body: bytes) -> None:
        if len(body) > self.max_bytes // 10:
            return
        if self._rules != rules_version():  # redaction rules added: every answer is stale
            self.clear()
            self._rules = rules_version()
        self._drop(key)
        self._entries[key] = (row, body)
        self.bytes += len(body)
        while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        gone = self._entries.pop(key, None)
        if gone is not None:
            self.bytes -= len(gone[1])

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
