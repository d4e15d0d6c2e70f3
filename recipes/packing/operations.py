"""The ``packing`` recipe's operations (docs/recipes.md, "packing"): ``run_eval``,
``run_eval_batch`` and the three optimisers, each ``run_xxx(ctx, payload) -> result``.

``candidate_ref`` is a JSON file holding a 45-number list, or an object with a ``candidate`` or
``best_candidate`` list (so an optimiser's best-candidate artifact seeds a new run);
``candidates_ref`` a JSON list of 45-number lists. A malformed input is a
:class:`~recipes.context.RecipeFailure` naming the field (and the index at fault).
``eval_batch`` splits a big batch into chunks scored as parallel tasks and merges them into the
result one call would give.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np

from ..context import RecipeContext, RecipeFailure
from .geometry import round_candidate, round_candidates
from .optimizers.driver import Plan, run_islands
from .optimizers.starts import default_start
from .schema import PackingPayload
from .scoring import evaluate, evaluate_batch

#: A batch larger than this is split into chunks scored as parallel tasks (when cpus > 1).
CHUNK_ABOVE = 5_000


def _read_json(ctx: RecipeContext, field: str) -> Any:
    path = ctx.input_path(field)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecipeFailure(f"{field}: not a readable JSON file ({exc})") from None


def _candidate_values(field: str, values: Any) -> list[float]:
    """Check a 45-number list from an input file (finite numbers, right length)."""
    if not isinstance(values, list):
        raise RecipeFailure(f"{field}: expected a list of 45 numbers, got {type(values).__name__}")
    try:
        return [float(v) for v in round_candidate(values)]
    except ValueError as exc:
        raise RecipeFailure(f"{field}: {exc}") from None


def load_candidate(ctx: RecipeContext, payload: PackingPayload) -> list[float] | None:
    """The payload's candidate (from ``candidate`` or ``candidate_ref``), or None."""
    if payload.candidate is not None:
        return list(payload.candidate)
    if payload.candidate_ref is None:
        return None
    data = _read_json(ctx, "candidate_ref")
    if isinstance(data, dict):
        for key in ("candidate", "best_candidate"):
            if key in data:
                return _candidate_values("candidate_ref", data[key])
        raise RecipeFailure(
            'candidate_ref: a JSON object must hold a "candidate" or "best_candidate" list'
        )
    return _candidate_values("candidate_ref", data)


def load_candidates(ctx: RecipeContext, payload: PackingPayload) -> np.ndarray:
    """The payload's batch, rounded, as an (n, 45) array."""
    if payload.candidates is not None:
        return round_candidates(payload.candidates)
    data = _read_json(ctx, "candidates_ref")
    if not isinstance(data, list):
        raise RecipeFailure(
            f"candidates_ref: expected a JSON list of 45-number lists, got {type(data).__name__}"
        )
    for n, row in enumerate(data):
        if not isinstance(row, list):
            raise RecipeFailure(f"candidates_ref[{n}]: expected a list of 45 numbers")
        if len(row) != 45:
            raise RecipeFailure(f"candidates_ref[{n}]: expected 45 numbers, got {len(row)}")
    try:
        return round_candidates(data)
    except ValueError as exc:
        raise RecipeFailure(f"candidates_ref: {exc}") from None


def run_eval(ctx: RecipeContext, payload: PackingPayload) -> dict[str, Any]:
    """``eval``: the verdict of one candidate (docs/recipes.md, "packing")."""
    candidate = load_candidate(ctx, payload)
    if candidate is None:
        raise RecipeFailure("candidate: eval needs candidate or candidate_ref")
    try:
        return evaluate(candidate, payload.penalty)
    except ValueError as exc:
        raise RecipeFailure(f"candidate: {exc}") from None


def score_chunk(rounded: np.ndarray, penalty: float) -> dict[str, Any]:
    """One chunk of ``eval_batch`` (a parallel task)."""
    return evaluate_batch(rounded, penalty)


