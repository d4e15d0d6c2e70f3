"""The ``packing`` recipe as the registry lists it (docs/recipes.md, "packing").

Light on purpose: pydantic and the payload model only, no NumPy (the API process imports it).
The operations live in :mod:`recipes.packing.operations`, imported by the worker that runs a
job.
"""

from __future__ import annotations

from typing import Any

from ..registry import Operation, Recipe
from .schema import PackingPayload

_OPS = "recipes.packing.operations"

#: Seven disks (two semicircles back to back) in a hexagonal flower and one semicircle more.
EXAMPLE_CANDIDATE = [
    0.0, 0.0, 0.0, 0.0, 0.0, 3.141593,
    2.0, 0.0, 0.3, 2.0, 0.0, 3.441593,
    1.0, 1.732051, 0.6, 1.0, 1.732051, 3.741593,
    -1.0, 1.732051, 0.9, -1.0, 1.732051, 4.041593,
    -2.0, 0.0, 1.2, -2.0, 0.0, 4.341593,
    -1.0, -1.732051, 1.5, -1.0, -1.732051, 4.641593,
    1.0, -1.732051, 1.8, 1.0, -1.732051, 4.941593,
    0.0, 4.0, 1.570796,
]  # fmt: skip

_MEC = {
    "type": "object",
    "description": "The minimum enclosing circle of the rounded candidate.",
    "properties": {"x": {"type": "number"}, "y": {"type": "number"}, "r": {"type": "number"}},
}
_OVERLAPS = {
    "type": "array",
    "description": "Pairs that overlap in the challenge's sense: [i, j, exact area].",
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
}
_EVAL_RESULT: dict[str, Any] = {
    "type": "object",
    "title": "eval",
    "properties": {
        "valid": {"type": "boolean", "description": "No overlap and everything inside."},
        "score": {
            "type": ["number", "null"],
            "description": "Radius of the enclosing circle (lower is better); null if invalid.",
        },
        "mec": _MEC,
        "overlaps": _OVERLAPS,
        "penalized_score": {
            "type": "number",
            "description": "radius + penalty × summed area of the overlapping pairs.",
        },
    },
    "required": ["valid", "score", "mec", "overlaps", "penalized_score"],
}
_BATCH_RESULT: dict[str, Any] = {
    "type": "object",
    "title": "eval_batch",
    "properties": {
        "results": {"type": "array", "items": _EVAL_RESULT, "description": "In input order."},
        "best_index": {
            "type": ["integer", "null"],
            "description": "The valid candidate with the smallest radius (first on ties).",
        },
        "n_valid": {"type": "integer"},
    },
    "required": ["results", "best_index", "n_valid"],
}
_OPTIMIZER_RESULT: dict[str, Any] = {
    "type": "object",
    "title": "feasible_optimize, basin_hopping, differential_evolution",
    "properties": {
        "best_candidate": {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 45,
            "maxItems": 45,
            "description": "The best candidate found, rounded to 6 decimals.",
        },
        "best_score": {
            "type": "number",
            "description": "Radius of its enclosing circle under the exact scorer: the best "
            "valid candidate's when one was found, else the best penalised one's.",
        },
        "valid": {"type": "boolean"},
        "overlaps": _OVERLAPS,
        "history": {
            "type": "array",
            "description": "One entry per epoch: epoch, iteration, elapsed_s, best_score "
            "(best valid radius so far, or null), evaluations.",
            "items": {"type": "object"},
        },
        "evaluations": {"type": "integer", "description": "Candidates scored in all."},
        "iterations": {"type": "integer"},
        "islands": {"type": "integer"},
        "elapsed_s": {"type": "number"},
        "stopped": {
            "type": "string",
            "enum": ["max_iters", "time_budget", "deadline"],
            "description": "Why the search ended.",
        },
        "best_candidate_artifact": {
            "type": "string",
            "description": 'Artifact id of best_candidate.json: {"candidate", "score", '
            '"valid"}; pass it as candidate_ref to start another run from it.',
        },
    },
    "required": ["best_candidate", "best_score", "valid", "history", "evaluations"],
}

RECIPE = Recipe(
    name="packing",
    description="Pack 15 unit semicircles into the smallest circle: score candidates exactly "
    "as the public semicircle-packing challenge does, or search for small valid packings.",
    payload_model=PackingPayload,
    operations=(
        Operation("eval", "Score one candidate.", f"{_OPS}:run_eval"),
        Operation(
            "eval_batch",
            "Score up to 100,000 candidates; big batches are split over parallel tasks.",
            f"{_OPS}:run_eval_batch",
            fans_out=True,
        ),
        Operation(
            "feasible_optimize",
            "Local minimisations (penalty method, L-BFGS) from the start and random starts, "
            "each repaired to a valid packing.",
            f"{_OPS}:run_feasible_optimize",
            fans_out=True,
        ),
        Operation(
            "basin_hopping",
            "Islands of hop, local minimisation and Metropolis acceptance.",
            f"{_OPS}:run_basin_hopping",
            fans_out=True,
        ),
        Operation(
            "differential_evolution",
            "Islands of differential evolution whose best member is polished locally.",
            f"{_OPS}:run_differential_evolution",
            fans_out=True,
        ),
    ),
    artifact_inputs=("candidate_ref", "candidates_ref"),
    result_schema={"oneOf": [_EVAL_RESULT, _BATCH_RESULT, _OPTIMIZER_RESULT]},
    examples=(
        {
            "description": "Score the hexagonal flower of seven disks and one semicircle.",
            "payload": {"operation": "eval", "candidate": EXAMPLE_CANDIDATE},
        },
        {
            "description": "Score two candidates at once.",
            "payload": {
                "operation": "eval_batch",
                "candidates": [EXAMPLE_CANDIDATE, EXAMPLE_CANDIDATE],
            },
        },
        {
            "description": "Four local minimisations from the default start and random ones.",
            "payload": {"operation": "feasible_optimize", "n_restarts": 4, "seed": 1},
        },
        {
            "description": "Basin hopping for two minutes from the default start.",
            "payload": {"operation": "basin_hopping", "time_budget_s": 120, "seed": 0},
        },
        {
            "description": "Differential evolution, 50 generations per island.",
            "payload": {"operation": "differential_evolution", "max_iters": 50, "seed": 0},
        },
    ),
)
