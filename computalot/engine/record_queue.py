"""Finished attempts waiting to be recorded, kept until a cycle has stored them.

A dispatch cycle records every finished attempt in one transaction. If that transaction fails,
the attempts go back to the queue (dropping them would leave their tasks ``running`` forever),
and the next cycles record them one per cycle, so one outcome the store refuses cannot hold the
others back. An outcome that fails on its own while the store answers is unstorable: it is
replaced by :class:`UnstorableOutcome`, which judging turns into a failed attempt.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

Info = TypeVar("Info")


class UnstorableOutcome(Exception):
    """An attempt's outcome the store refused on its own (its text is the store's error)."""


class RecordQueue(Generic[Info]):
    def __init__(self) -> None:
        self.items: list[tuple[Info, Any]] = []
        self.one_at_a_time = 0  # cycles left that take a single attempt

    def __len__(self) -> int:
        return len(self.items)

    def add(self, info: Info, outcome: Any) -> None:
        self.items.append((info, outcome))

    def take(self) -> list[tuple[Info, Any]]:
        """What this cycle records: everything, or one attempt while isolating a failure."""
        if self.one_at_a_time:
            batch, self.items = self.items[:1], self.items[1:]
        else:
            batch, self.items = self.items, []
        return batch

    def recorded(self, batch: list[tuple[Info, Any]]) -> None:
        if batch and self.one_at_a_time:
            self.one_at_a_time -= 1

    def failed(self, batch: list[tuple[Info, Any]], error: BaseException, store_ok: bool) -> None:
        """The cycle that took ``batch`` failed with ``error``; ``store_ok``: a trivial query
        still works (so a lone outcome that failed is the cause, not an outage)."""
        if not batch:
            return
        if len(batch) > 1:
            self.one_at_a_time = max(self.one_at_a_time, len(batch))
            self.items = batch + self.items
            return
        ((info, outcome),) = batch
        if store_ok and not isinstance(outcome, UnstorableOutcome):
            first_line = (str(error).splitlines() or [""])[0][:300].replace("\x00", "\ufffd")
            outcome = UnstorableOutcome(f"{type(error).__name__}: {first_line}")
        self.one_at_a_time = max(self.one_at_a_time, 1)
        self.items = [(info, outcome), *self.items]
