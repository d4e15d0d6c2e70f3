"""The epoch loop every packing optimiser runs (docs/recipes.md, "packing").

Each epoch sends every island its next iterations as one ``ctx.parallel`` call (a Ray task per
island on the cluster), gathers the islands, keeps the best candidate, records a history entry
and reports progress; the loop ends when the iterations are done, or before the time budget or
the job's deadline would be passed (an epoch's tasks also stop between iterations once their
share of the time is spent). The answer is the best candidate re-scored by
:func:`..scoring.evaluate` (the public challenge's verdict after rounding), written to
``best_candidate.json`` and published as an artifact.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...context import RecipeContext
from ..scoring import evaluate
from .islands import Island, island_epoch

#: At most this many history entries are kept (evenly thinned beyond it).
MAX_HISTORY = 200


@dataclass
class Plan:
    """What to run: ``total`` iterations in all (restarts, for ``feasible_optimize``, numbered
    across islands) or per island (None: until the time runs out), ``per_epoch`` of them per
    island and epoch."""

    operation: str
    islands: int
    per_epoch: int
    total: int | None
    shared_numbering: bool
    time_budget_s: float | None


def _stop_at(ctx: RecipeContext, budget_s: float | None) -> float:
    left = ctx.time_left()
    usable = left - max(5.0, 0.1 * left)
    if budget_s is not None:
        usable = min(usable, budget_s)
    return time.monotonic() + usable


def _next_iterations(plan: Plan, epoch: int, done: list[int]) -> list[list[int]]:
    """The iteration numbers each island runs in ``epoch``."""
    out: list[list[int]] = []
    for island in range(plan.islands):
        if plan.shared_numbering:  # restart r runs on island r % islands
            first = (epoch * plan.per_epoch) * plan.islands + island
            its = [first + k * plan.islands for k in range(plan.per_epoch)]
        else:
            its = list(range(done[island], done[island] + plan.per_epoch))
        if plan.total is not None:
            its = [it for it in its if it < plan.total]
        out.append(its)
    return out


def _best(states: list[Island]) -> Island:
    return min(states, key=lambda s: s.best_key)


def _thin(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(history) <= MAX_HISTORY:
        return history
    keep = np.unique(np.linspace(0, len(history) - 1, MAX_HISTORY).round().astype(int))
    return [history[int(k)] for k in keep]


def run_islands(
    ctx: RecipeContext, plan: Plan, params: dict[str, Any], start: np.ndarray
) -> dict[str, Any]:
    """Run ``plan`` and answer the optimiser's result (docs/recipes.md, "packing")."""
    started = time.monotonic()
    stop_at = _stop_at(ctx, plan.time_budget_s)
    shared = ctx.share(params)
    states = [Island(index=k, current=start.copy()) for k in range(plan.islands)]
    done = [0] * plan.islands
    history: list[dict[str, Any]] = []
    stopped = "max_iters"
    epoch_times: list[float] = []
    step_s = 0.0  # the longest an iteration took so far (an island stops one short of the end)
    epoch = 0
    while True:
        calls = _next_iterations(plan, epoch, done)
        if not any(calls):
            break
        left = stop_at - time.monotonic()
        estimate = float(np.mean(epoch_times[-3:])) if epoch_times else 0.0
        if left <= 0 or (epoch_times and left < 0.5 * estimate):
            stopped = "time_budget" if plan.time_budget_s is not None else "deadline"
            break
        began = time.monotonic()
        active = [k for k in range(plan.islands) if calls[k]]
        results = ctx.parallel(
            island_epoch,
            [(plan.operation, shared, states[k], calls[k], left - step_s) for k in active],
            num_cpus=1,
        )
        for k, state in zip(active, results, strict=True):
            states[k] = state
            done[k] += len(calls[k]) if not state.cut_short else 0
        epoch_times.append(time.monotonic() - began)
        step_s = max(step_s, epoch_times[-1] / max(len(calls[k]) for k in active))
        epoch += 1
        best = _best(states)
        evaluations = sum(s.evaluations for s in states)
        iterations = sum(s.iterations for s in states)
        best_valid = best.best_radius if best.best_key[0] == 0 else None
        history.append(
            {
                "epoch": epoch,
                "iteration": iterations,
                "elapsed_s": round(time.monotonic() - started, 3),
                "best_score": best_valid,
                "evaluations": evaluations,
            }
        )
        fraction = _fraction(plan, iterations, started, stop_at)
        ctx.progress(
            fraction=fraction,
            iteration=iterations,
            best_score=best_valid,
            evaluations=evaluations,
            message=f"epoch {epoch}: best valid radius "
            + (f"{best_valid:.6f}" if best_valid is not None else "none yet"),
        )
        if any(s.cut_short for s in states):
            stopped = "time_budget" if plan.time_budget_s is not None else "deadline"
            break
    return _answer(ctx, plan, states, history, stopped, started)


def _fraction(plan: Plan, iterations: int, started: float, stop_at: float) -> float:
    by_time = (time.monotonic() - started) / max(stop_at - started, 1e-9)
    by_iters = 0.0
    if plan.total is not None:
        total = plan.total if plan.shared_numbering else plan.total * plan.islands
        by_iters = iterations / max(total, 1)
    return float(min(1.0, max(by_time if plan.total is None else by_iters, 0.0)))


def _answer(
    ctx: RecipeContext,
    plan: Plan,
    states: list[Island],
    history: list[dict[str, Any]],
    stopped: str,
    started: float,
) -> dict[str, Any]:
    best = _best(states)
    if best.best is None:  # no iteration ran at all: the start itself, rounded
        candidate = [round(float(v), 6) for v in states[0].current]
    else:
        candidate = [float(v) for v in best.best]
    verdict = evaluate(candidate, penalty=1.0)
    radius = float(verdict["mec"]["r"])
    payload = {"candidate": candidate, "score": radius, "valid": verdict["valid"]}
    (ctx.out_dir / "best_candidate.json").write_text(json.dumps(payload))
    art = ctx.publish("best_candidate.json")
    evaluations = sum(s.evaluations for s in states)
    iterations = sum(s.iterations for s in states)
    best_valid = radius if verdict["valid"] else None
    ctx.progress(
        final=True,
        fraction=1.0,
        iteration=iterations,
        best_score=best_valid,
        evaluations=evaluations,
        message=f"done ({stopped}): radius {radius:.6f}, valid {verdict['valid']}",
    )
    return {
        "best_candidate": candidate,
        "best_score": radius,
        "valid": bool(verdict["valid"]),
        "overlaps": verdict["overlaps"],
        "history": _thin(history),
        "evaluations": int(evaluations),
        "iterations": int(iterations),
        "islands": plan.islands,
        "elapsed_s": round(time.monotonic() - started, 3),
        "stopped": stopped,
        "best_candidate_artifact": art,
    }
