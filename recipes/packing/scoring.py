"""Verdicts of the packing recipe: the ``eval`` result of one candidate and of a batch.

A candidate is valid when no pair of semicircles overlaps by more than 1e-6 in area (measured
as the public challenge measures it, see :func:`.geometry.pairwise_overlaps`) and every
semicircle lies inside the minimum enclosing circle within 1e-9; its score is that circle's
radius (lower is better). ``penalized_score`` = radius + ``penalty`` × (sum of the exact areas
of the overlapping pairs): the objective the optimisers minimise, defined for every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .geometry import (
    PAIR_I,
    PAIR_J,
    pairwise_overlaps,
    round_candidate,
    round_candidates,
)
from .mec import farthest, mec_batch

CONTAINMENT_TOL = 1e-9
"""A semicircle counts as inside the enclosing circle when it reaches at most this far out."""
DEFAULT_PENALTY = 100.0
"""Weight of the summed overlap area (square units) in ``penalized_score``."""


def score_batch(rounded: np.ndarray, penalty: float = DEFAULT_PENALTY) -> dict[str, np.ndarray]:
    """Score already-rounded (n, 45) candidates with arrays only (the optimisers' hot path).

    Returns ``valid`` (n,), ``radius`` (n,), ``mec_x``/``mec_y`` (n,), ``areas`` (n, 105) in
    ``PAIR_I``/``PAIR_J`` order, ``overlap`` (n,) the summed area of overlapping pairs, and
    ``penalized`` (n,), ``overlapping`` (n, 105) the challenge's verdict per pair.
    """
    arr = np.atleast_2d(np.asarray(rounded, dtype=float))
    x, y, t = arr[:, 0::3], arr[:, 1::3], arr[:, 2::3]
    areas, overlapping = pairwise_overlaps(arr)
    overlap = np.where(overlapping, areas, 0.0).sum(axis=1)
    mx, my, mr = mec_batch(x, y, t)
    reach, _, _, _ = farthest(x, y, np.cos(t), np.sin(t), mx[:, None], my[:, None])
    contained = (reach <= mr[:, None] + CONTAINMENT_TOL).all(axis=1)
    valid = ~overlapping.any(axis=1) & contained
    return {
        "valid": valid,
        "radius": mr,
        "mec_x": mx,
        "mec_y": my,
        "areas": areas,
        "overlap": overlap,
        "overlapping": overlapping,
        "penalized": mr + penalty * overlap,
    }


def _result(scored: dict[str, np.ndarray], row: int) -> dict[str, Any]:
    areas = scored["areas"][row]
    hits = np.flatnonzero(scored["overlapping"][row])
    valid = bool(scored["valid"][row])
    return {
        "valid": valid,
        "score": float(scored["radius"][row]) if valid else None,
        "mec": {
            "x": float(scored["mec_x"][row]),
            "y": float(scored["mec_y"][row]),
            "r": float(scored["radius"][row]),
        },
        "overlaps": [[int(PAIR_I[k]), int(PAIR_J[k]), float(areas[k])] for k in hits],
        "penalized_score": float(scored["penalized"][row]),
    }


def evaluate(candidate: Sequence[float], penalty: float = DEFAULT_PENALTY) -> dict[str, Any]:
    """The ``eval`` result of one 45-number candidate (rounded to 6 decimals first).

    ``{"valid", "score" (MEC radius, or None when invalid), "mec": {"x", "y", "r"},
    "overlaps": [[i, j, area], …], "penalized_score"}``. ValueError on a malformed candidate.
    """
    rounded = round_candidate(candidate)
    return _result(score_batch(rounded[None, :], penalty), 0)


def evaluate_batch(
    candidates: Sequence[Sequence[float]] | np.ndarray, penalty: float = DEFAULT_PENALTY
) -> dict[str, Any]:
    """The ``eval_batch`` result: ``{"results": [eval result…], "best_index", "n_valid"}``.

    ``best_index`` is the valid candidate with the smallest radius (first on ties), or None.
    """
    rounded = round_candidates(candidates)
    if rounded.shape[0] == 0:
        return {"results": [], "best_index": None, "n_valid": 0}
    scored = score_batch(rounded, penalty)
    valid = scored["valid"]
    best = int(np.argmin(np.where(valid, scored["radius"], np.inf))) if valid.any() else None
    return {
        "results": [_result(scored, row) for row in range(rounded.shape[0])],
        "best_index": best,
        "n_valid": int(valid.sum()),
    }
