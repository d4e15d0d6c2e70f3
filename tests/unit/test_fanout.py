"""Fan-out planning (docs/llms-full.md, "Fan-out"): shapes, batching, chunk boundaries and every 422."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from computalot.errors import ValidationFailed
from computalot.jobs.fanout import (
    MAX_ELEMENTS,
    MISSING,
    FanoutPlan,
    TaskPlan,
    chunk_spans,
    element_field,
    element_payload,
    plan_fanout,
    task_payload,
)


@dataclass
class StoredJob:
    """What the store holds of a job that ``task_payload`` reads."""

    spec: dict[str, Any]
    payload: dict[str, Any]


@dataclass
class StoredTask:
    batched: bool
    item: Any


def payload_of(kind: str, base: dict[str, Any], fan_out: Any, plan: TaskPlan) -> Any:
    """The payload the dispatcher launches ``plan``'s task with, from the rows submit writes."""
    job = StoredJob({"kind": kind, "fan_out": fan_out}, base)
    return task_payload(job, StoredTask(plan.batched, plan.items))


def payloads(plan: FanoutPlan, base: dict[str, Any], fan_out: dict[str, Any] | None) -> list[Any]:
    return [payload_of(plan.kind, base, fan_out, t) for t in plan.tasks]


def check_contiguous(plan: FanoutPlan) -> None:
    """Tasks cover elements 0..n-1 in order with no gap or overlap."""
    start = 0
    for i, task in enumerate(plan.tasks):
        assert task.index == i
        assert task.element_start == start
        if task.items is not None:
            assert len(task.items) == task.element_count
        start += task.element_count
    assert start == plan.element_count


def expect_422(loc: list[str | int], payload: Any, fan_out: Any, batch_size: Any = None) -> str:
    with pytest.raises(ValidationFailed) as info:
        plan_fanout(payload, fan_out, batch_size)
    assert info.value.status == 422
    assert info.value.details[0]["loc"] == loc
    return info.value.message


# --- shapes -------------------------------------------------------------------------------------


def test_single_task_without_fan_out() -> None:
    base = {"x": 1}
    plan = plan_fanout(base, None, None)
    assert plan.kind == "single" and plan.element_count == 1
    assert plan.tasks == [TaskPlan(0, 0, 1, None, False)]
    out = payload_of("single", base, None, plan.tasks[0])
    assert out == {"x": 1} and out is not base


def test_by_replaces_field_with_each_element() -> None:
    base = {"models": ["a", "b", "c"], "k": 1}
    fan_out = {"by": "models"}
    plan = plan_fanout(base, fan_out, None)
    assert plan.kind == "by" and plan.element_count == 3
    assert plan.merge_key_default == "element" and plan.spec == {"by": "models"}
    assert [t.items for t in plan.tasks] == [["a"], ["b"], ["c"]]
    assert not any(t.batched for t in plan.tasks)
    check_contiguous(plan)
    assert payloads(plan, base, fan_out) == [
        {"models": "a", "k": 1},
        {"models": "b", "k": 1},
        {"models": "c", "k": 1},
    ]
    # the spec alone is enough to build payloads; the base payload is never mutated
    assert payloads(plan, base, plan.spec) == payloads(plan, base, fan_out)
    assert base == {"models": ["a", "b", "c"], "k": 1}


def test_by_with_object_elements_defaults_to_index_keys() -> None:
    plan = plan_fanout({"m": [{"n": 1}, "x"]}, {"by": "m"}, None)
    assert plan.merge_key_default == "index"
    assert plan_fanout({"m": [True, 1]}, {"by": "m"}, None).merge_key_default == "index"
    assert plan_fanout({"m": [1, 2.5, "z"]}, {"by": "m"}, None).merge_key_default == "element"


def test_items_shallow_merge() -> None:
    base = {"a": 1, "nested": {"x": 1}, "keep": True}
    items = [{"a": 2}, {"nested": {"y": 2}}, {"new": 3}]
    fan_out = {"items": items}
    plan = plan_fanout(base, fan_out, None)
    assert plan.kind == "items" and plan.element_count == 3 and plan.spec == {}
    assert plan.tasks[1].items == [items[1]]
    check_contiguous(plan)
    assert payloads(plan, base, fan_out) == [
        {"a": 2, "nested": {"x": 1}, "keep": True},
        {"a": 1, "nested": {"y": 2}, "keep": True},
        {"a": 1, "nested": {"x": 1}, "keep": True, "new": 3},
    ]


def test_chunks_payloads() -> None:
    base = {"total_seeds": 999, "other": "x"}
    fan_out = {"chunks": 3, "range_field": "total_seeds", "total": 10}
    plan = plan_fanout(base, fan_out, None)
    assert plan.kind == "chunks" and plan.element_count == 3 and plan.batch_size is None
    assert plan.spec == {"range_field": "total_seeds"}
    check_contiguous(plan)
    out = payloads(plan, base, fan_out)
    assert [p["total_seeds"] for p in out] == [4, 3, 3]
    assert [p["chunk"] for p in out] == [
        {"index": 0, "count": 3, "start": 0, "end": 4},
        {"index": 1, "count": 3, "start": 4, "end": 7},
        {"index": 2, "count": 3, "start": 7, "end": 10},
    ]
    assert all(p["other"] == "x" for p in out)


