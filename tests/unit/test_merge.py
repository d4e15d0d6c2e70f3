"""Batch splitting, quality extraction and the merge strategies (docs/llms-full.md: Fan-out, Results, Runner protocol)."""

from __future__ import annotations

from typing import Any

import pytest

from computalot.errors import ValidationFailed
from computalot.jobs.fanout import MAX_ELEMENTS, chunk_spans, plan_fanout
from computalot.jobs.merge import (
    BatchResultError,
    ElementResult,
    ResultError,
    extract_quality,
    merge_results,
    split_batch_result,
    validate_merge_options,
)


def done(index: int, result: Any, item: Any = None) -> ElementResult:
    return ElementResult(index, "completed", result, item)


def failed(index: int, item: Any = None, status: str = "failed") -> ElementResult:
    return ElementResult(index, status, None, item)


# --- batch results ------------------------------------------------------------------------------


def test_split_batch_result_ok() -> None:
    assert split_batch_result({"results": [{"a": 1}, None, 3]}, 3) == [{"a": 1}, None, 3]


@pytest.mark.parametrize(
    ("result", "expected", "message"),
    [
        ({"results": [1, 2, 3]}, 4, "batch result has 3 results for 4 elements"),
        ({"results": [1, 2]}, 1, "batch result has 2 results for 1 elements"),
        ({"results": {"a": 1}}, 1, "without a 'results' list"),
        ({"other": []}, 1, "without a 'results' list"),
        ([1, 2], 2, "got list"),
        (None, 1, "got null"),
        ("x", 1, "got string"),
    ],
)
def test_split_batch_result_errors(result: Any, expected: int, message: str) -> None:
    with pytest.raises(BatchResultError, match=message):
        split_batch_result(result, expected)
    assert issubclass(BatchResultError, ResultError)


# --- quality ------------------------------------------------------------------------------------


def test_quality_defaults_without_copy() -> None:
    result = {"score": 1}
    clean, quality, warnings = extract_quality(result)
    assert clean is result and quality == 1.0 and warnings == []


def test_quality_and_warnings_popped_without_mutating_input() -> None:
    result = {"score": 1, "_quality": 0.25, "_warnings": ["slow"]}
    clean, quality, warnings = extract_quality(result)
    assert clean == {"score": 1} and quality == 0.25 and warnings == ["slow"]
    assert "_quality" in result  # caller's dict untouched


@pytest.mark.parametrize(
    ("raw", "quality", "warned"),
    [(0, 0.0, False), (1, 1.0, False), (1.5, 1.0, True), (-0.2, 0.0, True)],
)
def test_quality_range(raw: float, quality: float, warned: bool) -> None:
    _, q, warnings = extract_quality({"_quality": raw})
    assert q == quality and isinstance(q, float)
    assert bool(warnings) == warned
    if warned:
        assert "clamped" in warnings[0]


@pytest.mark.parametrize("raw", ["0.5", True, [0.5], float("nan"), float("inf")])
def test_invalid_quality_becomes_one_with_warning(raw: Any) -> None:
    clean, q, warnings = extract_quality({"_quality": raw, "x": 1})
    assert clean == {"x": 1} and q == 1.0
    assert len(warnings) == 1 and "_quality" in warnings[0]


def test_bad_warnings() -> None:
    _, _, warnings = extract_quality({"_warnings": "oops"})
    assert warnings == ["_warnings must be a list of strings, got string"]
    _, _, warnings = extract_quality({"_warnings": ["ok", 3, {"a": 1}]})
    assert warnings[:3] == ["ok", "3", '{"a": 1}']
    assert "2 non-string entries" in warnings[3]
    _, q, warnings = extract_quality({"_warnings": None, "_quality": None})
    assert q == 1.0 and warnings == []


@pytest.mark.parametrize(
    ("value", "name"), [([1], "list"), (None, "null"), (3, "number"), ("s", "string")]
)
def test_non_object_result_rejected(value: Any, name: str) -> None:
    with pytest.raises(ResultError, match=f"result must be a JSON object, got {name}"):
        extract_quality(value)


# --- options ------------------------------------------------------------------------------------


