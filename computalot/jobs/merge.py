"""Per-element results and the structured_runner aggregate (docs/llms-full.md, "Fan-out",
"Results").

Batched tasks return one result for several elements; :func:`split_batch_result` splits it so
storage, merging and ``GET /results`` look the same with or without batching.
:func:`extract_quality` turns the reserved ``_quality``/``_warnings`` keys of a runner's result into
``result_quality``/``result_warnings`` (docs/llms-full.md, "Runner protocol"). :func:`merge_results` builds
``aggregate_result`` in one O(n) pass without copying results, since a job may have 100,000
elements.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from computalot.errors import field_error
from computalot.jobs.fanout import MISSING, default_merge_key, element_field
from computalot.states import TaskStatus

STRATEGIES = ("collect", "keyed", "weighted_avg")
DEFAULT_STRATEGY = "collect"


class ResultError(ValueError):
    """A runner's result breaks the protocol; the engine fails the task with this message."""


class BatchResultError(ResultError):
    """A batched task's result is not ``{"results": [one per element]}``."""


@dataclass(slots=True)
class ElementResult:
    """One element's outcome; ``item`` is its fan-out delta (see ``fanout.TaskPlan.items``)."""

    index: int
    status: str  # a TaskStatus: completed, failed or cancelled
    result: Any  # None unless completed
    item: Any


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages a runner author can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    return "object" if isinstance(value, dict) else type(value).__name__


def _is_number(value: Any) -> bool:
    """A finite JSON number; booleans are not numbers here even though Python says so."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def split_batch_result(result: Any, expected: int) -> list[Any]:
    """The per-element results of a batched task, in element order."""
    if not isinstance(result, dict) or not isinstance(result.get("results"), list):
        raise BatchResultError(
            "batch result must be an object with a 'results' list, got "
            + (
                "an object without a 'results' list"
                if isinstance(result, dict)
                else _json_type(result)
            )
        )
    results: list[Any] = result["results"]
    if len(results) != expected:
        raise BatchResultError(f"batch result has {len(results)} results for {expected} elements")
    return results


def extract_quality(result: Any) -> tuple[Any, float, list[str]]:
    """Split ``_quality`` and ``_warnings`` off an object result.

    Returns ``(result without those keys, quality in [0, 1], warnings)``. A bad value never fails
    the task: it becomes a warning and the default (quality clamped or 1.0; bad warnings dropped).
    The input is not mutated; a shallow copy is made only when a reserved key is present. A missing
    result file (null) is the caller's case (docs/llms-full.md, "Runner protocol") and raises like any other non-object.
    """
    if not isinstance(result, dict):
        raise ResultError(f"result must be a JSON object, got {_json_type(result)}")
    if "_quality" not in result and "_warnings" not in result:
        return result, 1.0, []
    clean = dict(result)
    raw_quality = clean.pop("_quality", 1.0)
    raw_warnings = clean.pop("_warnings", [])
    warnings: list[str] = []
    if isinstance(raw_warnings, list):
        warnings = [w if isinstance(w, str) else json.dumps(w, default=str) for w in raw_warnings]
        odd = sum(1 for w in raw_warnings if not isinstance(w, str))
        if odd:
            warnings.append(f"_warnings had {odd} non-string entries; converted to strings")
    elif raw_warnings is not None:
        warnings.append(f"_warnings must be a list of strings, got {_json_type(raw_warnings)}")
    quality = 1.0
    if _is_number(raw_quality):
        quality = min(1.0, max(0.0, float(raw_quality)))
        if quality != raw_quality:
            warnings.append(f"_quality {raw_quality} outside [0, 1]; clamped to {quality}")
    elif raw_quality is not None:
        warnings.append(
            f"_quality must be a number in [0, 1], got {_json_type(raw_quality)}; used 1.0"
        )
    return clean, quality, warnings


def validate_merge_options(
    strategy: str | None, merge_key: str | None, weight_field: str | None
) -> str:
    """Check the merge fields at submit time; returns the strategy (default ``collect``).

    ``merge_key`` and ``weight_field`` are refused with strategies that would silently ignore them.
    """
    strategy = DEFAULT_STRATEGY if strategy is None else strategy
    if strategy not in STRATEGIES:
        raise field_error(
            "merge_strategy",
            f"unknown merge strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}",
        )
    for name, value, owner in (
        ("merge_key", merge_key, "keyed"),
        ("weight_field", weight_field, "weighted_avg"),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise field_error(name, "must be a non-empty string (a payload or result field)")
        if strategy != owner:
            raise field_error(name, f"applies only with merge_strategy {owner!r}")
    return strategy


def merge_results(
    strategy: str,
    elements: list[ElementResult],
    *,
    kind: str,
    base_payload: dict[str, Any],
    fan_out: dict[str, Any] | None,
    merge_key: str | None = None,
    weight_field: str | None = None,
) -> Any:
    """Build ``aggregate_result`` from every element's outcome (in any order; sorted by index)."""
    strategy = validate_merge_options(strategy, merge_key, weight_field)
    ordered = sorted(elements, key=lambda e: e.index)  # already-sorted input: O(n)
    if strategy == "collect":
        return [e.result if e.status == TaskStatus.COMPLETED else None for e in ordered]
    if strategy == "keyed":
        return _keyed(ordered, kind, base_payload, fan_out, merge_key)
    return _weighted_avg(ordered, kind, base_payload, fan_out, weight_field)


