"""The ``echidna`` catalog entry (docs/recipes.md, "echidna"): fuzz a prebuilt Foundry or
Hardhat project's contract with Echidna, on nodes with the ``echidna`` worker capability.

Both operations run in ``recipes.echidna.operations``; where no alive node declares
``echidna`` a job is refused at submit with 409 ``not_available`` naming it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recipes.registry import Operation, Recipe


class EchidnaPayload(BaseModel):
    """A project to fuzz and how (each setting is the Echidna option it names)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    operation: Literal["foundry_prebuilt", "hardhat_prebuilt"] = Field(
        "foundry_prebuilt", description="How the project in `project_ref` was built."
    )
    project_ref: str = Field(
        pattern=r"^art_[A-Za-z0-9_-]+$",
        description="Artifact id of the project's tarball, build output included.",
    )
    contract: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z_$][A-Za-z0-9_$]*$",
        description="Contract to fuzz.",
    )
    test_mode: Literal["property", "assertion", "optimization", "overflow", "exploration"] = Field(
        "property", description="Echidna's --test-mode."
    )
    test_limit: int = Field(50_000, ge=1, le=100_000_000, description="Echidna's --test-limit.")
    seq_len: int = Field(100, ge=1, le=10_000, description="Echidna's --seq-len.")
    shrink_limit: int = Field(5_000, ge=0, le=10_000_000, description="Echidna's --shrink-limit.")
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="Echidna's --seed (random when absent)."
    )
    workers: int = Field(1, ge=1, le=64, description="Echidna's --workers (fuzzing threads).")
    stop_on_fail: bool = Field(
        False, description="Echidna's stopOnFail: stop at the first falsified test."
    )


_OPS = "recipes.echidna.operations:"
_TEST = {
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"]},
        "status": {"enum": ["passed", "failed", "error"]},
        "echidna_status": {"type": "string"},
        "reason": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        "call_sequence": {"type": "array", "items": {"type": "object"}},
    },
}

RECIPE = Recipe(
    name="echidna",
    description="Fuzz Solidity contracts with Echidna on workers that have it.",
    payload_model=EchidnaPayload,
    operations=(
        Operation(
            "foundry_prebuilt",
            "Fuzz a contract of a Foundry project built beforehand (needs `echidna`).",
            _OPS + "run_foundry_prebuilt",
            capability="echidna",
        ),
        Operation(
            "hardhat_prebuilt",
            "Fuzz a contract of a Hardhat project built beforehand (needs `echidna`).",
            _OPS + "run_hardhat_prebuilt",
            capability="echidna",
        ),
    ),
    artifact_inputs=("project_ref",),
    result_schema={
        "type": "object",
        "description": "Echidna's report, structured (docs/recipes.md, echidna).",
        "properties": {
            "passed": {"type": "boolean"},
            "format": {"enum": ["json", "text"]},
            "tests": {"type": "array", "items": _TEST},
            "counts": {"type": "object"},
            "coverage": {
                "type": "object",
                "properties": {
                    "instructions": {"type": ["integer", "null"]},
                    "codehashes": {"type": ["integer", "null"]},
                    "corpus_size": {"type": ["integer", "null"]},
                },
            },
            "seed": {"type": ["integer", "null"]},
            "killed_at_timeout": {"type": "boolean"},
        },
    },
    examples=(
        {
            "description": "Fuzz MyToken's properties for 50,000 calls.",
            "payload": {
                "operation": "foundry_prebuilt",
                "project_ref": "art_…",
                "contract": "MyToken",
            },
        },
    ),
    placement="echidna",
)
