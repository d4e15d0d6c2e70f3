"""What ``GET /metrics`` answers: the platform's figures, whichever replica is asked.

This replica's snapshot is exchanged with the metrics board for the merge of every replica
and the engine (``computalot.metrics.board``); the store's figures (jobs by status, tasks by
priority) are added; ``computalot_metrics_board_up`` says whether the merge was had (0: the
board could not be reached and the answer holds this replica's figures only).
See docs/metrics.md.
"""

from __future__ import annotations

import logging
from typing import Any

from computalot.metrics.snapshot import gauge, render
from computalot.metrics.store_figures import StoreFigures

log = logging.getLogger("computalot.metrics")


async def platform_metrics(state: Any) -> bytes:
    """The Prometheus text of the platform's figures (``state`` is the app's state)."""
    metrics = state.metrics
    if metrics.reporter is None:
        metrics.start_reporting(state)
    merged = await metrics.reporter.exchange()
    total = merged if merged is not None else metrics.take()
    figures: StoreFigures = metrics.store_figures
    try:
        total.update(await figures.take(state.store))
    except Exception as exc:  # the store is down: /ready says so; the rest still answers
        log.warning("metrics: store figures unavailable (%s)", type(exc).__name__)
    total["computalot_metrics_board_up"] = gauge(
        "computalot_metrics_board_up",
        "1 when this answer merges every replica and the engine, 0 when it is this replica's "
        "own (the metrics board was not reachable)",
        {(): 1.0 if merged is not None else 0.0},
    )
    return render(total)