def test_validate_merge_options() -> None:
    assert validate_merge_options(None, None, None) == "collect"
    assert validate_merge_options("keyed", "name", None) == "keyed"
    assert validate_merge_options("weighted_avg", None, "n") == "weighted_avg"
    cases: list[tuple[Any, Any, Any, str]] = [
        ("median", None, None, "merge_strategy"),
        ("collect", "name", None, "merge_key"),
        ("keyed", None, "w", "weight_field"),
        ("keyed", "", None, "merge_key"),
        ("weighted_avg", None, 3, "weight_field"),
    ]
    for strategy, key, weight, loc in cases:
        with pytest.raises(ValidationFailed) as info:
            validate_merge_options(strategy, key, weight)
        assert info.value.details[0]["loc"] == [loc]


def test_unknown_strategy_in_merge() -> None:
    with pytest.raises(ValidationFailed, match="merge_strategy"):
        merge_results("best", [], kind="single", base_payload={}, fan_out=None)


# --- collect ------------------------------------------------------------------------------------


def test_collect_in_input_order_with_nulls() -> None:
    elements = [done(2, {"v": 2}), failed(1), done(0, {"v": 0}), failed(3, status="cancelled")]
    out = merge_results("collect", elements, kind="items", base_payload={}, fan_out=None)
    assert out == [{"v": 0}, None, {"v": 2}, None]


# --- keyed --------------------------------------------------------------------------------------


def test_keyed_by_scalar_elements() -> None:
    fan_out = {"by": "m"}
    elements = [done(0, {"s": 1}, "gpt"), failed(1, "llama"), done(2, {"s": 3}, 7)]
    out = merge_results("keyed", elements, kind="by", base_payload={}, fan_out=fan_out)
    assert out == {"gpt": {"s": 1}, "llama": None, "7": {"s": 3}}


def test_keyed_by_object_elements_uses_index() -> None:
    elements = [done(0, 1, {"n": "a"}), done(1, 2, ["x"])]
    out = merge_results("keyed", elements, kind="by", base_payload={}, fan_out={"by": "m"})
    assert out == {"0": 1, "1": 2}


def test_keyed_items_default_is_index() -> None:
    elements = [done(0, "a", {"name": "x"}), done(1, "b", {"name": "y"})]
    out = merge_results("keyed", elements, kind="items", base_payload={}, fan_out=None)
    assert out == {"0": "a", "1": "b"}


def test_keyed_with_merge_key_from_item_payload_and_fallbacks() -> None:
    base = {"name": "base-name"}
    elements = [
        done(0, "r0", {"name": "x"}),
        done(1, "r1", {"other": 1}),  # falls back to the job payload's field
        done(2, "r2", {"name": None}),  # null key → index
        done(3, "r3", {"name": 5}),
        done(4, "r4", {"name": {"b": 1, "a": 2}}),
    ]
    out = merge_results(
        "keyed", elements, kind="items", base_payload=base, fan_out=None, merge_key="name"
    )
    assert out == {"x": "r0", "base-name": "r1", "2": "r2", "5": "r3", '{"a":2,"b":1}': "r4"}
    out = merge_results(
        "keyed", elements, kind="items", base_payload={}, fan_out=None, merge_key="nope"
    )
    assert list(out) == ["0", "1", "2", "3", "4"]


def test_keyed_merge_key_on_by_field_and_chunks() -> None:
    elements = [done(0, "a", "m1"), done(1, "b", "m2")]
    out = merge_results(
        "keyed", elements, kind="by", base_payload={}, fan_out={"by": "m"}, merge_key="m"
    )
    assert out == {"m1": "a", "m2": "b"}
    spans = chunk_spans(10, 3)
    elements = [done(i, i, s) for i, s in enumerate(spans)]
    out = merge_results(
        "keyed",
        elements,
        kind="chunks",
        base_payload={},
        fan_out={"range_field": "n"},
        merge_key="n",
    )
    assert out == {"4": 0, "3": 1, "3#2": 2}


def test_keyed_duplicates_get_index_suffix() -> None:
    elements = [done(0, 1, "a"), done(1, 2, "a"), failed(2, "a"), done(3, 4, "a#1")]
    out = merge_results("keyed", elements, kind="by", base_payload={}, fan_out={"by": "m"})
    assert out == {"a": 1, "a#1": 2, "a#2": None, "a#1#3": 4}


