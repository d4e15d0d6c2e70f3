"""Semicircles of the packing recipe and the exact area where two of them overlap.

A candidate is 45 numbers ``[x0, y0, θ0, x1, y1, θ1, …]`` for 15 unit semicircles
(``docs/llms-full.md``, recipe ``packing``): (x, y) is the centre of the full disk, θ (radians)
the direction the curved side bulges, the flat edge passes through (x, y) perpendicular to θ.
Every number is rounded with Python's ``round(v, 6)`` before anything else, as the public
challenge does.

The intersection of two half-disks is a convex region bounded by pieces of four curves: the two
circles and the two flat-edge lines. Its area follows from Green's theorem, ∮ ½(x dy − y dx),
summed over the part of each curve that lies inside the other three constraints: arcs and
segments in closed form, no sampling. Coordinates are taken relative to the first disk's centre,
so its flat edge (a line through the origin) contributes nothing and large offsets cost no
precision. Pairs whose disks are 2 or more apart, or where one half-disk lies behind the other's
flat edge, are rejected exactly before any of that.

The verdict "overlaps" follows the public scorer, which measures areas on polygons of 4096
points per arc: it compares the exact area less the closed-form sliver between the bounding arcs
and such chords (``CHORD_DEFICIT`` per radian, ≈ 4.9e-8) with 1e-6. That matches the public
areas within ~1e-11 where the bare exact area is up to 1.8e-9 larger near the threshold, which
would flip the verdict of pairs whose exact area is within ~0.2 % above 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

N_SEMICIRCLES = 15
CANDIDATE_LENGTH = 3 * N_SEMICIRCLES
OVERLAP_TOL = 1e-6
"""Two semicircles overlap when their intersection area exceeds this (square units)."""

CHALLENGE_ARC_POINTS = 4096
"""Points per arc of the public scorer's polygons (its POLYGON_ARC_POINTS)."""
_STEP = math.pi / (CHALLENGE_ARC_POINTS - 1)
CHORD_DEFICIT = (_STEP - math.sin(_STEP)) / (2.0 * _STEP)
"""Area (square units) between a unit arc and its chords per radian of arc: ≈ 4.9e-8."""
_TWO_PI = 2.0 * math.pi
PAIR_I, PAIR_J = (a.astype(np.intp) for a in np.triu_indices(N_SEMICIRCLES, k=1))
"""The 105 pairs (i < j) of one candidate, in row-major order."""


def round_candidate(candidate: Sequence[float] | np.ndarray) -> np.ndarray:
    """Check a 45-number candidate and round it like Python's ``round(v, 6)``.

    Raises ValueError naming the problem: wrong length, a non-number, NaN or infinity.
    """
    if isinstance(candidate, np.ndarray):
        values = candidate.tolist()
        if candidate.ndim != 1:
            raise ValueError(f"candidate must be a flat list of {CANDIDATE_LENGTH} numbers")
    else:
        values = list(candidate)
    if len(values) != CANDIDATE_LENGTH:
        raise ValueError(
            f"candidate must have {CANDIDATE_LENGTH} numbers "
            f"(x, y, theta for {N_SEMICIRCLES} semicircles), got {len(values)}"
        )
    out = np.empty(CANDIDATE_LENGTH)
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise ValueError(f"candidate[{k}] is not a number: {v!r}")
        fv = float(v)
        if not math.isfinite(fv):
            raise ValueError(f"candidate[{k}] is not finite: {fv!r}")
        out[k] = round(fv, 6)
    return out


def round_candidates(candidates: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Check an (n, 45) batch and round it like ``round(v, 6)``; ValueError names the row."""
    try:
        arr = np.asarray(candidates, dtype=float)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.size == 0 and len(candidates) == 0:
        return np.empty((0, CANDIDATE_LENGTH))
    if arr.ndim != 2 or arr.shape[1] != CANDIDATE_LENGTH:
        for n, row in enumerate(candidates):
            try:
                round_candidate(row)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"candidates[{n}]: {exc}") from None
        raise ValueError(f"candidates must be an (n, {CANDIDATE_LENGTH}) array")
    arr = arr.astype(float, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        n, k = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"candidates[{n}][{k}] is not finite: {arr[n, k]!r}")
    # np.round is not Python's round (it scales by 10**6 and can land on the other side of a
    # decimal tie); Python's round is exact, so only values it could disagree on pay for it.
    fast = np.round(arr, 6)
    suspect = np.abs(arr * 1e6 - np.floor(arr * 1e6) - 0.5) < 1e-6
    out = fast
    for n, k in np.argwhere(suspect):
        out[n, k] = round(float(arr[n, k]), 6)
    return out


def _arc_constraint(vx: np.ndarray, vy: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles t with e(t)·v ≥ k on the unit circle, as (centre angle, half-width).

    Half-width π means the whole circle, a negative one means none.
    """
    norm = np.hypot(vx, vy)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            norm > 0.0, k / np.where(norm > 0.0, norm, 1.0), np.where(k <= 0, -2.0, 2.0)
        )
    half = np.where(ratio > 1.0, -1.0, np.arccos(np.clip(ratio, -1.0, 1.0)))
    return np.arctan2(vy, vx), half


