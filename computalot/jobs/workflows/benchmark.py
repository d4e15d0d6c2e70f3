"""``type: benchmark`` (docs/workflows.md, "benchmark"): each candidate run ``replicas`` times,
ranked by the mean of a result field.

Run ``i`` of a candidate gets ``shared_payload`` + the candidate's overrides + ``"replica": i`` and
``"seed": base_seed + i`` (``base_seed`` = ``shared_payload.seed``, default 0), so every candidate
sees the same seeds. Elements are candidate-major: element ``e`` is candidate
``e // replicas``, replica ``e % replicas``; the job spec keeps the names, so no element carries
a name the runner never asked for.
"""

from __future__ import annotations

import math
from typing import Any

from computalot.errors import field_error
from computalot.jobs.fanout import FanoutPlan, TaskPlan, plan_tasks
from computalot.jobs.workflows.ranking import (
    MISSING_VALUE,
    RankBy,
    missing_warning,
    parse_rank_by,
    ranked_value,
)
from computalot.states import TaskStatus

DEFAULT_REPLICAS = 3
RESERVED = ("replica", "seed")


def parse_candidates(candidates: Any) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, overrides)]`` from ``{"name": {...}}`` or ``[{"name", "payload"}]``."""
    pairs: list[tuple[Any, Any, list[str | int]]] = []
    if isinstance(candidates, dict):
        pairs = [(n, o, ["candidates", n]) for n, o in candidates.items()]
    elif isinstance(candidates, list):
        for i, entry in enumerate(candidates):
            if not isinstance(entry, dict):
                raise field_error(["candidates", i], 'must be {"name", "payload"}')
            extra = sorted(set(entry) - {"name", "payload"})
            if extra:
                raise field_error(
                    ["candidates", i, extra[0]], "unknown field; allowed: name, payload"
                )
            pairs.append(
                (entry.get("name"), entry.get("payload", {}), ["candidates", i, "payload"])
            )
            if not isinstance(entry.get("name"), str):
                raise field_error(["candidates", i, "name"], "required: a non-empty string")
    else:
        raise field_error(
            ["candidates"], 'required: {"name": {payload overrides}} or [{"name", "payload"}]'
        )
    if not pairs:
        raise field_error(["candidates"], "must name at least one candidate")
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for name, overrides, loc in pairs:
        if not name or len(name) > 256:
            raise field_error(["candidates"], "candidate names must be 1-256 characters")
        if name in seen:
            raise field_error(["candidates"], f"candidate {name!r} is named twice")
        seen.add(name)
        if not isinstance(overrides, dict):
            raise field_error(loc, "must be an object of payload overrides")
        for key in RESERVED:
            if key in overrides:
                raise field_error([*loc, key], "is set by the benchmark for each replica")
        out.append((name, overrides))
    return out


def check_benchmark(
    candidates: Any,
    shared_payload: dict[str, Any] | None,
    replicas: int | None,
    rank_by: Any,
    batch_size: int | None,
    most: int,
) -> tuple[FanoutPlan, dict[str, Any], dict[str, Any]]:
    """(plan counted, not built; the stored plan input; the job spec's ``workflow``)."""
    named = parse_candidates(candidates)
    runs = DEFAULT_REPLICAS if replicas is None else replicas
    base = dict(shared_payload or {})
    seed = base.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or abs(seed) > 2**53:
        raise field_error(["shared_payload", "seed"], "must be an integer (the base seed)")
    if "replica" in base:
        raise field_error(["shared_payload", "replica"], "is set by the benchmark for each run")
    count = len(named) * runs
    if count > most:
        raise field_error(
            ["replicas"],
            f"{len(named)} candidates x {runs} replicas = {count} runs; at most {most}",
        )
    ranking = parse_rank_by(rank_by)
    plan = FanoutPlan("items", count, [], batch_size=batch_size, spec={})
    stored = {
        "payload": base,
        "fan_out": None,
        "batch_size": batch_size,
        "workflow": {"type": "benchmark", "candidates": named, "replicas": runs, "seed": seed},
    }
    spec = {
        "type": "benchmark",
        "rank_by": ranking.out(),
        "names": [name for name, _ in named],
        "replicas": runs,
    }
    return plan, stored, spec


def benchmark_items(named: list[Any], replicas: int, seed: int) -> list[dict[str, Any]]:
    return [
        {**overrides, "replica": i, "seed": seed + i}
        for _name, overrides in named
        for i in range(replicas)
    ]


def benchmark_tasks(stored: dict[str, Any]) -> list[TaskPlan]:
    flow = stored["workflow"]
    items = benchmark_items(flow["candidates"], flow["replicas"], flow["seed"])
    return plan_tasks(items, stored.get("batch_size"))


def _stats(values: list[float]) -> dict[str, Any]:
    """mean, sample standard deviation (n - 1; 0 for one run), min, max, n."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n}


class BenchmarkFold:
    """Reads a benchmark's elements one at a time; :meth:`result` ranks the candidates."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.rank_by = RankBy(**spec["rank_by"])
        self.names: list[str] = list(spec["names"])
        self.replicas = int(spec["replicas"])
        self.per_replica: dict[str, list[Any]] = {n: [None] * self.replicas for n in self.names}
        self.failed: dict[str, int] = dict.fromkeys(self.names, 0)
        self.completed = 0
        self.missing = 0

    def add(self, index: int, status: str, result: Any, item: Any) -> None:
        candidate, replica = divmod(index, self.replicas)
        if candidate >= len(self.names):
            return
        name = self.names[candidate]
        if status != TaskStatus.COMPLETED:
            self.failed[name] += status == TaskStatus.FAILED
            return
        self.completed += 1
        value = ranked_value(result, self.rank_by.field)
        if value is MISSING_VALUE:
            self.missing += 1
            return
        self.per_replica[name][replica] = value

    def result(self) -> tuple[dict[str, Any], list[str]]:
        rows = []
        unranked = []
        for name in self.names:
            values = [v for v in self.per_replica[name] if v is not None]
            if not values:
                unranked.append(name)
                continue
            rows.append({"name": name, **_stats(values), "failed": self.failed[name]})
        rows.sort(key=lambda r: self.rank_by.sort_key(r["mean"]))  # stable: request order on ties
        ranking = [{"rank": i, **row} for i, row in enumerate(rows, start=1)]
        warnings = []
        warning = missing_warning("benchmark", self.missing, self.completed, self.rank_by)
        if warning:
            warnings.append(warning)
        if unranked and ranking:
            warnings.append(
                f"candidates without a single usable run are not ranked: {', '.join(unranked)}"
            )
        aggregate = {
            "rank_by": self.rank_by.out(),
            "replicas": self.replicas,
            "ranking": ranking,
            "best": ranking[0] if ranking else None,
            "per_replica": self.per_replica,
            "unranked": unranked,
            "failed": sum(self.failed.values()),
            "missing": self.missing,
        }
        return aggregate, warnings