# --- weighted_avg -------------------------------------------------------------------------------


def test_weighted_avg_default_weight_one_skips_failed_and_non_numeric() -> None:
    elements = [
        done(0, {"acc": 0.5, "loss": 2, "name": "a", "ok": True, "_x": 9, "nested": {"v": 1}}),
        done(1, {"acc": 1.0, "name": "b"}),
        failed(2),
        done(3, [1, 2]),  # not an object: ignored
    ]
    out = merge_results("weighted_avg", elements, kind="items", base_payload={}, fan_out=None)
    assert out == {"acc": 0.75, "loss": 2.0, "_weight_total": 2.0, "_n": 2}


def test_weighted_avg_chunks_weight_is_chunk_size() -> None:
    spans = chunk_spans(10, 3)  # sizes 4, 3, 3
    elements = [done(0, {"m": 1.0}, spans[0]), done(1, {"m": 4.0}, spans[1]), failed(2, spans[2])]
    out = merge_results(
        "weighted_avg", elements, kind="chunks", base_payload={}, fan_out={"range_field": "n"}
    )
    assert out["m"] == pytest.approx((4 * 1.0 + 3 * 4.0) / 7)
    assert out["_weight_total"] == 7.0 and out["_n"] == 2


def test_weighted_avg_weight_field_from_result_then_payload() -> None:
    base = {"w": 1}
    elements = [
        done(0, {"v": 10.0, "w": 3}, {"w": 100}),  # result wins over payload
        done(1, {"v": 20.0}, {"w": 1}),  # payload item
        done(2, {"v": 30.0, "w": "bad"}, {"x": 0}),  # invalid result weight → job payload (1)
        done(3, {"v": 40.0, "w": -5}, {"w": 0}),  # negative → item payload 0: no influence
    ]
    out = merge_results(
        "weighted_avg", elements, kind="items", base_payload=base, fan_out=None, weight_field="w"
    )
    assert out["v"] == pytest.approx((3 * 10 + 1 * 20 + 1 * 30) / 5)
    assert "w" not in out
    assert out["_weight_total"] == 5.0 and out["_n"] == 4


def test_weighted_avg_zero_weight_field_is_null_and_empty_job() -> None:
    elements = [done(0, {"v": 1.0, "w": 0})]
    out = merge_results(
        "weighted_avg", elements, kind="items", base_payload={}, fan_out=None, weight_field="w"
    )
    assert out == {"v": None, "_weight_total": 0.0, "_n": 1}
    out = merge_results("weighted_avg", [failed(0)], kind="single", base_payload={}, fan_out=None)
    assert out == {"_weight_total": 0.0, "_n": 0}


# --- end to end at scale ------------------------------------------------------------------------


def test_batched_plan_split_and_merge_at_max_elements() -> None:
    base = {"seeds": list(range(MAX_ELEMENTS))}
    plan = plan_fanout(base, {"by": "seeds"}, 1000)
    elements: list[ElementResult] = []
    for task in plan.tasks:
        assert task.items is not None
        batch = {"results": [{"v": seed, "_quality": 0.5} for seed in task.items]}
        for offset, raw in enumerate(split_batch_result(batch, task.element_count)):
            result, quality, _ = extract_quality(raw)
            assert quality == 0.5
            index = task.element_start + offset
            elements.append(done(index, result, task.items[offset]))
    kwargs: dict[str, Any] = {"kind": "by", "base_payload": base, "fan_out": {"by": "seeds"}}
    collected = merge_results("collect", elements, **kwargs)
    assert len(collected) == MAX_ELEMENTS and collected[-1] == {"v": MAX_ELEMENTS - 1}
    keyed = merge_results("keyed", elements, **kwargs)
    assert len(keyed) == MAX_ELEMENTS and keyed["99999"] == {"v": 99999}
    avg = merge_results("weighted_avg", elements, **kwargs)
    assert avg["v"] == pytest.approx((MAX_ELEMENTS - 1) / 2)
    assert avg["_n"] == MAX_ELEMENTS
