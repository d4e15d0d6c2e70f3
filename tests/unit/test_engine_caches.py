"""Every cache the engine keeps per job, revision or task is bounded (``bench/soak.py`` checks
the processes' memory over 10,000 jobs)."""

from __future__ import annotations

from computalot.engine.hub import Bounded
from computalot.engine.launching import RevisionCache, RevisionInfo
from computalot.engine.settling import WarmNodes


def test_bounded_dict_drops_the_oldest_entry() -> None:
    tails: Bounded[str, int] = Bounded(3)
    for i in range(10):
        tails[f"task-{i}"] = i
    assert list(tails) == ["task-7", "task-8", "task-9"]


def test_warm_nodes_are_recorded_only_after_the_commit_and_bounded() -> None:
    warm = WarmNodes(limit=2)
    key = ("prj_1", "rev_1", "node_1")
    assert warm.new({key}) == {key}
    assert warm.new({key}) == set(), "already being recorded in this transaction"
    warm.rolled_back()
    assert warm.new({key}) == {key}, "a rolled-back cycle never counts as recorded"
    warm.committed()
    assert warm.new({key}) == set()
    for n in range(5):
        warm.new({("prj_1", "rev_1", f"node_{n + 2}")})
        warm.committed()
    assert len(warm) == 2


def test_revision_cache_keeps_the_recently_used() -> None:
    cache = RevisionCache(limit=2)
    info = RevisionInfo("hash", "/revisions/r", 1, None, {}, ".", "host")
    for rid in ("rev_a", "rev_b"):
        cache.put(rid, info)
    assert cache.get("rev_a") is info  # now the most recently used
    cache.put("rev_c", info)
    assert set(cache.revisions) == {"rev_a", "rev_c"}
