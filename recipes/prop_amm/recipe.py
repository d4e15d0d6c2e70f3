"""The ``prop_amm`` catalog entry (docs/recipes.md, "prop_amm"): its payload, not yet its work.

The payload follows the public Prop AMM challenge: a strategy as an artifact of its ``lib.rs``
(``strategy_ref``) or inline base64 source (``rs_source_b64``), and the simulations to run.
Every operation is listed without a function, so a job answers ``not_available``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recipes.registry import Operation, Recipe

PropAmmOperation = Literal[
    "eval",
    "eval_chunk",
    "validate",
    "validate_full",
    "bpf_eval",
    "bpf_eval_chunk",
    "build",
    "concavity_check",
]


class PropAmmPayload(BaseModel):
    """A strategy and the simulations to score it on."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    operation: PropAmmOperation = Field("eval", description="What to do with the strategy.")
    strategy_ref: str | None = Field(
        None,
        pattern=r"^art_[A-Za-z0-9_-]+$",
        description="Artifact id of the strategy's lib.rs.",
    )
    rs_source_b64: str | None = Field(
        None, max_length=1_000_000, description="The strategy's lib.rs, base64-encoded."
    )
    seed_base: int = Field(0, ge=0, le=2**63 - 1, description="First simulation seed.")
    start: int = Field(0, ge=0, description="Index of the first simulation of a chunk.")
    count: int = Field(100, ge=1, le=100_000, description="Simulations to run.")
    steps: int = Field(10_000, ge=1, le=1_000_000, description="Steps per simulation.")
    strict_curves: bool = Field(
        False, description="Refuse strategies whose curves are not concave."
    )
    per_seed: bool = Field(False, description="Report each simulation's edge.")

    def problems(self) -> list[tuple[str, str]]:
        if (self.strategy_ref is None) == (self.rs_source_b64 is None):
            return [("strategy_ref", "give exactly one of strategy_ref or rs_source_b64")]
        return []


_OPERATIONS = (
    ("eval", "Score the strategy's average edge over `count` simulations."),
    ("eval_chunk", "Score one chunk (`start`, `count`) of a larger evaluation."),
    ("validate", "Check the source follows the challenge's rules and compiles."),
    ("validate_full", "Validate, then run a short evaluation."),
    ("bpf_eval", "Score the strategy compiled for the SBF target."),
    ("bpf_eval_chunk", "One chunk of an SBF evaluation."),
    ("build", "Compile the strategy and store the build as an artifact."),
    ("concavity_check", "Check the strategy's price curves are concave."),
)

RECIPE = Recipe(
    name="prop_amm",
    description="Compile and score Rust AMM strategies, compatible with the public Prop AMM "
    "challenge.",
    payload_model=PropAmmPayload,
    operations=tuple(Operation(name, text) for name, text in _OPERATIONS),
    artifact_inputs=("strategy_ref",),
    result_schema={
        "type": "object",
        "description": "Published with the recipe's evaluator (docs/recipes.md).",
    },
    examples=(
        {
            "description": "Score a strategy uploaded as an artifact over 100 simulations.",
            "payload": {"operation": "eval", "strategy_ref": "art_…", "count": 100},
        },
    ),
    placement="rustc",
    unavailable="the prop_amm evaluator is not built on this deployment yet",
)
