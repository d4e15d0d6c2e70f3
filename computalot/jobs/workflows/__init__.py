"""The ``sweep``, ``map_reduce`` and ``benchmark`` job types (docs/workflows.md).

Each is translated at submit into a structured_runner fan-out: a base payload plus one delta per
element (``jobs.fanout``). :func:`check_workflow` validates a submit's type-specific fields and
returns that translation; the dispatcher, batching, big-job planning and results then need nothing
new. What differs is the aggregate, computed when the job ends
(``jobs.workflows.aggregate``), and the plan of a sweep or benchmark, generated again from the
stored request (:func:`workflow_tasks`) instead of being stored as up to 100,000 items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from computalot.errors import field_error
from computalot.jobs.fanout import FanoutPlan, TaskPlan
from computalot.jobs.workflows.benchmark import benchmark_tasks, check_benchmark
from computalot.jobs.workflows.map_reduce import check_map_reduce
from computalot.jobs.workflows.sweep import check_sweep, sweep_tasks

WORKFLOW_TYPES = ("sweep", "map_reduce", "benchmark")
#: Which job types each type-specific field belongs to.
FIELD_TYPES: dict[str, tuple[str, ...]] = {
    "parameters": ("sweep",),
    "fixed_payload": ("sweep",),
    "rank_by": ("sweep", "benchmark"),
    "split": ("map_reduce",),
    "reduce": ("map_reduce",),
    "candidates": ("benchmark",),
    "shared_payload": ("benchmark",),
    "replicas": ("benchmark",),
}
#: structured_runner fields a workflow type replaces with its own.
RUNNER_FIELDS = {
    "fan_out": "the job type makes the fan-out",
    "merge_strategy": "the job type makes the aggregate",
    "merge_key": "the job type makes the aggregate",
    "weight_field": "the job type makes the aggregate",
}
BASE_PAYLOAD = {"sweep": "fixed_payload", "benchmark": "shared_payload"}


@dataclass(frozen=True)
class Workflow:
    """A validated workflow submit: the base payload every task's payload is built on, the
    counted plan, what planning needs to build its tasks again, and the job spec's part."""

    type: str
    payload: dict[str, Any]
    plan: FanoutPlan
    stored: dict[str, Any]
    spec: dict[str, Any]


def _check_fields(body: Any, job_type: str) -> None:
    for name, owners in FIELD_TYPES.items():
        if getattr(body, name, None) is not None and job_type not in owners:
            raise field_error(
                [name], f"applies only to {' and '.join(owners)} jobs, not {job_type}"
            )
    if job_type == "structured_runner":
        return
    for name, why in RUNNER_FIELDS.items():
        if getattr(body, name, None) is not None:
            raise field_error([name], f"does not apply to {job_type} jobs ({why})")
    base = BASE_PAYLOAD.get(job_type)
    if base is not None and body.payload:
        raise field_error(
            ["payload"], f"a {job_type} job's tasks are built on {base}; put these fields there"
        )


def check_workflow(body: Any, most: int) -> Workflow | None:
    """None for a structured_runner job (after refusing any workflow field on it); else the
    validated workflow. Every refusal is a 422 naming the field; nothing is generated yet."""
    job_type = body.type or "structured_runner"
    _check_fields(body, job_type)
    if job_type == "structured_runner":
        return None
    if job_type == "sweep":
        plan, stored, spec = check_sweep(
            body.parameters, body.rank_by, body.fixed_payload, body.batch_size, most
        )
    elif job_type == "benchmark":
        plan, stored, spec = check_benchmark(
            body.candidates, body.shared_payload, body.replicas, body.rank_by, body.batch_size, most
        )
    else:
        plan, stored, spec = check_map_reduce(
            body.payload, body.split, body.reduce, body.batch_size, most
        )
    return Workflow(job_type, stored["payload"], plan, stored, spec)


def workflow_tasks(stored: dict[str, Any]) -> list[TaskPlan]:
    """A sweep's or benchmark's tasks from its stored plan input (``jobs.planning.replan``)."""
    kind = stored["workflow"]["type"]
    if kind == "sweep":
        return sweep_tasks(stored)
    if kind == "benchmark":
        return benchmark_tasks(stored)
    raise ValueError(f"no generated plan for workflow {kind!r}")
