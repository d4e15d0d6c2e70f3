"""run_task's live reporter looks up the event hub only once a task has something to say."""

from __future__ import annotations

from typing import Any

import pytest

from computalot.engine import run_task
from computalot.engine.attempt import AttemptSpec

SPEC = AttemptSpec("j", "a", "t", 0, 1, {}, ["true"], 5.0, "ns")


class _Hub:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.task_live = self

    def remote(self, *args: Any) -> None:
        self.calls.append(args)


def test_silent_task_never_looks_up_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    monkeypatch.setattr(run_task, "_hub_handle", lambda ns: lookups.append(ns))
    reporter = run_task._LiveReporter(SPEC)
    reporter.drain()
    assert lookups == []


def test_first_event_looks_up_once_then_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = _Hub()
    lookups: list[str] = []

    def lookup(namespace: str) -> _Hub:
        lookups.append(namespace)
        return hub

    monkeypatch.setattr(run_task, "_hub_handle", lookup)
    reporter = run_task._LiveReporter(SPEC)
    reporter("output", {"stream": "stdout", "text": "a\n"})
    reporter("progress", {"progress": {"pct": 50}})
    assert lookups == ["ns"]
    assert [call[4] for call in hub.calls] == ["output", "progress"]
    assert reporter.sent == 2


def test_missing_hub_is_looked_up_once_and_events_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    monkeypatch.setattr(run_task, "_hub_handle", lambda ns: lookups.append(ns))
    reporter = run_task._LiveReporter(SPEC)
    reporter("output", {"stream": "stdout", "text": "a\n"})
    reporter("output", {"stream": "stdout", "text": "b\n"})
    reporter.drain()
    assert lookups == ["ns"]
    assert reporter.sent == 0