def run_eval_batch(ctx: RecipeContext, payload: PackingPayload) -> dict[str, Any]:
    """``eval_batch``: every candidate's verdict, the best valid one's index and the number
    valid (docs/recipes.md, "packing"); chunks of a big batch run as parallel tasks."""
    rounded = load_candidates(ctx, payload)
    n = rounded.shape[0]
    if n <= CHUNK_ABOVE or ctx.cpus <= 1:
        return evaluate_batch(rounded, payload.penalty)
    n_chunks = min(max(ctx.cpus, math.ceil(n / 25_000)), math.ceil(n / 1_000))
    bounds = np.linspace(0, n, n_chunks + 1).round().astype(int)
    parts = ctx.parallel(
        score_chunk,
        [(rounded[a:b], payload.penalty) for a, b in itertools.pairwise(bounds)],
        num_cpus=1,
    )
    results: list[dict[str, Any]] = []
    best_index: int | None = None
    best_radius = math.inf
    for offset, part in zip(bounds[:-1], parts, strict=True):
        if part["best_index"] is not None:
            radius = part["results"][part["best_index"]]["score"]
            if radius < best_radius:  # strictly: the first on ties, as one call
                best_radius, best_index = radius, int(offset) + part["best_index"]
        results.extend(part["results"])
    return {
        "results": results,
        "best_index": best_index,
        "n_valid": sum(part["n_valid"] for part in parts),
    }


def _start(ctx: RecipeContext, payload: PackingPayload) -> tuple[np.ndarray, bool]:
    given = load_candidate(ctx, payload)
    if given is None:
        return default_start(), False
    return np.array(given, dtype=float), True


def _params(payload: PackingPayload, start: np.ndarray, given: bool) -> dict[str, Any]:
    return {
        "seed": payload.seed,
        "penalty": payload.penalty,
        "start": start,
        "start_given": given,
        "hop_scale": payload.hop_scale if payload.hop_scale is not None else 0.1,
        "temperature": payload.temperature if payload.temperature is not None else 0.003,
        "local_iters": payload.local_iters or 300,
        "population_size": payload.population_size or 16,
        "crossover": payload.crossover if payload.crossover is not None else 0.9,
        "polish_every": payload.polish_every or 25,
    }


def _islands(ctx: RecipeContext, payload: PackingPayload) -> int:
    return payload.islands or max(1, int(ctx.cpus))


def run_feasible_optimize(ctx: RecipeContext, payload: PackingPayload) -> dict[str, Any]:
    """``feasible_optimize``: local minimisations from the start and from random starts (or
    hops around a given start), each repaired to valid; the best one wins."""
    start, given = _start(ctx, payload)
    params = _params(payload, start, given)
    params["local_iters"] = payload.max_iters or 300
    total = payload.n_restarts or (None if payload.time_budget_s is not None else 8)
    plan = Plan("feasible_optimize", _islands(ctx, payload), 1, total, True, payload.time_budget_s)
    return run_islands(ctx, plan, params, start)


def run_basin_hopping(ctx: RecipeContext, payload: PackingPayload) -> dict[str, Any]:
    """``basin_hopping``: per island, hop (``hop_scale``), minimise locally, repair, accept
    by the Metropolis rule; the best over all islands wins."""
    start, given = _start(ctx, payload)
    params = _params(payload, start, given)
    total = payload.max_iters or (None if payload.time_budget_s is not None else 50)
    plan = Plan("basin_hopping", _islands(ctx, payload), 4, total, False, payload.time_budget_s)
    return run_islands(ctx, plan, params, start)


def run_differential_evolution(ctx: RecipeContext, payload: PackingPayload) -> dict[str, Any]:
    """``differential_evolution``: per island, a population around the start evolved on the
    penalised score, its best member polished by local minimisation every ``polish_every``
    generations; the best over all islands wins."""
    start, given = _start(ctx, payload)
    params = _params(payload, start, given)
    total = payload.max_iters or (None if payload.time_budget_s is not None else 200)
    per_epoch = params["polish_every"]
    plan = Plan(
        "differential_evolution",
        _islands(ctx, payload),
        per_epoch,
        total,
        False,
        payload.time_budget_s,
    )
    return run_islands(ctx, plan, params, start)
