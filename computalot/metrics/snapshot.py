"""Snapshots of a prometheus-client registry as plain data, their merge, and their text.

A snapshot is ``{family name: Family}``; a family's samples are keyed by (sample name, sorted
label pairs), so two sources' samples of one series meet on one key. Merging sums counters
and histogram buckets, counts and sums (of every source ever seen: a gone source's last
figures stay in the total, so a counter never goes backwards), and gauges of the live
sources only (a gone replica holds no SSE stream). ``_created`` samples are dropped: a
platform-wide series has no single creation time. See docs/metrics.md, "How replicas add up".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, Labels]
#: Family types whose samples only grow while their source lives: summed over all sources.
CUMULATIVE = frozenset({"counter", "histogram", "summary"})


@dataclass
class Family:
    """One metric family: its type, help text and samples."""

    kind: str
    help: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


Snapshot = dict[str, Family]


def take(registry: CollectorRegistry) -> Snapshot:
    """The registry's families now, as plain (picklable) data."""
    found: Snapshot = {}
    for metric in registry.collect():
        family = found.setdefault(metric.name, Family(metric.type, metric.documentation))
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            key = (sample.name, tuple(sorted(sample.labels.items())))
            family.samples[key] = family.samples.get(key, 0.0) + float(sample.value)
    return found


def add_into(total: Snapshot, snapshot: Snapshot, *, cumulative_only: bool = False) -> None:
    """Add ``snapshot``'s samples into ``total`` (in place); ``cumulative_only`` skips gauges."""
    for name, family in snapshot.items():
        if cumulative_only and family.kind not in CUMULATIVE:
            continue
        into = total.get(name)
        if into is None:
            into = total[name] = Family(family.kind, family.help)
        for key, value in family.samples.items():
            into.samples[key] = into.samples.get(key, 0.0) + value


def merge(live: Iterable[Snapshot], gone: Iterable[Snapshot] = ()) -> Snapshot:
    """The platform's figures: every series of ``live`` summed, plus the counters and
    histograms of ``gone`` sources (their gauges no longer hold)."""
    total: Snapshot = {}
    for snapshot in live:
        add_into(total, snapshot)
    for snapshot in gone:
        add_into(total, snapshot, cumulative_only=True)
    return total


def gauge(name: str, help_text: str, values: dict[Labels, float]) -> Family:
    """A gauge family from ``{label pairs: value}``."""
    return Family("gauge", help_text, {(name, labels): v for labels, v in values.items()})


class _Frozen(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for name in sorted(self.snapshot):
            family = self.snapshot[name]
            metric = Metric(name, family.help, family.kind)
            for (sample_name, labels), value in sorted(family.samples.items(), key=_order):
                metric.samples.append(Sample(sample_name, dict(labels), value))
            yield metric


def _order(item: tuple[SampleKey, float]) -> tuple[str, Labels, float]:
    """Series in a stable order; a histogram's buckets by their bound, ``+Inf`` last."""
    (sample_name, labels), _value = item
    le = dict(labels).get("le")
    bound = float(le) if le is not None else 0.0
    return sample_name, tuple((k, v) for k, v in labels if k != "le"), bound


def render(snapshot: Snapshot) -> bytes:
    """Prometheus text exposition of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Frozen(snapshot))
    return generate_latest(registry)
