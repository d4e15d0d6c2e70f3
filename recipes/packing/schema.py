"""The ``packing`` payload (docs/recipes.md, "packing").

One model for the five operations; :meth:`PackingPayload.problems` says which inputs each one
needs and refuses a field given to an operation it does not apply to, so a payload that breaks
a rule is a 422 naming the field before any job is created. NaN and infinity are refused
everywhere. Only pydantic is imported: the API process reads this module.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Operation = Literal[
    "eval", "eval_batch", "feasible_optimize", "basin_hopping", "differential_evolution"
]
OPTIMIZERS = ("feasible_optimize", "basin_hopping", "differential_evolution")
ART_PATTERN = r"^art_[A-Za-z0-9_-]+$"
MAX_BATCH = 100_000

Candidate = Annotated[
    list[float],
    Field(
        min_length=45,
        max_length=45,
        description="45 numbers [x0, y0, θ0, x1, y1, θ1, …] for 15 unit semicircles: (x, y) "
        "the centre of the full disk, θ (radians) the direction the curved side bulges.",
    ),
]

#: The operations each optional field applies to (a field given to another one is refused).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "candidate": ("eval", *OPTIMIZERS),
    "candidate_ref": ("eval", *OPTIMIZERS),
    "candidates": ("eval_batch",),
    "candidates_ref": ("eval_batch",),
    "seed": OPTIMIZERS,
    "max_iters": OPTIMIZERS,
    "time_budget_s": OPTIMIZERS,
    "islands": OPTIMIZERS,
    "n_restarts": ("feasible_optimize",),
    "hop_scale": OPTIMIZERS,
    "temperature": ("basin_hopping",),
    "local_iters": ("basin_hopping", "differential_evolution"),
    "population_size": ("differential_evolution",),
    "crossover": ("differential_evolution",),
    "polish_every": ("differential_evolution",),
}


class PackingPayload(BaseModel):
    """Score candidate packings of 15 unit semicircles (``eval``, ``eval_batch``) or search for
    a small valid one (``feasible_optimize``, ``basin_hopping``, ``differential_evolution``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    operation: Operation = Field(
        "eval",
        description="`eval` (one candidate), `eval_batch` (many), or an optimiser: "
        "`feasible_optimize`, `basin_hopping`, `differential_evolution`.",
    )
    candidate: Candidate | None = Field(
        None,
        description="`eval`: the candidate to score. Optimisers: the start (default: seven "
        "disks of two semicircles back to back in a hexagonal flower, and one more).",
    )
    candidate_ref: str | None = Field(
        None,
        pattern=ART_PATTERN,
        description="Artifact id of a JSON file holding a candidate: a 45-number list, or an "
        'object with a "candidate" or "best_candidate" list (an optimiser\'s best-candidate '
        "artifact). In place of `candidate`.",
    )
    candidates: list[Candidate] | None = Field(
        None,
        max_length=MAX_BATCH,
        description=f"`eval_batch`: up to {MAX_BATCH:,} candidates.",
    )
    candidates_ref: str | None = Field(
        None,
        pattern=ART_PATTERN,
        description="`eval_batch`: artifact id of a JSON list of 45-number lists, in place of "
        "`candidates`.",
    )
    penalty: float = Field(
        100.0,
        ge=0,
        description="Weight of the summed overlap area (square units) in `penalized_score` = "
        "radius + penalty × overlap, by which the optimisers rank invalid candidates.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="Seeds every random choice: the same seed, `max_iters`, `islands` and "
        "knobs give the same packing unless the time budget or deadline cut the run.",
    )
    max_iters: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="`basin_hopping`: hops per island (default 50); `differential_evolution`: "
        "generations per island (default 200); `feasible_optimize`: L-BFGS iterations per "
        "penalty stage of each local minimisation (default 300). With `time_budget_s` and no "
        "`max_iters`, hops and generations go on until the budget is spent.",
    )
    time_budget_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Stop after about this many seconds with the best packing so far (the "
        "job's timeout also stops it, with a margin to answer).",
    )
    islands: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Independent searches run side by side, each a Ray task per epoch "
        "(default: the job's CPUs).",
    )
    n_restarts: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="`feasible_optimize`: local minimisations (the start, then random starts, "
        "or hops around a given start). Default 8, or unlimited within `time_budget_s`.",
    )
    hop_scale: float | None = Field(
        None,
        gt=0,
        le=10,
        description="Size of a random move (standard deviation, length units; angles twice "
        "it): a basin-hopping hop, a `feasible_optimize` restart around a given start, the "
        "spread of the initial population of `differential_evolution`. Default 0.1.",
    )
    temperature: float | None = Field(
        None,
        ge=0,
        le=10,
        description="`basin_hopping`: Metropolis temperature in radius units (default 0.003).",
    )
    local_iters: int | None = Field(
        None,
        ge=10,
        le=100_000,
        description="`basin_hopping`, `differential_evolution`: L-BFGS iterations per penalty "
        "stage of each local minimisation (default 300).",
    )
    population_size: int | None = Field(
        None,
        ge=4,
        le=10_000,
        description="`differential_evolution`: members per island (default 16).",
    )
    crossover: float | None = Field(
        None,
        ge=0,
        le=1,
        description="`differential_evolution`: crossover probability (default 0.9).",
    )
    polish_every: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="`differential_evolution`: generations between two polishes of the "
        "island's best member by local minimisation (default 25).",
    )

    def problems(self) -> list[tuple[str, str]]:
        """Rules that span fields: each (field, message) is a 422 naming ``payload.<field>``."""
        out: list[tuple[str, str]] = []
        op = self.operation
        for name, ops in APPLIES_TO.items():
            if name in self.model_fields_set and getattr(self, name) is not None and op not in ops:
                out.append((name, f"{name} only applies to {', '.join(ops)}, not {op}"))
        if op == "eval" and (self.candidate is None) == (self.candidate_ref is None):
            out.append(("candidate", "eval needs exactly one of candidate and candidate_ref"))
        if op == "eval_batch" and (self.candidates is None) == (self.candidates_ref is None):
            out.append(
                ("candidates", "eval_batch needs exactly one of candidates and candidates_ref")
            )
        if op in OPTIMIZERS and self.candidate is not None and self.candidate_ref is not None:
            out.append(("candidate_ref", "give the start as candidate or candidate_ref, not both"))
        return out
