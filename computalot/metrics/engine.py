"""The dispatcher's figures: dispatch latency and attempt durations (docs/metrics.md).

The dispatcher keeps them in its own registry and pushes it to the metrics board like a
replica does (``reporter``), as source ``engine``; its store statements are observed too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from computalot.metrics.reporter import Reporter
from computalot.metrics.snapshot import Snapshot, take
from computalot.metrics.store_figures import statement_histogram, watch_statements

DISPATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


class EngineMetrics:
    def __init__(self, store: Any, namespace: str, epoch: str, interval_s: float) -> None:
        self.registry = CollectorRegistry()
        self.dispatch_latency = Histogram(
            "computalot_dispatch_latency_seconds",
            "Seconds from a job's submit to the launch of each of its tasks' first attempt, "
            "by the job's priority",
            ["priority"],
            registry=self.registry,
            buckets=DISPATCH_BUCKETS,
        )
        self.task_duration = Histogram(
            "computalot_task_attempt_duration_seconds",
            "Seconds from an attempt's launch to its outcome reaching the dispatcher",
            registry=self.registry,
            buckets=DURATION_BUCKETS,
        )
        watch_statements(store, statement_histogram(self.registry))
        self.events = 0  # attempts claimed and ended: the reporter pushes when it moved
        self.reporter = Reporter(
            f"engine-{epoch}", "engine", self.take, namespace, interval_s, lambda: self.events
        )

    def take(self) -> Snapshot:
        return take(self.registry)

    def claimed(self, launches: Iterable[tuple[Any, Any, int]], jobs: Mapping[str, Any]) -> None:
        """Observe the dispatch latency of first attempts among ``launches`` (job, task,
        attempt); ``jobs`` maps job ids to rows with ``priority`` and ``created_at``."""
        now = datetime.now(UTC)
        self.events += 1
        for job, _task, attempt in launches:
            row = jobs.get(job.id)
            if attempt != 1 or row is None:
                continue
            created = row.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            waited = max(0.0, (now - created).total_seconds())
            self.dispatch_latency.labels(row.priority).observe(waited)

    def ended(self, started: float) -> None:
        """An attempt launched at monotonic ``started`` ended now."""
        self.task_duration.observe(max(0.0, time.monotonic() - started))
        self.events += 1