def _key_text(value: Any) -> str:
    """Object keys must be strings: strings pass through, anything else becomes compact JSON."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        return repr(value)  # same text as JSON for finite ints and floats, and much cheaper
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _keyed(
    ordered: list[ElementResult],
    kind: str,
    base_payload: dict[str, Any],
    fan_out: dict[str, Any] | None,
    merge_key: str | None,
) -> dict[str, Any]:
    """``{key: result}``; not-completed elements map to null so every element has a key.

    Key: the element payload's ``merge_key`` field (null or missing → the element index); without
    ``merge_key`` the ``by`` element itself when all are strings/numbers, else the index. A key
    already taken gets ``#<index>`` appended, so no result is ever overwritten.
    """
    by_element = merge_key is None and default_merge_key(kind, [e.item for e in ordered]) == (
        "element"
    )
    out: dict[str, Any] = {}
    for e in ordered:
        if by_element:
            key = _key_text(e.item)
        elif merge_key is not None:
            value = element_field(kind, base_payload, fan_out, e.item, merge_key)
            key = str(e.index) if value is MISSING or value is None else _key_text(value)
        else:
            key = str(e.index)
        while key in out:
            key = f"{key}#{e.index}"
        out[key] = e.result if e.status == TaskStatus.COMPLETED else None
    return out


def _weight(
    e: ElementResult,
    kind: str,
    base_payload: dict[str, Any],
    fan_out: dict[str, Any] | None,
    weight_field: str | None,
) -> float:
    """The element's weight: result field, then payload field, then chunk size (chunks) or 1.

    A weight that is not a finite number >= 0 is ignored in favour of the next source.
    """
    if weight_field is not None:
        for value in (
            e.result.get(weight_field, MISSING),
            element_field(kind, base_payload, fan_out, e.item, weight_field),
        ):
            if _is_number(value) and value >= 0:
                return float(value)
    if kind == "chunks":
        return float(e.item["end"] - e.item["start"])
    return 1.0


class WeightedAverage:
    """Weighted mean of every top-level numeric field of the completed object results, one
    element at a time (:meth:`add`), so a job's results need not all be in memory at once.

    Each field's mean uses only the results where it is a finite number (so the denominator is
    per field). Skipped: booleans, nested values, keys starting with ``_`` (reserved, and the place
    of ``_weight_total``/``_n``) and ``weight_field`` itself (its sum is ``_weight_total``). A field
    whose weights sum to 0 is null.
    """

    def __init__(
        self,
        kind: str,
        base_payload: dict[str, Any],
        fan_out: dict[str, Any] | None,
        weight_field: str | None,
    ) -> None:
        self.kind = kind
        self.base_payload = base_payload
        self.fan_out = fan_out
        self.weight_field = weight_field
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.weight_total = 0.0
        self.n = 0

    def add(self, e: ElementResult) -> None:
        if e.status != TaskStatus.COMPLETED or not isinstance(e.result, dict):
            return
        w = _weight(e, self.kind, self.base_payload, self.fan_out, self.weight_field)
        self.weight_total += w
        self.n += 1
        sums, weights = self.sums, self.weights
        for name, value in e.result.items():
            if name == self.weight_field or name.startswith("_") or not _is_number(value):
                continue
            sums[name] = sums.get(name, 0.0) + w * value
            weights[name] = weights.get(name, 0.0) + w

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: (total / self.weights[name] if self.weights[name] > 0 else None)
            for name, total in self.sums.items()
        }
        out["_weight_total"] = self.weight_total
        out["_n"] = self.n
        return out


def _weighted_avg(
    ordered: list[ElementResult],
    kind: str,
    base_payload: dict[str, Any],
    fan_out: dict[str, Any] | None,
    weight_field: str | None,
) -> dict[str, Any]:
    average = WeightedAverage(kind, base_payload, fan_out, weight_field)
    for e in ordered:
        average.add(e)
    return average.result()
