"""Sealed recipes: platform-owned compute run natively on Ray (``docs/recipes.md``).

Each recipe is a package here with ``schema.py`` (its pydantic payload), ``run.py`` (a function
run as a Ray task that may fan out more Ray work) and its kernels. The catalogue below is what
``GET /api/v1/recipes`` will serve; recipes are registered as they are built, and until then
``POST /api/v1/jobs`` with ``"recipe"`` answers 404 naming the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CATALOG", "RecipeInfo"]


@dataclass(frozen=True)
class RecipeInfo:
    """Catalogue entry of a recipe, as ``GET /api/v1/recipes`` will list it (``docs/recipes.md``)."""

    name: str
    description: str
    operations: tuple[str, ...]
    placement: str = "cpu"
    artifact_inputs: tuple[str, ...] = field(default_factory=tuple)


#: Recipes named by the product reference; each becomes runnable when its package lands.
CATALOG: tuple[RecipeInfo, ...] = (
    RecipeInfo(
        "packing",
        "15 unit semicircles in the smallest enclosing circle: evaluate and optimise",
        ("eval", "eval_batch", "feasible_optimize", "basin_hopping", "differential_evolution"),
        artifact_inputs=("candidate_ref", "candidates_ref"),
    ),
    RecipeInfo(
        "lightgbm_train",
        "train or cross-validate a LightGBM model on a tabular artifact",
        ("train", "cross_validate"),
        artifact_inputs=("dataset_ref",),
    ),
    RecipeInfo(
        "prop_amm",
        "prop-AMM strategy evaluation",
        (
            "eval",
            "eval_chunk",
            "validate",
            "validate_full",
            "bpf_eval",
            "bpf_eval_chunk",
            "build",
            "concavity_check",
        ),
    ),
    RecipeInfo(
        "echidna",
        "Echidna fuzzing of prebuilt Foundry/Hardhat projects",
        ("foundry_prebuilt", "hardhat_prebuilt"),
        artifact_inputs=("project_ref",),
    ),
)
