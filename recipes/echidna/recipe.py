"""The ``echidna`` catalog entry (docs/recipes.md, "echidna"): its payload, not yet its work.

A prebuilt Foundry or Hardhat project as an artifact, the contract to fuzz and Echidna's mode
and limit. Every operation is listed without a function, so a job answers ``not_available``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recipes.registry import Operation, Recipe


class EchidnaPayload(BaseModel):
    """A project to fuzz and how."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    operation: Literal["foundry_prebuilt", "hardhat_prebuilt"] = Field(
        "foundry_prebuilt", description="How the project in `project_ref` was built."
    )
    project_ref: str = Field(
        pattern=r"^art_[A-Za-z0-9_-]+$",
        description="Artifact id of the project's tarball, build output included.",
    )
    contract: str = Field(min_length=1, max_length=256, description="Contract to fuzz.")
    test_mode: Literal["property", "assertion", "optimization", "overflow", "exploration"] = Field(
        "property", description="Echidna's --test-mode."
    )
    test_limit: int = Field(50_000, ge=1, le=100_000_000, description="Echidna's --test-limit.")


RECIPE = Recipe(
    name="echidna",
    description="Fuzz Solidity contracts with Echidna on workers that have it.",
    payload_model=EchidnaPayload,
    operations=(
        Operation("foundry_prebuilt", "Fuzz a contract of a Foundry project built beforehand."),
        Operation("hardhat_prebuilt", "Fuzz a contract of a Hardhat project built beforehand."),
    ),
    artifact_inputs=("project_ref",),
    result_schema={
        "type": "object",
        "description": "Published with the recipe's runner (docs/recipes.md).",
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
    unavailable="no worker of this deployment runs Echidna yet",
)