@pytest.mark.parametrize(("total", "count"), [(10, 3), (10, 10), (10, 1), (7, 4), (100_001, 7)])
def test_chunk_spans_contiguous_and_balanced(total: int, count: int) -> None:
    spans = chunk_spans(total, count)
    assert len(spans) == count
    assert spans[0]["start"] == 0 and spans[-1]["end"] == total
    for a, b in itertools.pairwise(spans):
        assert a["end"] == b["start"]
    sizes = [s["end"] - s["start"] for s in spans]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True)  # remainder goes to the first chunks


# --- batching -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "inner", "both"])
def test_by_batched_with_partial_last_batch(where: str) -> None:
    base = {"m": list(range(7)), "k": "v"}
    fan_out: dict[str, Any] = {"by": "m"}
    top = 3 if where in ("top", "both") else None
    if where in ("inner", "both"):
        fan_out["batch_size"] = 3
    plan = plan_fanout(base, fan_out, top)
    assert plan.batch_size == 3 and plan.element_count == 7
    assert [(t.element_start, t.element_count) for t in plan.tasks] == [(0, 3), (3, 3), (6, 1)]
    assert all(t.batched for t in plan.tasks)
    check_contiguous(plan)
    out = payloads(plan, base, fan_out)
    assert out[0] == {"batch": [{"m": 0, "k": "v"}, {"m": 1, "k": "v"}, {"m": 2, "k": "v"}]}
    assert out[2] == {"batch": [{"m": 6, "k": "v"}]}


def test_items_batched_exact_multiple_and_oversized_batch() -> None:
    items = [{"i": i} for i in range(4)]
    plan = plan_fanout({}, {"items": items}, 2)
    assert [t.items for t in plan.tasks] == [items[:2], items[2:]]
    check_contiguous(plan)
    big = plan_fanout({"z": 0}, {"items": items, "batch_size": 50}, None)
    assert len(big.tasks) == 1 and big.tasks[0].element_count == 4
    assert payload_of("items", {"z": 0}, None, big.tasks[0]) == {
        "batch": [{"z": 0, "i": i} for i in range(4)]
    }


def test_batch_size_one_still_uses_batch_protocol() -> None:
    plan = plan_fanout({"m": ["a", "b"]}, {"by": "m"}, 1)
    assert len(plan.tasks) == 2 and all(t.batched for t in plan.tasks)
    assert payload_of("by", {"m": []}, {"by": "m"}, plan.tasks[1]) == {"batch": [{"m": "b"}]}


# --- scale --------------------------------------------------------------------------------------


