"""Merging replicas' registries into the platform's figures (docs/metrics.md, "How replicas
add up"): sums, gone and restarted sources, monotonic counters across scrapes."""

from __future__ import annotations

import itertools
import random

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from computalot.metrics.board import Board
from computalot.metrics.snapshot import Snapshot, merge, render, take


class Replica:
    """A replica's registry with the API's kinds of series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "computalot_http_requests", "r", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "computalot_http_request_duration_seconds",
            "l",
            ["route"],
            registry=self.registry,
            buckets=(0.1, 1.0),
        )
        self.streams = Gauge("computalot_sse_streams", "s", registry=self.registry)

    def snap(self) -> Snapshot:
        return take(self.registry)


def parsed(snapshot: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The rendered text read back by prometheus-client's own parser."""
    found = {}
    for family in text_string_to_metric_families(render(snapshot).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_counters_histograms_and_gauges_sum_over_replicas_and_render_as_prometheus_text() -> None:
    a, b = Replica(), Replica()
    a.requests.labels("/x", "200").inc(3)
    b.requests.labels("/x", "200").inc(4)
    b.requests.labels("/x", "404").inc()
    a.latency.labels("/x").observe(0.05)
    b.latency.labels("/x").observe(0.5)
    b.latency.labels("/x").observe(5)
    a.streams.set(2)
    b.streams.set(5)
    got = parsed(merge([a.snap(), b.snap()]))
    assert got[("computalot_http_requests_total", (("route", "/x"), ("status", "200")))] == 7
    assert got[("computalot_http_requests_total", (("route", "/x"), ("status", "404")))] == 1
    bucket = "computalot_http_request_duration_seconds_bucket"
    assert got[(bucket, (("le", "0.1"), ("route", "/x")))] == 1
    assert got[(bucket, (("le", "1.0"), ("route", "/x")))] == 2
    assert got[(bucket, (("le", "+Inf"), ("route", "/x")))] == 3
    count = ("computalot_http_request_duration_seconds_count", (("route", "/x"),))
    assert got[count] == 3
    total = got[("computalot_http_request_duration_seconds_sum", (("route", "/x"),))]
    assert abs(total - 5.55) < 1e-9
    assert got[("computalot_sse_streams", ())] == 7
    assert not any(name.endswith("_created") for name, _ in got)


def test_a_silent_replica_keeps_its_counters_but_not_its_gauges_and_is_folded_later() -> None:
    board = Board(live_s=10, fold_s=100)
    a, b = Replica(), Replica()
    a.requests.labels("/x", "200").inc(3)
    a.streams.set(2)
    b.requests.labels("/x", "200").inc(4)
    b.streams.set(1)
    board.push("a", "api", a.snap(), now=0)
    merged = parsed(board.exchange("b", "api", b.snap(), now=1))
    assert merged[("computalot_sse_streams", ())] == 3
    assert merged[("computalot_metrics_sources", (("kind", "api"),))] == 2
    key = ("computalot_http_requests_total", (("route", "/x"), ("status", "200")))
    # a stops pushing (its process died): its requests still count, its streams are gone.
    merged = parsed(board.exchange("b", "api", b.snap(), now=50))
    assert merged[key] == 7
    assert merged[("computalot_sse_streams", ())] == 1
    assert merged[("computalot_metrics_sources", (("kind", "api"),))] == 1
    # Long after, a is folded into the retired figures: the same totals, one source fewer.
    merged = parsed(board.exchange("b", "api", b.snap(), now=500))
    assert set(board.sources) == {"b"}
    assert merged[key] == 7


def test_counters_never_go_backwards_across_scrapes_of_any_replica_and_restarts() -> None:
    """Random traffic on three replicas, scrapes on random ones, a replica restarted (a new
    source starting from zero): every counter sample only grows from scrape to scrape."""
    rng = random.Random(7)
    board = Board(live_s=5, fold_s=20)
    replicas = {f"r{i}": Replica() for i in range(3)}
    fresh = itertools.count(3)
    previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for now in range(200):
        for replica in replicas.values():
            for _ in range(rng.randrange(3)):
                replica.requests.labels(rng.choice(["/a", "/b"]), "200").inc()
                replica.latency.labels("/a").observe(rng.random() * 2)
        if now % 2:  # periodic pushes, not every replica every time
            name = rng.choice(list(replicas))
            board.push(name, "api", replicas[name].snap(), now=now)
        if now % 37 == 0:  # a replica dies and Serve starts a new one
            replicas.pop(rng.choice(list(replicas)))
            replicas[f"r{next(fresh)}"] = Replica()
        asked = rng.choice(list(replicas))
        got = parsed(board.exchange(asked, "api", replicas[asked].snap(), now=now))
        for key, value in got.items():
            if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
                assert value >= previous.get(key, 0.0), (now, key)
        previous = got
    assert len(board.sources) < 10  # restarted replicas were folded
