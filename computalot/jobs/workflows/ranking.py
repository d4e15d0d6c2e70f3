"""``rank_by`` for sweeps and benchmarks (docs/workflows.md): parse it, read the ranked value.

``rank_by`` is a result field name, or ``{"field": name, "order": "min" | "max"}`` (default
``max``: the biggest value ranks first). A result whose field is missing or not a finite number
is left out of the ranking and counted, never a reason to fail the job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from computalot.errors import field_error

ORDERS = ("min", "max")
MISSING_VALUE = object()


@dataclass(frozen=True, slots=True)
class RankBy:
    field: str
    order: str = "max"

    def out(self) -> dict[str, str]:
        return {"field": self.field, "order": self.order}

    def sort_key(self, value: float) -> float:
        """Ascending sort key: the best value first for either order."""
        return value if self.order == "min" else -value


def parse_rank_by(value: Any) -> RankBy:
    """The validated ``rank_by`` (422 naming ``rank_by`` or its member)."""
    if value is None:
        raise field_error(["rank_by"], 'required: a result field, or {"field", "order"}')
    field: Any
    if isinstance(value, str):
        field, order = value, "max"
    elif isinstance(value, dict):
        extra = sorted(set(value) - {"field", "order"})
        if extra:
            raise field_error(["rank_by", extra[0]], "unknown field; allowed: field, order")
        field, order = value.get("field"), value.get("order", "max")
        if order not in ORDERS:
            raise field_error(["rank_by", "order"], "must be min or max")
    else:
        raise field_error(["rank_by"], 'must be a result field name or {"field", "order"}')
    if not isinstance(field, str) or not field or len(field) > 256:
        loc: list[str | int] = ["rank_by"] if isinstance(value, str) else ["rank_by", "field"]
        raise field_error(loc, "must be a result field name of 1-256 characters")
    return RankBy(field, order)


def ranked_value(result: Any, field: str) -> Any:
    """The finite number ``result[field]``, else :data:`MISSING_VALUE`."""
    if not isinstance(result, dict):
        return MISSING_VALUE
    value = result.get(field)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return MISSING_VALUE


def missing_warning(kind: str, missing: int, completed: int, rank_by: RankBy) -> str | None:
    """The warning for ``missing`` of ``completed`` results without a rankable value."""
    if not missing:
        return None
    if missing == completed:
        return (
            f"rank_by field {rank_by.field!r} is not a number in any completed result; the "
            f"{kind} ranking is empty (check the runner writes {rank_by.field!r})"
        )
    return (
        f"{missing} of {completed} completed results have no numeric {rank_by.field!r}; "
        f"they are left out of the {kind} ranking"
    )
