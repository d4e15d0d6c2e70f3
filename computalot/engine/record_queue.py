"""Finished attempts waiting to be recorded, kept until a cycle has stored them.

A dispatch cycle records finished attempts in one transaction, as many as fit a byte budget of
results (RECORD_BUDGET_BYTES, at least one attempt): each big result is fetched only while its
attempt is recorded, so the dispatcher holds at most about that much result text however many
big results finish at once; the rest wait for the next cycles, which follow at once.

If that transaction fails, the attempts go back to the queue (dropping them would leave their
tasks ``running`` forever), and the next cycles record them one per cycle, so one outcome the
store refuses cannot hold the others back. An outcome that fails on its own while the store
answers is unstorable: it is replaced by :class:`UnstorableOutcome`, which judging turns into a
failed attempt.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from computalot.engine.attempt import Outcome

Info = TypeVar("Info")
#: What an attempt ended with: its outcome, or the exception in its place.
Ended = Outcome | BaseException

#: Result bytes one cycle records at most (unless a single attempt's result is bigger).
RECORD_BUDGET_BYTES = 32 * 1024 * 1024


def result_bytes(outcome: Ended) -> int:
    """The size of an outcome's result text (0 for an exception)."""
    return outcome.result_bytes if isinstance(outcome, Outcome) else 0


class UnstorableOutcome(Exception):
    """An attempt's outcome the store refused on its own (its text is the store's error)."""


class RecordQueue(Generic[Info]):
    def __init__(self, budget_bytes: int = RECORD_BUDGET_BYTES) -> None:
        self.items: list[tuple[Info, Ended]] = []
        self.one_at_a_time = 0  # cycles left that take a single attempt
        self.budget_bytes = budget_bytes

    def __len__(self) -> int:
        return len(self.items)

    def add(self, info: Info, outcome: Ended) -> None:
        self.items.append((info, outcome))

    def take(self) -> list[tuple[Info, Ended]]:
        """What this cycle records: the attempts whose results fit the byte budget (at least
        one, in the order they finished), or one attempt while isolating a failure."""
        if self.one_at_a_time:
            count = min(1, len(self.items))
        else:
            count, total = 0, 0
            for _info, outcome in self.items:
                total += result_bytes(outcome)
                if count and total > self.budget_bytes:
                    break
                count += 1
        if count == len(self.items):
            batch, self.items = self.items, []
        else:
            batch, self.items = self.items[:count], self.items[count:]
        return batch

    def recorded(self, batch: list[tuple[Info, Ended]]) -> None:
        if batch and self.one_at_a_time:
            self.one_at_a_time -= 1

    def failed(self, batch: list[tuple[Info, Ended]], error: BaseException, store_ok: bool) -> None:
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
