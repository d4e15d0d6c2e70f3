"""``type: sweep`` (docs/workflows.md, "sweep"): one task per grid point, ranked by a result field.

A point is an ``items`` fan-out delta over ``fixed_payload`` (``jobs.fanout``), so the store keeps
one small object per task and never a copy of ``fixed_payload``. The points are regenerated from
the stored ``parameters`` whenever the job is planned (``jobs.planning.replan``), so a planning
job does not carry a 100,000-item list in its row.
"""

from __future__ import annotations

from typing import Any

from computalot.jobs.fanout import FanoutPlan, TaskPlan, plan_tasks
from computalot.jobs.workflows.grid import count_points, iter_points
from computalot.jobs.workflows.ranking import (
    MISSING_VALUE,
    RankBy,
    missing_warning,
    parse_rank_by,
    ranked_value,
)
from computalot.states import TaskStatus

#: Ranking entries kept in ``aggregate_result`` (the rest are counted in ``ranked``); every
#: point's result stays readable in ``GET /results``.
MAX_RANKING = 1000


def check_sweep(
    parameters: Any,
    rank_by: Any,
    fixed_payload: dict[str, Any] | None,
    batch_size: int | None,
    most: int,
) -> tuple[FanoutPlan, dict[str, Any], dict[str, Any]]:
    """(plan counted, not built; the stored plan input; the job spec's ``workflow``)."""
    count = count_points(parameters, most)
    ranking = parse_rank_by(rank_by)
    base = dict(fixed_payload or {})
    plan = FanoutPlan("items", count, [], batch_size=batch_size, spec={})
    stored = {
        "payload": base,
        "fan_out": None,
        "batch_size": batch_size,
        "workflow": {"type": "sweep", "parameters": parameters},
    }
    spec = {"type": "sweep", "rank_by": ranking.out(), "parameters": list(parameters)}
    return plan, stored, spec


def sweep_tasks(stored: dict[str, Any]) -> list[TaskPlan]:
    """The sweep's tasks, the grid generated again from its parameters (deterministic)."""
    points = list(iter_points(stored["workflow"]["parameters"]))
    return plan_tasks(points, stored.get("batch_size"))


class SweepFold:
    """Reads a sweep's elements one at a time; :meth:`result` ranks them."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.rank_by = RankBy(**spec["rank_by"])
        self.scored: list[tuple[float, int, Any]] = []  # (sort key, element index, params)
        self.values: dict[int, Any] = {}
        self.counts = {"points": 0, "completed": 0, "failed": 0, "cancelled": 0, "missing": 0}

    def add(self, index: int, status: str, result: Any, item: Any) -> None:
        self.counts["points"] += 1
        if status == TaskStatus.FAILED:
            self.counts["failed"] += 1
        elif status == TaskStatus.CANCELLED:
            self.counts["cancelled"] += 1
        if status != TaskStatus.COMPLETED:
            return
        self.counts["completed"] += 1
        value = ranked_value(result, self.rank_by.field)
        if value is MISSING_VALUE:
            self.counts["missing"] += 1
            return
        self.scored.append((self.rank_by.sort_key(value), index, item))
        self.values[index] = value

    def top(self) -> list[tuple[float, int, Any]]:
        """The best :data:`MAX_RANKING` points; ties keep grid order."""
        self.scored.sort(key=lambda s: (s[0], s[1]))
        return self.scored[:MAX_RANKING]

    def result(self, task_ids: dict[int, str]) -> tuple[dict[str, Any], list[str]]:
        ranking = [
            {
                "rank": rank,
                "params": params,
                "value": self.values[index],
                "task_id": task_ids.get(index),
                "index": index,
            }
            for rank, (_key, index, params) in enumerate(self.top(), start=1)
        ]
        warning = missing_warning(
            "sweep", self.counts["missing"], self.counts["completed"], self.rank_by
        )
        aggregate = {
            "rank_by": self.rank_by.out(),
            "ranking": ranking,
            "best": ranking[0] if ranking else None,
            **self.counts,
            "ranked": len(self.scored),
            "ranking_truncated": len(self.scored) > len(ranking),
        }
        return aggregate, [warning] if warning else []
