"""The ``prop_amm`` catalog entry (docs/recipes.md, "prop_amm"): score submitted Rust AMM
strategies, seed for seed with the public Prop AMM challenge.

The payload follows the challenge: a strategy as an artifact of its ``lib.rs``
(``strategy_ref``) or inline base64 source (``rs_source_b64``), and the simulations to run.
An inline source is checked against the challenge's rules here, at submit (a 422 naming the
rule it breaks); an artifact is checked by the task. The native operations run in
``recipes.prop_amm.operations``; the BPF ones need the Solana SBF toolchain and are listed
without a function (``not_available``).
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

#: Steps per simulation at most (the challenge's baseline is 10,000).
MAX_STEPS = 100_000
#: Simulations per job at most.
MAX_COUNT = 100_000


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
        None, max_length=1_400_000, description="The strategy's lib.rs, base64-encoded."
    )
    seed_base: int = Field(0, ge=0, le=2**63 - 1, description="First simulation seed.")
    start: int = Field(0, ge=0, le=2**62, description="Offset of the first simulation.")
    count: int = Field(100, ge=1, le=MAX_COUNT, description="Simulations to run.")
    steps: int = Field(10_000, ge=1, le=MAX_STEPS, description="Steps per simulation.")
    strict_curves: bool = Field(
        False,
        description="Before scoring, refuse a strategy that fails concavity_check's checks.",
    )
    per_seed: bool = Field(False, description="Report each simulation's seed and edge.")

    def problems(self) -> list[tuple[str, str]]:
        if (self.strategy_ref is None) == (self.rs_source_b64 is None):
            return [("strategy_ref", "give exactly one of strategy_ref or rs_source_b64")]
        if self.rs_source_b64 is not None:
            from recipes.prop_amm.operations_light import inline_problems

            return inline_problems(self.rs_source_b64)
        return []


_OPS = "recipes.prop_amm.operations:"
_OPERATIONS = (
    Operation(
        "eval",
        "Score the strategy's average edge over `count` simulations (chunks run in parallel).",
        _OPS + "run_eval",
        fans_out=True,
        capability="rustc",
    ),
    Operation(
        "eval_chunk",
        "Score simulations `start` .. `start + count` in one process.",
        _OPS + "run_eval_chunk",
        capability="rustc",
    ),
    Operation(
        "validate",
        "The challenge's checks on the compiled strategy: metadata, basic trades, monotone and "
        "concave on both sides, 32 random reserve/storage states.",
        _OPS + "run_validate",
        capability="rustc",
    ),
    Operation(
        "validate_full",
        "Validate, then the native/BPF parity run (needs `sbf`).",
        capability="sbf",
    ),
    Operation(
        "bpf_eval",
        "Score the strategy compiled for the SBF target (needs `sbf`).",
        capability="sbf",
    ),
    Operation("bpf_eval_chunk", "One chunk of an SBF evaluation (needs `sbf`).", capability="sbf"),
    Operation(
        "build",
        "Compile the strategy and publish its native runner executable as an artifact.",
        _OPS + "run_build",
        capability="rustc",
    ),
    Operation(
        "concavity_check",
        "Check the strategy's output is monotone and concave in the input on both sides.",
        _OPS + "run_concavity_check",
        capability="rustc",
    ),
)

_CHECKS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "check": {"type": "string"},
            "passed": {"type": "boolean"},
            "detail": {"type": "string"},
        },
    },
}

RECIPE = Recipe(
    name="prop_amm",
    description="Compile and score Rust AMM strategies, seed-compatible with the public Prop "
    "AMM challenge.",
    payload_model=PropAmmPayload,
    operations=_OPERATIONS,
    artifact_inputs=("strategy_ref",),
    result_schema={
        "type": "object",
        "description": "eval / eval_chunk: the batch figures; validate / concavity_check: "
        "the checks; build: the artifact (docs/recipes.md, prop_amm).",
        "properties": {
            "avg_edge": {"type": "number"},
            "total_edge": {"type": "number"},
            "n_sims": {"type": "integer"},
            "per_seed": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"seed": {"type": "integer"}, "edge": {"type": "number"}},
                },
            },
            "passed": {"type": "boolean"},
            "checks": _CHECKS,
            "artifact": {"type": "string"},
            "name": {"type": "string"},
            "model_used": {"type": "string"},
            "source_hash": {"type": "string"},
            "compiler_profile": {"type": "object"},
            "compiler_profile_hash": {"type": "string"},
        },
    },
    examples=(
        {
            "description": "Score a strategy uploaded as an artifact over 100 simulations.",
            "payload": {"operation": "eval", "strategy_ref": "art_…", "count": 100},
        },
        {
            "description": "The challenge's validity checks on an inline source.",
            "payload": {"operation": "validate", "rs_source_b64": "dXNlIHBpbm9j…"},
        },
    ),
    placement="rustc",
)
