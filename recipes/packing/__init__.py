"""The ``packing`` recipe (docs/recipes.md, "packing"): 15 unit semicircles in a circle.

The kernel scores exactly as the public semicircle-packing challenge does: round to 6 decimals,
exact pairwise overlap areas (threshold 1e-6), exact minimum enclosing circle, valid when
nothing overlaps and everything is inside within 1e-9 (:mod:`.geometry`, :mod:`.mec`,
:mod:`.scoring`). :mod:`.recipe` registers the recipe, :mod:`.schema` is its payload,
:mod:`.operations` its operations and :mod:`.optimizers` the searches.

Importing the package stays light (the API process reads :mod:`.recipe`): the kernel's names
below are loaded from their modules, with NumPy, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CANDIDATE_LENGTH": "geometry",
    "N_SEMICIRCLES": "geometry",
    "OVERLAP_TOL": "geometry",
    "pair_areas": "geometry",
    "pairwise_areas": "geometry",
    "round_candidate": "geometry",
    "round_candidates": "geometry",
    "semicircle_area_overlap": "geometry",
    "mec_batch": "mec",
    "mec_exhaustive": "mec",
    "CONTAINMENT_TOL": "scoring",
    "DEFAULT_PENALTY": "scoring",
    "evaluate": "scoring",
    "evaluate_batch": "scoring",
    "score_batch": "scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The kernel's public names, imported from their module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
