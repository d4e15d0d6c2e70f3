"""Fan-out planning for structured_runner jobs (docs/llms-full.md, "Fan-out").

A job may expand into up to 100,000 elements, so planning must stay cheap and the store must not
hold 100,000 copies of the job payload. A plan therefore keeps only each element's *delta* (the
``by`` list element, the raw ``items`` object, or the chunk descriptor); :func:`task_payload`
rebuilds the full payload when a task is dispatched or listed.

The element kinds are deliberately generic so the other job types can reuse them: a sweep point or
a benchmark replica is an ``items`` delta over ``fixed_payload``/``shared_payload``, and a
map_reduce ``split`` is either a ``by`` list or ``chunks``. :func:`plan_tasks` and
:func:`chunk_spans` are the reusable halves; :func:`plan_fanout` adds the fan_out validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from computalot.errors import field_error
from computalot.store.jsoncodec import Unreadable, is_unusable

MAX_ELEMENTS = 100_000
#: The largest ``fan_out.total``: the largest integer every JSON reader keeps exactly (2**53 - 1).
MAX_TOTAL = 2**53 - 1
Loc = list[str | int] | str  # a field_error location
KINDS = ("single", "by", "items", "chunks")
_SHAPES = ("by", "items", "chunks")
_ALLOWED_KEYS = frozenset({"by", "items", "chunks", "range_field", "total", "batch_size"})
_CHUNK_KEY = "chunk"


class _Missing:
    """Sentinel type: "no such field", distinct from a field whose value is null."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(slots=True)
class TaskPlan:
    """One task: a run of consecutive elements (exactly one unless batched)."""

    index: int
    element_start: int
    element_count: int
    items: list[Any] | None  # element deltas; None for a single, non-fanned-out task
    batched: bool


@dataclass(slots=True)
class FanoutPlan:
    """The whole expansion of one job.

    ``spec`` is the minimal fan-out description :func:`element_payload` needs (``{"by": f}``,
    ``{"range_field": f}`` or ``{}``) so the store can keep it instead of the raw request.
    ``merge_key_default`` is ``"element"`` when a ``keyed`` merge without ``merge_key`` keys by the
    ``by`` element itself, else ``"index"``.
    """

    kind: str
    element_count: int
    tasks: list[TaskPlan]
    merge_key_default: str = "index"
    batch_size: int | None = None
    spec: dict[str, Any] = field(default_factory=dict)


def is_scalar_key(value: Any) -> bool:
    """Strings and JSON numbers (not booleans) can serve directly as ``keyed`` merge keys."""
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def default_merge_key(kind: str, items: list[Any]) -> str:
    """``"element"`` when every ``by`` element is a string or number (docs/llms-full.md, "Fan-out"), else ``"index"``.

    Decided once per job so every key of one aggregate has the same meaning.
    """
    if kind == "by" and items and all(is_scalar_key(item) for item in items):
        return "element"
    return "index"


def chunk_spans(total: int, count: int) -> list[dict[str, int]]:
    """Split ``[0, total)`` into ``count`` contiguous chunks whose sizes differ by at most one.

    The first ``total % count`` chunks get the extra unit, so 10 in 3 gives 4, 3, 3.
    """
    base, extra = divmod(total, count)
    spans: list[dict[str, int]] = []
    start = 0
    for index in range(count):
        end = start + base + (1 if index < extra else 0)
        spans.append({"index": index, "count": count, "start": start, "end": end})
        start = end
    return spans


def plan_tasks(items: list[Any], batch_size: int | None) -> list[TaskPlan]:
    """Group element deltas into tasks: one each, or ``batch_size`` consecutive ones per task.

    The last batch holds the remainder. ``batch_size`` (even 1) means the runner speaks the batch
    protocol: ``{"batch": [...]}`` in, ``{"results": [...]}`` out.
    """
    if batch_size is None:
        return [TaskPlan(i, i, 1, [item], False) for i, item in enumerate(items)]
    return [
        TaskPlan(t, start, len(chunk), chunk, True)
        for t, start in enumerate(range(0, len(items), batch_size))
        for chunk in (items[start : start + batch_size],)
    ]


