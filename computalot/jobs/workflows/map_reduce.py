"""``type: map_reduce`` (docs/workflows.md, "map_reduce"): split the payload, reduce the results.

``split`` is ``{"field": "seeds"}`` (one task per element of ``payload.seeds``, ``batch_size``
allowed) or ``{"range_field": "count", "total": 10000, "chunks": 20}``: exactly the ``by`` and
``chunks`` fan-outs (``jobs.fanout``), so planning, batching and results are the structured_runner
ones. ``reduce`` folds each named result field with its operator (``reduce_ops``).
"""

from __future__ import annotations

from typing import Any

from computalot.errors import field_error
from computalot.jobs.fanout import MAX_TOTAL, MISSING, FanoutPlan, element_field, plan_fanout
from computalot.jobs.workflows.reduce_ops import Op, Reducer, op_text, parse_op, parse_reduce
from computalot.states import TaskStatus

_SPLIT_KEYS = frozenset({"field", "batch_size", "range_field", "total", "chunks"})
_RANGE_KEYS = ("range_field", "total", "chunks")


def _int_in(split: dict[str, Any], key: str, most: int) -> int:
    value = split.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise field_error(["split", key], f"required: an integer from 1 to {most}")
    return value


def _batch_size(split: dict[str, Any], top: int | None, most: int) -> int | None:
    inner = split.get("batch_size")
    if inner is not None and (
        not isinstance(inner, int) or isinstance(inner, bool) or not 1 <= inner <= most
    ):
        raise field_error(["split", "batch_size"], f"must be an integer from 1 to {most}")
    if top is not None and inner is not None and top != inner:
        raise field_error(["batch_size"], f"differs from split.batch_size ({inner})")
    return top if top is not None else inner


def split_fan_out(
    payload: dict[str, Any], split: Any, top_batch: int | None, most: int
) -> tuple[dict[str, Any], int | None]:
    """The ``fan_out`` and batch size a ``split`` stands for, each error naming ``split.*``."""
    if not isinstance(split, dict):
        raise field_error(["split"], 'required: {"field": …} or {"range_field", "total", "chunks"}')
    extra = sorted(set(split) - _SPLIT_KEYS)
    if extra:
        raise field_error(
            ["split", extra[0]], f"unknown field; allowed: {', '.join(sorted(_SPLIT_KEYS))}"
        )
    by_field = "field" in split
    by_range = any(key in split for key in _RANGE_KEYS)
    if by_field == by_range:
        raise field_error(
            ["split"], 'choose one: {"field": …} or {"range_field", "total", "chunks"}'
        )
    size = _batch_size(split, top_batch, most)
    if by_range:
        if size is not None:
            loc: list[str | int] = (
                ["split", "batch_size"] if "batch_size" in split else ["batch_size"]
            )
            raise field_error(loc, "applies only to a field split, not a range split")
        name = split.get("range_field")
        if not isinstance(name, str) or not name or len(name) > 256 or name == "chunk":
            raise field_error(
                ["split", "range_field"], "required: a payload field name (not 'chunk')"
            )
        total = _int_in(split, "total", MAX_TOTAL)
        chunks = _int_in(split, "chunks", most)
        if chunks > total:
            raise field_error(["split", "chunks"], f"must not exceed split.total ({total})")
        return {"chunks": chunks, "range_field": name, "total": total}, None
    name = split["field"]
    if not isinstance(name, str) or not name:
        raise field_error(["split", "field"], "must be the name of a list field of payload")
    if not isinstance(payload.get(name), list):
        raise field_error(["payload", name], "must be a list: split.field names it")
    values = payload[name]
    if not values:
        raise field_error(["payload", name], "must not be empty")
    if len(values) > most:
        raise field_error(["payload", name], f"has {len(values)} elements; at most {most} per job")
    return {"by": name}, size


def check_map_reduce(
    payload: dict[str, Any], split: Any, reduce: Any, batch_size: int | None, most: int
) -> tuple[FanoutPlan, dict[str, Any], dict[str, Any]]:
    """(plan counted, not built; the stored plan input; the job spec's ``workflow``)."""
    fan_out, size = split_fan_out(payload, split, batch_size, most)
    ops = parse_reduce(reduce)
    plan = plan_fanout(payload, fan_out, size, tasks=False)
    stored = {"payload": payload, "fan_out": fan_out, "batch_size": size}
    spec = {"type": "map_reduce", "reduce": {name: op_text(op) for name, op in ops.items()}}
    return plan, stored, spec


class MapReduceFold:
    """Reads a map_reduce job's elements one at a time; :meth:`result` has one entry per field."""

    def __init__(
        self, spec: dict[str, Any], kind: str, payload: dict[str, Any], fan_out: dict[str, Any]
    ) -> None:
        self.reducers = [
            Reducer(name, parse_op(name, text)) for name, text in spec["reduce"].items()
        ]
        self.kind, self.payload, self.fan_out = kind, payload, fan_out
        self.completed = 0
        self.failed = 0

    def _weight(self, op: Op, result: dict[str, Any], item: Any) -> Any:
        name = op.weight_field or ""
        if name in result:
            return result[name]
        try:
            value = element_field(self.kind, self.payload, self.fan_out, item, name)
        except (TypeError, KeyError):  # an element stored unreadably: no weight, counted
            return None
        return None if value is MISSING else value

    def add(self, index: int, status: str, result: Any, item: Any) -> None:
        if status != TaskStatus.COMPLETED:
            self.failed += status == TaskStatus.FAILED
            return
        self.completed += 1
        row = result if isinstance(result, dict) else {}
        for reducer in self.reducers:
            weight = self._weight(reducer.op, row, item) if reducer.op.weight_field else None
            reducer.add(row, weight)

    def result(self) -> tuple[dict[str, Any], list[str]]:
        aggregate: dict[str, Any] = {r.result_field: r.result() for r in self.reducers}
        warnings = [w for r in self.reducers for w in r.warnings(self.completed)]
        aggregate["_n"] = self.completed
        aggregate["_failed"] = self.failed
        if warnings:
            aggregate["_warnings"] = warnings
        return aggregate, warnings
