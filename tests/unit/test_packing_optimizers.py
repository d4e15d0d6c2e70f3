"""The packing optimisers on small budgets (docs/recipes.md, "packing"): valid answers that
re-score to ``best_score``, the same packing from the same seed, progress, the artifact."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recipes.context import LocalContext
from recipes.packing import operations
from recipes.packing.optimizers.objective import (
    local_minimize,
    repair,
    value_and_grad,
    value_and_grad_numeric,
)
from recipes.packing.optimizers.starts import default_start, perturb
from recipes.packing.schema import PackingPayload
from recipes.packing.scoring import evaluate

#: Small budgets: a few short local minimisations each.
SMALL: dict[str, dict[str, Any]] = {
    "feasible_optimize": {"n_restarts": 2, "max_iters": 15},
    "basin_hopping": {"max_iters": 2, "local_iters": 15},
    "differential_evolution": {
        "max_iters": 4,  # two epochs: the population travels to a second task
        "population_size": 6,
        "polish_every": 2,
        "local_iters": 15,
    },
}


def _as_ray_passes(value: Any) -> Any:
    """``value`` as a Ray task receives it: a copy whose NumPy arrays are read-only."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, dict):
        for item in value.values():
            _as_ray_passes(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _as_ray_passes(item)
    elif hasattr(value, "__dict__"):
        _as_ray_passes(vars(value))
    return value


class Recording(LocalContext):
    """LocalContext that records the width of each parallel fan-out and hands each call its
    arguments as Ray does (copied, arrays read-only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fanouts: list[int] = []

    def parallel(self, fn: Any, calls: Any, *, num_cpus: float = 1) -> list[Any]:
        self.fanouts.append(len(calls))
        passed = [_as_ray_passes(pickle.loads(pickle.dumps(args))) for args in calls]
        return super().parallel(fn, passed, num_cpus=num_cpus)


def _run(op: str, out: Path, cpus: int = 2, **extra: Any) -> tuple[dict[str, Any], Recording]:
    ctx = Recording(out, cpus=cpus)
    payload = PackingPayload(operation=op, **{**SMALL[op], **extra})
    result = getattr(operations, f"run_{op}")(ctx, payload)
    return result, ctx


@pytest.mark.parametrize("op", list(SMALL))
def test_optimiser_answers_a_valid_rescored_packing(op: str, tmp_path: Path) -> None:
    result, ctx = _run(op, tmp_path)
    json.dumps(result, allow_nan=False)
    assert result["valid"] is True
    assert len(result["best_candidate"]) == 45
    verdict = evaluate(result["best_candidate"])
    assert verdict["valid"] and verdict["score"] == result["best_score"]
    assert result["best_score"] < evaluate(default_start())["mec"]["r"]
    assert result["evaluations"] > 0 and result["history"]
    assert result["stopped"] == "max_iters" and result["islands"] == 2
    # the artifact is written, published and re-scores to best_score
    art = result["best_candidate_artifact"]
    assert ctx.published == {"best_candidate.json": art}
    saved = json.loads((tmp_path / "best_candidate.json").read_text())
    assert saved["candidate"] == result["best_candidate"] and saved["valid"] is True
    assert evaluate(saved["candidate"])["score"] == saved["score"] == result["best_score"]
    # islands fan out; progress events carry the search's figures
    assert ctx.fanouts and max(ctx.fanouts) == 2
    assert ctx.events and ctx.events[-1]["fraction"] == 1.0
    for event in ctx.events:
        assert {"fraction", "iteration", "best_score", "evaluations"} <= set(event)
    assert ctx.events[-1]["best_score"] == result["best_score"]


@pytest.mark.parametrize("op", ["basin_hopping", "differential_evolution"])
def test_same_seed_same_packing(op: str, tmp_path: Path) -> None:
    first, _ = _run(op, tmp_path / "a", seed=7)
    again, _ = _run(op, tmp_path / "b", seed=7)
    assert again["best_candidate"] == first["best_candidate"]
    assert again["evaluations"] == first["evaluations"]


def test_feasible_restarts_do_not_depend_on_the_islands(tmp_path: Path) -> None:
    one, _ = _run("feasible_optimize", tmp_path / "a", cpus=1, seed=3)
    two, _ = _run("feasible_optimize", tmp_path / "b", cpus=2, seed=3)
    assert one["best_candidate"] == two["best_candidate"]


def test_a_start_from_a_best_candidate_artifact(tmp_path: Path) -> None:
    first, _ = _run("feasible_optimize", tmp_path / "a", n_restarts=1)
    ref = tmp_path / "a" / "best_candidate.json"
    ctx = LocalContext(tmp_path / "b", cpus=1, inputs={"candidate_ref": ref})
    payload = PackingPayload(
        operation="basin_hopping", candidate_ref="art_prev", max_iters=1, local_iters=15
    )
    result = operations.run_basin_hopping(ctx, payload)
    assert result["valid"] and result["best_score"] <= first["best_score"] + 1e-3


def test_time_budget_stops_between_epochs(tmp_path: Path) -> None:
    ctx = LocalContext(tmp_path, cpus=1)
    payload = PackingPayload(operation="basin_hopping", time_budget_s=0.5, local_iters=15)
    result = operations.run_basin_hopping(ctx, payload)
    assert result["stopped"] == "time_budget"
    assert result["valid"] and result["elapsed_s"] < 15


def test_exact_gradient_matches_differences_of_the_objective() -> None:
    rng = np.random.default_rng(0)
    start = default_start()
    pressed = start.copy()  # each disk's second half pushed 0.01 into its first half
    for i in range(1, 14, 2):
        pressed[3 * i] -= 0.01 * math.cos(pressed[3 * i + 2])
        pressed[3 * i + 1] -= 0.01 * math.sin(pressed[3 * i + 2])
    for z in (
        np.append(start + rng.normal(0.0, 0.05, 45), 3.0),
        np.append(perturb(start, rng, 0.2), 3.2),
        np.append(pressed, 2.9),
    ):
        value, grad = value_and_grad(z, 10.0)
        numeric_value, numeric = value_and_grad_numeric(z, 10.0)
        assert math.isclose(value, numeric_value, rel_tol=1e-12)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)
        for k in (0, 4, 44, 45):
            step = np.zeros(46)
            step[k] = 1e-6
            diff = (value_and_grad(z + step, 10.0)[0] - value_and_grad(z - step, 10.0)[0]) / 2e-6
            assert math.isclose(grad[k], diff, rel_tol=1e-4, abs_tol=1e-5)


def test_repair_makes_an_overlapping_packing_valid() -> None:
    squeezed = local_minimize(default_start(), iters_per_stage=20)
    squeezed[0::3] *= 0.999  # curved contacts now overlap by more than 1e-6
    squeezed[1::3] *= 0.999
    assert not evaluate(squeezed.tolist())["valid"]
    rounded, valid, radius = repair(squeezed)
    assert valid
    verdict = evaluate(rounded.tolist())
    assert verdict["valid"] and verdict["score"] == radius