def _arc_pieces(
    theta: np.ndarray,
    cons: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The semicircle's arc [θ − π/2, θ + π/2] cut by two arc constraints: up to 4 pieces.

    Each piece is (start, end) in absolute angle; an empty piece has end ≤ start.
    """
    base = theta - 0.5 * math.pi
    shifted = []
    for phi, half in cons:
        centre = np.mod(phi - base + math.pi, _TWO_PI) - math.pi  # in [-π, π)
        shifted.append((centre - half, centre + half))
    (a1, b1), (a2, b2) = shifted
    pieces = []
    for k1 in (0.0, _TWO_PI):
        for k2 in (0.0, _TWO_PI):
            lo = np.maximum(0.0, np.maximum(a1 + k1, a2 + k2))
            hi = np.minimum(math.pi, np.minimum(b1 + k1, b2 + k2))
            hi = np.maximum(hi, lo)
            pieces.append((base + lo, base + hi))
    return pieces


def _area_relative(
    cx: np.ndarray, cy: np.ndarray, ta: np.ndarray, tb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Intersection area of half-disk A at the origin and half-disk B at (cx, cy), and the
    total angle (radians) of the arcs bounding it."""
    uax, uay = np.cos(ta), np.sin(ta)
    ubx, uby = np.cos(tb), np.sin(tb)
    d2 = cx * cx + cy * cy
    coincident = d2 == 0.0
    area = np.zeros_like(cx)
    arcs = np.zeros_like(cx)

    # Circle A (centre at the origin): inside disk B, inside B's half-plane.
    cons_a = (
        _arc_constraint(cx, cy, 0.5 * d2),
        _arc_constraint(ubx, uby, cx * ubx + cy * uby),
    )
    for t0, t1 in _arc_pieces(ta, cons_a):
        area += 0.5 * (t1 - t0)
        arcs += t1 - t0

    # Circle B: inside disk A (never when the disks coincide: circle A already counted it),
    # inside A's half-plane.
    phi_b, half_b = _arc_constraint(-cx, -cy, 0.5 * d2)
    half_b = np.where(coincident, -1.0, half_b)
    cons_b = ((phi_b, half_b), _arc_constraint(uax, uay, -(cx * uax + cy * uay)))
    for t0, t1 in _arc_pieces(tb, cons_b):
        arcs += t1 - t0
        area += 0.5 * ((t1 - t0) + cx * (np.sin(t1) - np.sin(t0)) - cy * (np.cos(t1) - np.cos(t0)))

    # B's flat edge c + s·tB, s ∈ [-1, 1], oriented so B's side is on its left.
    tbx, tby = uby, -ubx
    lo = np.full_like(cx, -1.0)
    hi = np.full_like(cx, 1.0)
    ct = cx * tbx + cy * tby
    disc = ct * ct - d2 + 1.0
    root = np.sqrt(np.maximum(disc, 0.0))
    lo = np.maximum(lo, -ct - root)
    hi = np.where(disc < 0.0, lo, np.minimum(hi, -ct + root))
    g = tbx * uax + tby * uay
    h = -(cx * uax + cy * uay)
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = h / g
    lo = np.where(g > 0.0, np.maximum(lo, cut), lo)
    hi = np.where(g < 0.0, np.minimum(hi, cut), hi)
    hi = np.where((g == 0.0) & (h > 0.0), lo, hi)
    area += 0.5 * np.maximum(hi - lo, 0.0) * (cx * tby - cy * tbx)
    return np.maximum(area, 0.0), arcs


def _behind(
    cx: np.ndarray, cy: np.ndarray, ux: np.ndarray, uy: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> np.ndarray:
    """True where half-disk B (centre c, direction (bx, by)) lies behind the line through the
    origin with normal u: its support in direction u is ≤ 0."""
    facing = ux * bx + uy * by
    support = np.where(facing >= 0.0, 1.0, np.abs(ux * by - uy * bx))
    return cx * ux + cy * uy + support <= 0.0


def _areas_1d(
    xa: np.ndarray, ya: np.ndarray, ta: np.ndarray, xb: np.ndarray, yb: np.ndarray, tb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Areas and bounding arc angles of flat arrays of pairs whose disks are < 2 apart."""
    out = np.zeros(xa.size)
    arcs = np.zeros(xa.size)
    cx, cy = xb - xa, yb - ya
    uax, uay, ubx, uby = np.cos(ta), np.sin(ta), np.cos(tb), np.sin(tb)
    keep = ~_behind(cx, cy, uax, uay, ubx, uby) & ~_behind(-cx, -cy, ubx, uby, uax, uay)
    idx = np.flatnonzero(keep)
    if idx.size:
        x1, y1, t1, x2, y2, t2 = xa[idx], ya[idx], ta[idx], xb[idx], yb[idx], tb[idx]
        swap = (x1 > x2) | ((x1 == x2) & ((y1 > y2) | ((y1 == y2) & (t1 > t2))))
        cx, cy = np.where(swap, x1 - x2, x2 - x1), np.where(swap, y1 - y2, y2 - y1)
        out[idx], arcs[idx] = _area_relative(cx, cy, np.where(swap, t2, t1), np.where(swap, t1, t2))
    return out, arcs


def pair_areas(
    xa: ArrayLike, ya: ArrayLike, ta: ArrayLike, xb: ArrayLike, yb: ArrayLike, tb: ArrayLike
) -> np.ndarray:
    """Exact intersection areas of half-disks A[k] and B[k] (arrays of one shape).

    Symmetric bit for bit: the pair is ordered canonically before computing.
    """
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (xa, ya, ta, xb, yb, tb)))
    shape = arrays[0].shape
    xa, ya, ta, xb, yb, tb = (np.ravel(v) for v in arrays)
    out = np.zeros(xa.size)
    near = np.flatnonzero((xb - xa) ** 2 + (yb - ya) ** 2 < 4.0)
    out[near] = _areas_1d(xa[near], ya[near], ta[near], xb[near], yb[near], tb[near])[0]
    return out.reshape(shape)


def pairwise_overlaps(rounded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact areas (n, 105) of every pair (PAIR_I, PAIR_J) of rounded (n, 45) candidates, and
    which pairs overlap in the challenge's sense (n, 105) bool.

    Only pairs whose disks are less than 2 apart are gathered and computed. The verdict compares
    ``area − CHORD_DEFICIT × (angle of the bounding arcs)`` with OVERLAP_TOL: the public scorer
    measures areas on polygons with 4096 points per arc, which lose a closed-form sliver
    between each arc and its chords; without it an exact area just above 1e-6 (by up to ~0.2 %)
    would be called an overlap that the challenge accepts.
    """
    arr = np.atleast_2d(rounded)
    x, y, t = arr[:, 0::3], arr[:, 1::3], arr[:, 2::3]
    dx, dy = x[:, PAIR_J] - x[:, PAIR_I], y[:, PAIR_J] - y[:, PAIR_I]
    rows, cols = np.nonzero(dx * dx + dy * dy < 4.0)
    i, j = PAIR_I[cols], PAIR_J[cols]
    area, arcs = _areas_1d(x[rows, i], y[rows, i], t[rows, i], x[rows, j], y[rows, j], t[rows, j])
    areas = np.zeros(dx.shape)
    areas[rows, cols] = area
    overlapping = np.zeros(dx.shape, dtype=bool)
    overlapping[rows, cols] = area - CHORD_DEFICIT * arcs > OVERLAP_TOL
    return areas, overlapping


def pairwise_areas(rounded: np.ndarray) -> np.ndarray:
    """(n, 105) exact intersection areas of every pair of rounded (n, 45) candidates."""
    return pairwise_overlaps(rounded)[0]


def semicircle_area_overlap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> float:
    """Exact intersection area of two semicircles given as (x, y, θ), unrounded."""
    return float(pair_areas(a[0], a[1], a[2], b[0], b[1], b[2]))