def plan_fanout(
    payload: dict[str, Any],
    fan_out: dict[str, Any] | None,
    batch_size: int | None,
    *,
    tasks: bool = True,
) -> FanoutPlan:
    """Validate a structured_runner job's ``fan_out``/``batch_size`` and plan its tasks.

    Raises a 422 (``field_error``) naming the offending field. ``batch_size`` may come at the top
    level or inside ``fan_out``; both must then agree. ``tasks=False`` validates and counts only
    (``tasks`` stays empty, see :func:`task_count`): a submit answers before its rows are planned.
    """
    if not isinstance(payload, dict):
        raise field_error("payload", "must be an object")
    if fan_out is None:
        if batch_size is not None:
            raise field_error("batch_size", "applies only with fan_out.by or fan_out.items")
        return FanoutPlan("single", 1, [TaskPlan(0, 0, 1, None, False)])
    if not isinstance(fan_out, dict):
        raise field_error("fan_out", "must be an object")
    for key in fan_out:
        if key not in _ALLOWED_KEYS:
            allowed = ", ".join(sorted(_ALLOWED_KEYS))
            raise field_error(["fan_out", str(key)], f"unknown field; allowed: {allowed}")
    shapes = [s for s in _SHAPES if fan_out.get(s) is not None]
    if len(shapes) != 1:
        raise field_error("fan_out", "choose exactly one of by, items, chunks")
    kind = shapes[0]
    size = _resolve_batch_size(fan_out, batch_size)

    if kind == "chunks":
        if size is not None:
            loc: Loc = "batch_size" if batch_size is not None else ["fan_out", "batch_size"]
            raise field_error(loc, "applies only with fan_out.by or fan_out.items, not chunks")
        range_field, spans = _validate_chunks(fan_out)
        planned = plan_tasks(spans, None) if tasks else []
        return FanoutPlan(kind, len(spans), planned, spec={"range_field": range_field})

    for stray in ("range_field", "total"):
        if fan_out.get(stray) is not None:
            raise field_error(["fan_out", stray], "applies only with fan_out.chunks")
    if kind == "by":
        name, items = _validate_by(payload, fan_out["by"])
        spec: dict[str, Any] = {"by": name}
    else:
        items = _validate_items(fan_out["items"])
        spec = {}
    if not tasks:
        return FanoutPlan(kind, len(items), [], batch_size=size, spec=spec)
    return FanoutPlan(
        kind,
        len(items),
        plan_tasks(items, size),
        merge_key_default=default_merge_key(kind, items),
        batch_size=size,
        spec=spec,
    )


def task_count(plan: FanoutPlan) -> int:
    """How many tasks ``plan`` makes (also when it was made with ``tasks=False``)."""
    if plan.batch_size is None:
        return plan.element_count
    return -(-plan.element_count // plan.batch_size)


def _resolve_batch_size(fan_out: dict[str, Any], top: int | None) -> int | None:
    """One batch size from either place; two different ones are a contradiction, not a choice."""
    inner = fan_out.get("batch_size")
    sources: list[tuple[Loc, Any]] = [("batch_size", top), (["fan_out", "batch_size"], inner)]
    for loc, value in sources:
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ELEMENTS
        ):
            raise field_error(loc, f"must be an integer from 1 to {MAX_ELEMENTS}")
    if top is not None and inner is not None and top != inner:
        raise field_error("batch_size", f"differs from fan_out.batch_size ({inner})")
    return top if top is not None else inner


def _check_count(loc: Loc, count: int) -> None:
    if count == 0:
        raise field_error(loc, "must not be empty")
    if count > MAX_ELEMENTS:
        raise field_error(loc, f"has {count} elements; at most {MAX_ELEMENTS} per job")


def _validate_by(payload: dict[str, Any], name: Any) -> tuple[str, list[Any]]:
    if not isinstance(name, str) or not name:
        raise field_error(["fan_out", "by"], "must be the name of a list field of payload")
    if name not in payload:
        raise field_error(["fan_out", "by"], f"payload has no field {name!r}")
    values = payload[name]
    if not isinstance(values, list):
        raise field_error(["payload", name], "must be a list to fan out by it")
    _check_count(["payload", name], len(values))
    return name, values


def _validate_items(items: Any) -> list[Any]:
    loc: list[str | int] = ["fan_out", "items"]
    if not isinstance(items, list):
        raise field_error(loc, "must be a list of objects")
    _check_count(loc, len(items))
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise field_error([*loc, i], "must be an object")
    return items


