"""The metrics board: one named Ray actor holding every source's latest snapshot.

Sources (API replicas, the dispatcher) push their whole registry every
``metrics_push_interval_s`` seconds under an id unique to their incarnation (a restarted
replica is a new source). A source silent for ``LIVE_S`` no longer counts as live: its gauges
leave the total, its counters and histograms stay (a Prometheus counter must not go
backwards). After ``FOLD_S`` its cumulative figures are folded into one ``retired`` snapshot,
so replicas coming and going over months do not grow the board. The board lives as long as
the Ray cluster (detached); if it is lost, a new one starts from the live sources' figures,
which Prometheus reads as a counter reset, as it would for any restarted exporter.
See docs/metrics.md, "How replicas add up".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

from computalot.metrics.snapshot import Labels, Snapshot, add_into, gauge, merge

BOARD_NAME = "computalot-metrics"
#: Seconds without a push after which a source is no longer live (its gauges are dropped).
LIVE_S = 10.0
#: Seconds without a push after which a gone source's figures join ``retired``.
FOLD_S = 600.0


@dataclass
class Source:
    kind: str
    snapshot: Snapshot
    at: float  # monotonic seconds of the last push


class Board:
    """The merge state, free of Ray (unit-tested as it is)."""

    def __init__(self, live_s: float = LIVE_S, fold_s: float = FOLD_S) -> None:
        self.live_s = live_s
        self.fold_s = fold_s
        self.sources: dict[str, Source] = {}
        self.retired: Snapshot = {}

    def push(self, source_id: str, kind: str, snapshot: Snapshot, now: float | None = None) -> None:
        """Keep ``snapshot`` as ``source_id``'s figures (it replaces the previous one)."""
        self.sources[source_id] = Source(kind, snapshot, time.monotonic() if now is None else now)

    def merged(self, now: float | None = None) -> Snapshot:
        """Every source's figures summed (``snapshot.merge``), plus how many sources of each
        kind are live (``computalot_metrics_sources``)."""
        now = time.monotonic() if now is None else now
        self._fold(now)
        live = [s for s in self.sources.values() if now - s.at <= self.live_s]
        gone = [s.snapshot for s in self.sources.values() if now - s.at > self.live_s]
        total = merge([s.snapshot for s in live], [self.retired, *gone])
        counts: dict[Labels, float] = {(("kind", "api"),): 0.0, (("kind", "engine"),): 0.0}
        for source in live:
            key = (("kind", source.kind),)
            counts[key] = counts.get(key, 0.0) + 1
        total["computalot_metrics_sources"] = gauge(
            "computalot_metrics_sources",
            "Processes whose figures are live in this answer, by kind (api replica, engine)",
            counts,
        )
        return total

    def exchange(
        self, source_id: str, kind: str, snapshot: Snapshot, now: float | None = None
    ) -> Snapshot:
        """Push, then answer the merge: what a scrape asks, in one call. Every figure a
        scrape ever saw was pushed first, so no later scrape, from any replica, sees less."""
        self.push(source_id, kind, snapshot, now)
        return self.merged(now)

    def _fold(self, now: float) -> None:
        for source_id in [k for k, s in self.sources.items() if now - s.at > self.fold_s]:
            add_into(self.retired, self.sources.pop(source_id).snapshot, cumulative_only=True)


class BoardActor:
    """The board as a Ray actor (named ``BOARD_NAME``, one per namespace)."""

    def __init__(self) -> None:
        self.board = Board()

    def push(self, source_id: str, kind: str, snapshot: Snapshot) -> None:
        self.board.push(source_id, kind, snapshot)

    def exchange(self, source_id: str, kind: str, snapshot: Snapshot) -> Snapshot:
        return self.board.exchange(source_id, kind, snapshot)

    def ping(self) -> str:
        return "ok"


RemoteBoard = ray.remote(BoardActor)


def board_options(namespace: str) -> dict[str, Any]:
    """Detached (it outlives the replica that first asked for it), no CPU, restarted by Ray if
    its process dies, created by whichever source asks first."""
    return {
        "name": BOARD_NAME,
        "namespace": namespace,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_restarts": -1,
        "get_if_exists": True,
    }


def board_handle(namespace: str) -> Any:
    """The board's handle, created if missing."""
    return RemoteBoard.options(**board_options(namespace)).remote()
