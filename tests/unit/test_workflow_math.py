"""The grid, reduce and ranking math of the workflow job types (``computalot.jobs.workflows``)."""

from __future__ import annotations

import math
import statistics
import time
from types import SimpleNamespace
from typing import Any

import pytest

from computalot.errors import ValidationFailed
from computalot.jobs.fanout import task_payload
from computalot.jobs.planning import replan
from computalot.jobs.workflows import check_workflow
from computalot.jobs.workflows.benchmark import BenchmarkFold
from computalot.jobs.workflows.grid import count_points, iter_points, range_values
from computalot.jobs.workflows.map_reduce import MapReduceFold
from computalot.jobs.workflows.ranking import parse_rank_by
from computalot.jobs.workflows.reduce_ops import Reducer, histogram, parse_op, parse_reduce
from computalot.jobs.workflows.sweep import SweepFold

MOST = 100_000


def loc_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[Any]:
    return list(exc.value.details[0]["loc"])


def row(task: Any) -> SimpleNamespace:
    """A planned task as its stored row (``item`` holds the element deltas)."""
    return SimpleNamespace(item=task.items, batched=task.batched)


def body(**fields: Any) -> SimpleNamespace:
    base: dict[str, Any] = dict.fromkeys(
        [
            "type",
            "parameters",
            "fixed_payload",
            "rank_by",
            "split",
            "reduce",
            "candidates",
            "shared_payload",
            "replicas",
            "fan_out",
            "merge_strategy",
            "merge_key",
            "weight_field",
            "batch_size",
        ]
    )
    base["payload"] = {}
    return SimpleNamespace(**{**base, **fields})


# --- grid ------------------------------------------------------------------------------------
def test_linear_and_log_ranges_hit_both_ends_and_space_evenly() -> None:
    assert range_values({"min": 0, "max": 1, "num": 5}) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert range_values({"min": 0.1, "max": 0.5, "num": 5}) == [0.1, 0.2, 0.3, 0.4, 0.5]
    logs = range_values({"min": 1e-4, "max": 1, "num": 5, "scale": "log"})
    assert logs == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert range_values({"min": 3, "max": 7, "num": 1}) == [3.0]


def test_the_grid_is_the_cartesian_product_last_parameter_fastest() -> None:
    params = {"lr": [0.1, 0.01], "depth": {"values": [3, 5]}, "a": {"min": 1, "max": 2, "num": 2}}
    points = list(iter_points(params))
    assert count_points(params, MOST) == len(points) == 8
    assert points[0] == {"lr": 0.1, "depth": 3, "a": 1.0}
    assert points[1] == {"lr": 0.1, "depth": 3, "a": 2.0}
    assert points[-1] == {"lr": 0.01, "depth": 5, "a": 2.0}
    assert len({tuple(p.values()) for p in points}) == 8