def _positive_int(fan_out: dict[str, Any], key: str, most: int) -> int:
    value = fan_out.get(key)
    if value is None:
        raise field_error(["fan_out", key], "required with fan_out.chunks")
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise field_error(["fan_out", key], f"must be an integer from 1 to {most}")
    return value


def _validate_chunks(fan_out: dict[str, Any]) -> tuple[str, list[dict[str, int]]]:
    count = _positive_int(fan_out, "chunks", MAX_ELEMENTS)
    range_field = fan_out.get("range_field")
    if range_field is None:
        raise field_error(["fan_out", "range_field"], "required with fan_out.chunks")
    if not isinstance(range_field, str) or not range_field or len(range_field) > 256:
        raise field_error(["fan_out", "range_field"], "must be a string of 1-256 characters")
    if range_field == _CHUNK_KEY:
        raise field_error(["fan_out", "range_field"], "must not be 'chunk' (reserved)")
    total = _positive_int(fan_out, "total", MAX_TOTAL)
    if count > total:
        raise field_error(["fan_out", "chunks"], f"must not exceed fan_out.total ({total})")
    return range_field, chunk_spans(total, count)


def element_payload(
    kind: str, base_payload: dict[str, Any], fan_out: dict[str, Any] | None, item: Any
) -> dict[str, Any]:
    """The payload one element's runner sees, built from the job payload and the element delta.

    Always a new top-level dict (nested values are shared, not copied: the result is serialised,
    never mutated). ``fan_out`` may be the raw request or :attr:`FanoutPlan.spec`.
    """
    if kind == "single":
        return dict(base_payload)
    if kind == "by":
        return {**base_payload, (fan_out or {})["by"]: item}
    if kind == "items":
        return {**base_payload, **item}
    if kind == "chunks":
        size = item["end"] - item["start"]
        return {**base_payload, (fan_out or {})["range_field"]: size, _CHUNK_KEY: item}
    raise ValueError(f"unknown fan-out kind {kind!r}")


class PayloadJob(Protocol):
    """What building a task's payload reads of its job (an ORM ``Job`` or the dispatcher's
    cached job row)."""

    @property
    def spec(self) -> dict[str, Any]: ...

    @property
    def payload(self) -> dict[str, Any]: ...


class PayloadTask(Protocol):
    @property
    def batched(self) -> bool: ...

    @property
    def item(self) -> Any: ...


def task_payload(job: PayloadJob, task: PayloadTask) -> dict[str, Any]:
    """The payload a task's runner sees (the dispatcher launches with it, ``GET /tasks`` shows
    it): ``{"batch": [element payloads]}`` when batched, else the element's.

    A stored element that cannot be read back (or does not fit the job's fan-out) gives an
    ``Unreadable`` stand-in, so listing such a task still answers (the dispatcher never launches
    it)."""
    if is_unusable(task.item):
        return Unreadable("the task's stored element cannot be read back")
    kind = job.spec.get("kind", "single")
    fan_out = job.spec.get("fan_out")
    try:
        if task.batched:
            return {
                "batch": [element_payload(kind, job.payload, fan_out, it) for it in task.item or []]
            }
        if kind == "single":
            return dict(job.payload)
        item = task.item[0] if task.item else None
        return element_payload(kind, job.payload, fan_out, item)
    except (TypeError, KeyError, ValueError, AttributeError, IndexError):
        return Unreadable("the task's stored element does not fit its job's fan-out")


def element_field(
    kind: str, base_payload: dict[str, Any], fan_out: dict[str, Any] | None, item: Any, name: str
) -> Any:
    """``element_payload(...).get(name, MISSING)`` without building the payload.

    Merging reads one field of each of up to 100,000 element payloads; this keeps that O(1) each.
    Returns :data:`MISSING` when the element payload has no such field.
    """
    if kind == "by" and name == (fan_out or {}).get("by"):
        return item
    if kind == "items" and isinstance(item, dict) and name in item:
        return item[name]
    if kind == "chunks":
        if name == (fan_out or {}).get("range_field"):
            return item["end"] - item["start"]
        if name == _CHUNK_KEY:
            return item
    return base_payload.get(name, MISSING)
