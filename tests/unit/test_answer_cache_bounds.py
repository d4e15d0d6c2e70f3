"""``serve_app.answer_cache``: a hit needs the same key and an equal row; memory stays bounded."""

from __future__ import annotations

from pathlib import Path

from computalot import redact
from serve_app.answer_cache import AnswerCache


def test_a_hit_needs_the_same_row() -> None:
    cache = AnswerCache()
    cache.put("a", ("job_1", "completed", 3), b"{1}")
    assert cache.get("a", ("job_1", "completed", 3)) == b"{1}"
    assert cache.get("b", ("job_1", "completed", 3)) is None
    assert cache.get("a", ("job_1", "completed", 4)) is None  # the row moved: dropped
    assert cache.get("a", ("job_1", "completed", 3)) is None
    assert len(cache) == 0 and cache.bytes == 0


def test_entries_and_bytes_are_bounded_oldest_first() -> None:
    cache = AnswerCache(max_entries=3, max_bytes=1000)
    for i in range(5):
        cache.put(i, i, b"x" * 10)
    assert len(cache) == 3 and cache.bytes == 30
    assert cache.get(0, 0) is None and cache.get(4, 4) == b"x" * 10
    cache.put("big", 0, b"x" * 101)  # over a tenth of the budget: never kept
    assert cache.get("big", 0) is None
    for i in range(3):
        cache.put(("b", i), i, b"y" * 90)
    assert cache.bytes <= 1000 and len(cache) <= 3
    cache.put(("b", 0), 0, b"z")  # replacing an entry gives its bytes back
    assert cache.get(("b", 0), 0) == b"z"
    assert cache.bytes == sum(len(body) for _row, body in cache._entries.values())


def test_a_new_redaction_rule_makes_every_answer_stale(tmp_path: Path) -> None:
    cache = AnswerCache()
    cache.put("a", 1, b"{}")
    redact.register_data_dir(tmp_path / "a" / "b" / "data")
    assert cache.get("a", 1) is None