def test_max_elements_by_and_items() -> None:
    base = {"seeds": list(range(MAX_ELEMENTS))}
    plan = plan_fanout(base, {"by": "seeds"}, None)
    assert plan.element_count == MAX_ELEMENTS == len(plan.tasks)
    assert plan.tasks[-1].items == [MAX_ELEMENTS - 1]
    batched = plan_fanout(base, {"by": "seeds"}, 64)
    assert len(batched.tasks) == -(-MAX_ELEMENTS // 64)
    check_contiguous(batched)
    items = [{"i": i} for i in range(MAX_ELEMENTS)]
    assert len(plan_fanout({}, {"items": items}, None).tasks) == MAX_ELEMENTS


def test_max_elements_chunks() -> None:
    fan_out = {"chunks": MAX_ELEMENTS, "range_field": "n", "total": 10 * MAX_ELEMENTS + 5}
    plan = plan_fanout({}, fan_out, None)
    assert len(plan.tasks) == MAX_ELEMENTS
    check_contiguous(plan)
    last = payload_of("chunks", {}, fan_out, plan.tasks[-1])
    assert last["n"] == 10 and last["chunk"]["end"] == 10 * MAX_ELEMENTS + 5


# --- validation ---------------------------------------------------------------------------------


def test_fan_out_must_be_object() -> None:
    expect_422(["fan_out"], {}, ["by"])
    expect_422(["payload"], [], None)


@pytest.mark.parametrize(
    "fan_out",
    [
        {},
        {"batch_size": 2},
        {"by": "m", "items": [{}]},
        {"by": "m", "chunks": 2, "range_field": "n", "total": 4},
        {"items": [{}], "chunks": 2},
    ],
)
def test_exactly_one_shape(fan_out: dict[str, Any]) -> None:
    msg = expect_422(["fan_out"], {"m": [1]}, fan_out)
    assert msg == "fan_out: choose exactly one of by, items, chunks"


def test_unknown_fan_out_key() -> None:
    msg = expect_422(["fan_out", "bye"], {"m": [1]}, {"by": "m", "bye": 1})
    assert "unknown field" in msg


@pytest.mark.parametrize(
    ("payload", "by", "loc"),
    [
        ({"m": [1]}, "missing", ["fan_out", "by"]),
        ({"m": [1]}, 5, ["fan_out", "by"]),
        ({"m": [1]}, "", ["fan_out", "by"]),
        ({"m": "abc"}, "m", ["payload", "m"]),
        ({"m": {"a": 1}}, "m", ["payload", "m"]),
        ({"m": []}, "m", ["payload", "m"]),
        ({"m": [0] * (MAX_ELEMENTS + 1)}, "m", ["payload", "m"]),
    ],
)
def test_by_errors(payload: dict[str, Any], by: Any, loc: list[str | int]) -> None:
    expect_422(loc, payload, {"by": by})


@pytest.mark.parametrize(
    ("items", "loc"),
    [
        ({"a": 1}, ["fan_out", "items"]),
        ([], ["fan_out", "items"]),
        ([{}] * (MAX_ELEMENTS + 1), ["fan_out", "items"]),
        ([{"a": 1}, 2], ["fan_out", "items", 1]),
        ([{"a": 1}, [1]], ["fan_out", "items", 1]),
    ],
)
def test_items_errors(items: Any, loc: list[str | int]) -> None:
    expect_422(loc, {}, {"items": items})


@pytest.mark.parametrize(
    ("fan_out", "loc"),
    [
        ({"chunks": 2, "total": 10}, ["fan_out", "range_field"]),
        ({"chunks": 2, "range_field": 3, "total": 10}, ["fan_out", "range_field"]),
        ({"chunks": 2, "range_field": "", "total": 10}, ["fan_out", "range_field"]),
        ({"chunks": 2, "range_field": "chunk", "total": 10}, ["fan_out", "range_field"]),
        ({"chunks": 2, "range_field": "n"}, ["fan_out", "total"]),
        ({"chunks": 2, "range_field": "n", "total": 0}, ["fan_out", "total"]),
        ({"chunks": 2, "range_field": "n", "total": 2.5}, ["fan_out", "total"]),
        ({"chunks": 2, "range_field": "n", "total": "10"}, ["fan_out", "total"]),
        ({"chunks": 0, "range_field": "n", "total": 10}, ["fan_out", "chunks"]),
        ({"chunks": -1, "range_field": "n", "total": 10}, ["fan_out", "chunks"]),
        ({"chunks": True, "range_field": "n", "total": 10}, ["fan_out", "chunks"]),
        ({"chunks": 2.0, "range_field": "n", "total": 10}, ["fan_out", "chunks"]),
        ({"chunks": 11, "range_field": "n", "total": 10}, ["fan_out", "chunks"]),
        (
            {"chunks": MAX_ELEMENTS + 1, "range_field": "n", "total": 10**9},
            ["fan_out", "chunks"],
        ),
    ],
)
def test_chunks_errors(fan_out: dict[str, Any], loc: list[str | int]) -> None:
    expect_422(loc, {}, fan_out)


def test_range_field_and_total_only_with_chunks() -> None:
    expect_422(["fan_out", "range_field"], {"m": [1]}, {"by": "m", "range_field": "n"})
    expect_422(["fan_out", "total"], {}, {"items": [{}], "total": 3})


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_batch_size_must_be_positive_int(bad: Any) -> None:
    expect_422(["batch_size"], {"m": [1]}, {"by": "m"}, bad)
    expect_422(["fan_out", "batch_size"], {"m": [1]}, {"by": "m", "batch_size": bad})


def test_batch_size_conflicts() -> None:
    msg = expect_422(["batch_size"], {"m": [1]}, {"by": "m", "batch_size": 2}, 3)
    assert "differs" in msg
    chunks = {"chunks": 2, "range_field": "n", "total": 4}
    expect_422(["batch_size"], {}, chunks, 2)
    expect_422(["fan_out", "batch_size"], {}, {**chunks, "batch_size": 2})
    expect_422(["batch_size"], {}, None, 2)


# --- element_field ------------------------------------------------------------------------------


def test_element_field_matches_element_payload() -> None:
    cases: list[tuple[str, dict[str, Any], dict[str, Any] | None, Any]] = [
        ("single", {"a": 1}, None, None),
        ("by", {"m": [1, 2], "a": 1}, {"by": "m"}, 2),
        ("items", {"a": 1, "b": 2}, {"items": []}, {"b": 3, "c": None}),
        ("chunks", {"a": 1, "n": 0}, {"range_field": "n"}, chunk_spans(10, 3)[1]),
    ]
    for kind, base, fan_out, item in cases:
        full = element_payload(kind, base, fan_out, item)
        for name in ("a", "b", "c", "m", "n", "chunk", "absent"):
            assert element_field(kind, base, fan_out, item, name) == full.get(name, MISSING)


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fan-out kind"):
        element_payload("sweep?", {}, None, None)
