"""The ``packing`` recipe's kernel: exact scoring of 15 unit semicircles in a circle.

Compatible with the public semicircle-packing challenge (``docs/llms-full.md``, recipe
``packing``): round to 6 decimals, exact pairwise overlap areas (threshold 1e-6), exact minimum
enclosing circle, valid when nothing overlaps and everything is inside within 1e-9. Pure NumPy,
no Ray: ``eval``, ``eval_batch`` and the optimisers call :func:`evaluate`,
:func:`evaluate_batch` and :func:`score_batch` directly.
"""

from .geometry import (
    CANDIDATE_LENGTH,
    N_SEMICIRCLES,
    OVERLAP_TOL,
    pair_areas,
    pairwise_areas,
    round_candidate,
    round_candidates,
    semicircle_area_overlap,
)
from .mec import mec_batch, mec_exhaustive
from .scoring import (
    CONTAINMENT_TOL,
    DEFAULT_PENALTY,
    evaluate,
    evaluate_batch,
    score_batch,
)

__all__ = [
    "CANDIDATE_LENGTH",
    "CONTAINMENT_TOL",
    "DEFAULT_PENALTY",
    "N_SEMICIRCLES",
    "OVERLAP_TOL",
    "evaluate",
    "evaluate_batch",
    "mec_batch",
    "mec_exhaustive",
    "pair_areas",
    "pairwise_areas",
    "round_candidate",
    "round_candidates",
    "score_batch",
    "semicircle_area_overlap",
]
