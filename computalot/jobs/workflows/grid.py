"""A sweep's parameter grid (docs/workflows.md, "sweep").

Each parameter is a list, ``{"values": [...]}`` or ``{"min", "max", "num", "scale"}``. The grid
is their cartesian product, and its size is the product of the axis lengths: it is counted
from the axes alone (:func:`count_points`) so a 1000 x 1000 request is refused before a single
point exists, and its points are generated lazily in a fixed order (:func:`iter_points`), the
last parameter varying fastest, so planning the job again gives the same tasks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from computalot.errors import field_error

SCALES = ("linear", "log")
_RANGE_KEYS = frozenset({"min", "max", "num", "scale"})
Axis = tuple[str, list[Any]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tidy(value: float) -> float:
    """12 significant digits: ``0.1 + 2 * 0.1`` shows as 0.3, not 0.30000000000000004."""
    return float(f"{value:.12g}")


def axis_length(name: str, spec: Any, most: int) -> int:
    """How many values one parameter takes, validated without generating them."""
    loc: list[str | int] = ["parameters", name]
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, dict) and "values" in spec:
        extra = sorted(set(spec) - {"values"})
        if extra:
            raise field_error([*loc, extra[0]], "unknown field next to values")
        values = spec["values"]
        loc = [*loc, "values"]
        if not isinstance(values, list):
            raise field_error(loc, "must be a list of values")
    elif isinstance(spec, dict):
        return _range_length(loc, spec, most)
    else:
        raise field_error(
            loc, 'must be a list, {"values": [...]} or {"min", "max", "num", "scale"}'
        )
    if not values:
        raise field_error(loc, "must not be empty: a parameter with no value makes an empty grid")
    return len(values)


def _range_length(loc: list[str | int], spec: dict[str, Any], most: int) -> int:
    extra = sorted(set(spec) - _RANGE_KEYS)
    if extra:
        raise field_error([*loc, extra[0]], "unknown field; allowed: max, min, num, scale")
    for key in ("min", "max", "num"):
        if key not in spec:
            raise field_error([*loc, key], "required in a min/max/num range")
        if not _is_number(spec[key]):
            raise field_error([*loc, key], "must be a finite number")
    num = spec["num"]
    if not isinstance(num, int) or not 1 <= num <= most:
        raise field_error([*loc, "num"], f"must be an integer from 1 to {most}")
    if spec["min"] > spec["max"]:
        raise field_error([*loc, "min"], f"must not exceed max ({spec['max']})")
    scale = spec.get("scale", "linear")
    if scale not in SCALES:
        raise field_error([*loc, "scale"], "must be linear or log")
    if scale == "log" and spec["min"] <= 0:
        raise field_error([*loc, "min"], "must be > 0 on a log scale")
    return int(num)


def range_values(spec: dict[str, Any]) -> list[float]:
    """``num`` values from ``min`` to ``max`` (both included), evenly spaced on ``scale``."""
    low, high, num = float(spec["min"]), float(spec["max"]), int(spec["num"])
    if num == 1:
        return [low]
    if spec.get("scale", "linear") == "log":
        a, b = math.log(low), math.log(high)
        inner = [_tidy(math.exp(a + (b - a) * i / (num - 1))) for i in range(1, num - 1)]
    else:
        inner = [_tidy(low + (high - low) * i / (num - 1)) for i in range(1, num - 1)]
    return [low, *inner, high]


def count_points(parameters: Any, most: int) -> int:
    """The grid's size, refused (422 naming ``parameters``) above ``most`` points, checked
    axis by axis so the product never grows past ``most * axis``."""
    if not isinstance(parameters, dict) or not parameters:
        raise field_error(["parameters"], "required: an object of at least one parameter")
    total = 1
    for name, spec in parameters.items():
        if not name:
            raise field_error(["parameters"], "parameter names must be non-empty")
        total *= axis_length(name, spec, most)
        if total > most:
            raise field_error(
                ["parameters"],
                f"the grid has more than {most} points (at most {most} per job); "
                "use fewer values or split the sweep into several jobs",
            )
    return total


def axes(parameters: dict[str, Any]) -> list[Axis]:
    """Each parameter's values, in request order (call :func:`count_points` first)."""
    out: list[Axis] = []
    for name, spec in parameters.items():
        if isinstance(spec, list):
            out.append((name, spec))
        elif "values" in spec:
            out.append((name, spec["values"]))
        else:
            out.append((name, range_values(spec)))
    return out


def iter_points(parameters: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every grid point as ``{name: value}``, the last parameter varying fastest."""
    grid = axes(parameters)
    names = [name for name, _ in grid]
    for combo in itertools.product(*(values for _, values in grid)):
        yield dict(zip(names, combo, strict=True))
