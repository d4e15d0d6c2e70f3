"""map_reduce ``reduce`` operators (docs/workflows.md, "map_reduce").

``{"field": "op"}`` with op one of ``sum``, ``mean``, ``weighted_mean:<weight field>``, ``min``,
``max``, ``count``, ``concat``, ``histogram:<bins>``. Each operator folds one result at a time
(:meth:`Reducer.add`), so a 100,000-element job is reduced without holding its results. A result
whose field is missing or of the wrong type is skipped and counted: the counts become warnings,
never a failed job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from computalot.errors import field_error

SIMPLE_OPS = ("sum", "mean", "min", "max", "count", "concat")
MAX_BINS = 10_000
OPS_HELP = "sum, mean, weighted_mean:<weight field>, min, max, count, concat, histogram:<bins>"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Op:
    name: str  # sum, mean, weighted_mean, min, max, count, concat, histogram
    weight_field: str | None = None
    bins: int | None = None


def parse_op(field_name: str, text: Any) -> Op:
    """One operator, or a 422 naming ``["reduce", field_name]``."""
    loc: list[str | int] = ["reduce", field_name]
    if not isinstance(text, str):
        raise field_error(loc, f"must be an operator string: {OPS_HELP}")
    if text in SIMPLE_OPS:
        return Op(text)
    head, sep, arg = text.partition(":")
    if sep and head == "weighted_mean":
        if not arg:
            raise field_error(loc, "weighted_mean needs a weight field: weighted_mean:<field>")
        return Op("weighted_mean", weight_field=arg)
    if sep and head == "histogram":
        if not arg.isdigit() or not 1 <= int(arg) <= MAX_BINS:
            raise field_error(loc, f"histogram needs a bin count from 1 to {MAX_BINS}")
        return Op("histogram", bins=int(arg))
    raise field_error(loc, f"unknown reduce operator {text!r}; choose one of {OPS_HELP}")


def parse_reduce(reduce: Any) -> dict[str, Op]:
    """``{result field: Op}`` from the request's ``reduce`` object."""
    if not isinstance(reduce, dict) or not reduce:
        raise field_error(["reduce"], 'required: an object {"result field": "operator"}')
    ops: dict[str, Op] = {}
    for name, text in reduce.items():
        if not name or name.startswith("_") or len(name) > 256:
            raise field_error(
                ["reduce", name], "must be a result field name of 1-256 characters, not '_…'"
            )
        ops[name] = parse_op(name, text)
    return ops


def op_text(op: Op) -> str:
    if op.name == "weighted_mean":
        return f"weighted_mean:{op.weight_field}"
    if op.name == "histogram":
        return f"histogram:{op.bins}"
    return op.name


@dataclass
class Reducer:
    """One field's fold. ``skipped`` counts results whose value it could not use."""

    result_field: str
    op: Op
    total: float = 0
    weight: float = 0.0
    n: int = 0
    low: float | None = None
    high: float | None = None
    values: list[Any] = field(default_factory=list)
    skipped: int = 0
    bad_weight: int = 0

    def add(self, result: dict[str, Any], weight: Any = None) -> None:
        """Fold one completed result; ``weight`` is the weighted_mean weight found for it."""
        if self.result_field not in result:
            self.skipped += 1
            return
        value = result[self.result_field]
        name = self.op.name
        if name == "count":
            self.n += 1
        elif name == "concat":
            self.n += 1
            if isinstance(value, list):
                self.values.extend(value)
            else:
                self.values.append(value)
        elif name == "histogram":
            numbers = value if isinstance(value, list) else [value]
            if not numbers or not all(is_number(v) for v in numbers):
                self.skipped += 1
                return
            self.n += 1
            self.values.extend(numbers)
        elif not is_number(value):
            self.skipped += 1
        elif name == "weighted_mean":
            if not is_number(weight) or weight < 0:
                self.bad_weight += 1
                return
            self.total += weight * value
            self.weight += weight
            self.n += 1
        else:
            self.n += 1
            self.total += value
            self.low = value if self.low is None else min(self.low, value)
            self.high = value if self.high is None else max(self.high, value)

    def result(self) -> Any:
        name = self.op.name
        if name in ("count", "sum"):
            return self.n if name == "count" else self.total
        if name == "concat":
            return self.values
        if name == "histogram":
            return histogram(self.values, self.op.bins or 1)
        if name == "mean":
            return self.total / self.n if self.n else None
        if name == "weighted_mean":
            return self.total / self.weight if self.weight > 0 else None
        return self.low if name == "min" else self.high

    def warnings(self, completed: int) -> list[str]:
        out = []
        if self.skipped:
            wanted = "present" if self.op.name in ("count", "concat") else "a finite number"
            out.append(
                f"reduce {self.result_field!r} ({op_text(self.op)}): {self.skipped} of {completed} "
                f"completed results have no {self.result_field!r} that is {wanted}; left out"
            )
        if self.bad_weight:
            out.append(
                f"reduce {self.result_field!r} ({op_text(self.op)}): {self.bad_weight} of {completed} "
                f"completed results have no weight {self.op.weight_field!r} >= 0 in the result "
                "or the task payload; left out"
            )
        if completed and self.n == 0 and self.op.name not in ("count", "sum", "concat"):
            out.append(f"reduce {self.result_field!r}: no usable value; its entry is null")
        return out


def histogram(values: list[float], bins: int) -> dict[str, Any] | None:
    """``bins`` equal-width bins from the smallest to the largest value (the last bin includes
    its upper edge); null when there is no value."""
    if not values:
        return None
    low, high = min(values), max(values)
    width = (high - low) / bins
    counts = [0] * bins
    for v in values:
        i = 0 if width == 0 else min(int((v - low) / width), bins - 1)
        counts[i] += 1
    edges = [low + width * i for i in range(bins)] + [high]
    return {"edges": edges, "counts": counts, "n": len(values)}