def test_a_huge_grid_is_refused_without_being_built() -> None:
    params = {"a": {"min": 0, "max": 1, "num": 100_000}, "b": {"min": 0, "max": 1, "num": 100_000}}
    started = time.perf_counter()
    with pytest.raises(ValidationFailed) as exc:
        count_points(params, MOST)
    assert time.perf_counter() - started < 0.5  # 10**10 points would take hours to build
    assert loc_of(exc) == ["parameters"]
    assert count_points({"a": list(range(1000)), "b": list(range(100))}, MOST) == 100_000


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"a": []}, ["parameters", "a"]),
        ({"a": {"values": []}}, ["parameters", "a", "values"]),
        ({"a": {"min": 0, "max": 1, "num": 0}}, ["parameters", "a", "num"]),
        ({"a": {"min": 0, "max": 1, "num": -3}}, ["parameters", "a", "num"]),
        ({"a": {"min": 0, "max": 1, "num": 3, "scale": "log"}}, ["parameters", "a", "min"]),
        ({"a": {"min": -1, "max": 1, "num": 3, "scale": "log"}}, ["parameters", "a", "min"]),
        ({"a": {"min": 0, "max": 1, "num": 3, "scale": "cubic"}}, ["parameters", "a", "scale"]),
        ({"a": {"min": 2, "max": 1, "num": 3}}, ["parameters", "a", "min"]),
        ({"a": {"max": 1, "num": 3}}, ["parameters", "a", "min"]),
        ({"a": {"min": 0, "max": 1, "num": 3, "step": 1}}, ["parameters", "a", "step"]),
        ({"a": 5}, ["parameters", "a"]),
        ({}, ["parameters"]),
    ],
)
def test_bad_parameters_name_the_field(params: Any, loc: list[Any]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        count_points(params, MOST)
    assert loc_of(exc) == loc


# --- ranking -------------------------------------------------------------------------------
def test_rank_by_defaults_to_max_and_names_bad_members() -> None:
    assert parse_rank_by("score").out() == {"field": "score", "order": "max"}
    assert parse_rank_by({"field": "loss", "order": "min"}).order == "min"
    for bad, loc in (
        ({"field": "x", "order": "up"}, ["rank_by", "order"]),
        ({"order": "min"}, ["rank_by", "field"]),
        (3, ["rank_by"]),
        (None, ["rank_by"]),
    ):
        with pytest.raises(ValidationFailed) as exc:
            parse_rank_by(bad)
        assert loc_of(exc) == loc


def test_the_sweep_fold_ranks_counts_failures_and_missing_fields() -> None:
    fold = SweepFold({"rank_by": {"field": "loss", "order": "min"}})
    fold.add(0, "completed", {"loss": 0.5}, {"x": 0})
    fold.add(1, "failed", None, {"x": 1})
    fold.add(2, "completed", {"loss": 0.1}, {"x": 2})
    fold.add(3, "completed", {"other": 1}, {"x": 3})
    fold.add(4, "completed", {"loss": 0.5}, {"x": 4})
    aggregate, warnings = fold.result({0: "tsk_a", 2: "tsk_c", 4: "tsk_e"})
    assert [(r["rank"], r["params"]["x"], r["value"]) for r in aggregate["ranking"]] == [
        (1, 2, 0.1),
        (2, 0, 0.5),
        (3, 4, 0.5),  # a tie keeps grid order
    ]
    assert aggregate["best"]["task_id"] == "tsk_c"
    assert (aggregate["failed"], aggregate["missing"], aggregate["completed"]) == (1, 1, 4)
    assert warnings and "1 of 4" in warnings[0]


def test_a_rank_by_field_no_result_has_gives_an_empty_ranking_and_a_warning() -> None:
    fold = SweepFold({"rank_by": {"field": "nope", "order": "max"}})
    fold.add(0, "completed", {"loss": 1}, {"x": 0})
    aggregate, warnings = fold.result({})
    assert aggregate["ranking"] == [] and aggregate["best"] is None
    assert "is not a number in any completed result" in warnings[0]


def test_the_benchmark_fold_computes_mean_sample_std_min_max_per_candidate() -> None:
    fold = BenchmarkFold(
        {"rank_by": {"field": "t", "order": "min"}, "names": ["a", "b"], "replicas": 3}
    )
    a, b = [3.0, 5.0, 4.0], [1.0, 2.0]
    for i, v in enumerate(a):
        fold.add(i, "completed", {"t": v}, {})
    fold.add(3, "completed", {"t": b[0]}, {})
    fold.add(4, "failed", None, {})
    fold.add(5, "completed", {"t": b[1]}, {})
    aggregate, _ = fold.result()
    first, second = aggregate["ranking"]
    assert first["name"] == "b" and first["rank"] == 1 and first["n"] == 2 and first["failed"] == 1
    assert math.isclose(first["std"], statistics.stdev(b))
    assert second["mean"] == statistics.mean(a) and second["min"] == 3.0 and second["max"] == 5.0
    assert aggregate["per_replica"] == {"a": a, "b": [1.0, None, 2.0]}


# --- reduce --------------------------------------------------------------------------------
def test_reduce_operators_fold_values() -> None:
    rows: list[dict[str, Any]] = [
        {"v": 1, "w": 1, "xs": [1]},
        {"v": 2, "w": 3, "xs": [2, 3]},
        {"v": 6, "w": 0, "xs": 4},
    ]
    expect = {
        "sum": 9,
        "mean": 3.0,
        "min": 1,
        "max": 6,
        "count": 3,
        "weighted_mean:w": (1 * 1 + 2 * 3 + 6 * 0) / 4,
    }
    for text, want in expect.items():
        reducer = Reducer("v", parse_op("v", text))
        for row in rows:
            reducer.add(row, row["w"])
        assert reducer.result() == want, text
    concat = Reducer("xs", parse_op("xs", "concat"))
    for row in rows:
        concat.add(row)
    assert concat.result() == [1, 2, 3, 4]


def test_histogram_bins_cover_min_to_max_inclusive() -> None:
    h = histogram([0, 1, 2, 3, 4, 5, 6, 7, 8, 10], 5)
    assert h is not None
    assert h["counts"] == [2, 2, 2, 2, 2] and h["edges"] == [0, 2, 4, 6, 8, 10] and h["n"] == 10
    assert histogram([3, 3], 4)["counts"] == [2, 0, 0, 0]  # type: ignore[index]
    assert histogram([], 3) is None


def test_missing_or_non_numeric_fields_become_warnings_not_errors() -> None:
    fold = MapReduceFold({"reduce": {"v": "sum", "u": "mean"}}, "by", {}, {"by": "s"})
    fold.add(0, "completed", {"v": 2, "u": 1}, 0)
    fold.add(1, "completed", {"v": "two"}, 1)
    fold.add(2, "failed", None, 2)
    aggregate, warnings = fold.result()
    assert aggregate["v"] == 2 and aggregate["u"] == 1.0
    assert aggregate["_n"] == 2 and aggregate["_failed"] == 1
    assert len(warnings) == 2 and aggregate["_warnings"] == warnings


@pytest.mark.parametrize(
    ("reduce", "loc"),
    [
        ({"v": "median"}, ["reduce", "v"]),
        ({"v": "histogram:0"}, ["reduce", "v"]),
        ({"v": "histogram:x"}, ["reduce", "v"]),
        ({"v": "weighted_mean:"}, ["reduce", "v"]),
        ({"v": 3}, ["reduce", "v"]),
        ({}, ["reduce"]),
    ],
)
def test_bad_reduce_operators_name_the_field(reduce: Any, loc: list[Any]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_reduce(reduce)
    assert loc_of(exc) == loc


# --- translation into a fan-out ------------------------------------------------------------
def test_a_sweep_plans_the_same_tasks_from_its_stored_request() -> None:
    flow = check_workflow(
        body(
            type="sweep",
            parameters={"a": [1, 2], "b": {"min": 0, "max": 1, "num": 3}},
            fixed_payload={"k": 9},
            rank_by="s",
        ),
        MOST,
    )
    assert flow is not None and flow.plan.element_count == 6
    tasks = replan(flow.stored)
    assert replan(flow.stored) == tasks and len(tasks) == 6
    job = SimpleNamespace(spec={"kind": "items", "fan_out": {}}, payload=flow.payload)
    assert task_payload(job, row(tasks[4])) == {"k": 9, "a": 2, "b": 0.5}


def test_benchmark_replicas_get_their_replica_and_seed() -> None:
    flow = check_workflow(
        body(
            type="benchmark",
            candidates=[
                {"name": "x", "payload": {"algo": "x"}},
                {"name": "y", "payload": {"algo": "y"}},
            ],
            shared_payload={"seed": 40, "n": 1},
            replicas=2,
            rank_by="t",
        ),
        MOST,
    )
    assert flow is not None
    job = SimpleNamespace(spec={"kind": "items", "fan_out": {}}, payload=flow.payload)
    payloads = [task_payload(job, row(t)) for t in replan(flow.stored)]
    assert payloads == [
        {"seed": 40, "n": 1, "algo": "x", "replica": 0},
        {"seed": 41, "n": 1, "algo": "x", "replica": 1},
        {"seed": 40, "n": 1, "algo": "y", "replica": 0},
        {"seed": 41, "n": 1, "algo": "y", "replica": 1},
    ]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        (
            {"type": "sweep", "parameters": {"a": [1]}, "rank_by": "s", "split": {"field": "a"}},
            ["split"],
        ),
        (
            {"type": "sweep", "parameters": {"a": [1]}, "rank_by": "s", "fan_out": {"by": "a"}},
            ["fan_out"],
        ),
        ({"type": "structured_runner", "parameters": {"a": [1]}}, ["parameters"]),
        ({"rank_by": "s"}, ["rank_by"]),
        (
            {
                "type": "map_reduce",
                "split": {"field": "s"},
                "reduce": {"v": "sum"},
                "payload": {"s": []},
            },
            ["payload", "s"],
        ),
        (
            {
                "type": "map_reduce",
                "split": {"field": "s"},
                "reduce": {"v": "nope"},
                "payload": {"s": [1]},
            },
            ["reduce", "v"],
        ),
        (
            {
                "type": "map_reduce",
                "split": {"range_field": "n", "total": 10, "chunks": 2, "batch_size": 2},
                "reduce": {"v": "sum"},
            },
            ["split", "batch_size"],
        ),
        (
            {"type": "map_reduce", "split": {"field": "s", "chunks": 2}, "reduce": {"v": "sum"}},
            ["split"],
        ),
        (
            {"type": "benchmark", "candidates": {"a": {"seed": 1}}, "rank_by": "t"},
            ["candidates", "a", "seed"],
        ),
        ({"type": "benchmark", "candidates": {}, "rank_by": "t"}, ["candidates"]),
        ({"type": "benchmark", "candidates": {"a": {}}}, ["rank_by"]),
        (
            {"type": "sweep", "parameters": {"a": [1]}, "rank_by": "s", "payload": {"x": 1}},
            ["payload"],
        ),
    ],
)
def test_fields_of_another_type_or_bad_values_name_the_field(fields: Any, loc: list[Any]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        check_workflow(body(**fields), MOST)
    assert loc_of(exc) == loc
