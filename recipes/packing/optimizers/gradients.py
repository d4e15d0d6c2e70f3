"""Exact derivatives of the pair overlap areas and of the reach from the origin, for the
optimisers' objective (docs/recipes.md, "packing").

Moving a shape changes the area of its intersection with another by the normal speed of its
boundary integrated over the part of that boundary inside the other shape. For half-disk B
translated by v: the arcs of B inside A contribute ∫ (cos t, sin t)·v dt and B's flat edge
inside A contributes −(its length) u_B·v. Turning B about its centre moves only its flat edge
(at speed −s at distance s along it): dArea/dθ_B = −(hi² − lo²)/2 for the part [lo, hi] of the
edge inside A. Translating both shapes changes nothing, so dArea/dc_A = −dArea/dc_B; turning A
is B's rule with the roles swapped. The pieces are the same arcs and segments the kernel
integrates (:mod:`..geometry`).
"""

from __future__ import annotations

import numpy as np

from ..geometry import PAIR_I, PAIR_J, _arc_constraint, _arc_pieces, _area_relative, _behind


def _edge_inside(
    cx: np.ndarray,
    cy: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    ox: np.ndarray,
    oy: np.ndarray,
    ux: np.ndarray,
    uy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The part [lo, hi] (empty: hi ≤ lo) of the flat edge c + s·t, s ∈ [−1, 1], inside the
    half-disk centred at o facing u."""
    dx, dy = cx - ox, cy - oy
    ct = dx * tx + dy * ty
    disc = ct * ct - (dx * dx + dy * dy) + 1.0
    root = np.sqrt(np.maximum(disc, 0.0))
    lo = np.maximum(-1.0, -ct - root)
    hi = np.where(disc < 0.0, lo, np.minimum(1.0, -ct + root))
    g = tx * ux + ty * uy
    h = -(dx * ux + dy * uy)
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = h / g
    lo = np.where(g > 0.0, np.maximum(lo, cut), lo)
    hi = np.where(g < 0.0, np.minimum(hi, cut), hi)
    hi = np.where((g == 0.0) & (h > 0.0), lo, hi)
    return lo, np.maximum(hi, lo)


def pair_area_gradients(
    x: np.ndarray, y: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Areas (105,) of every pair (PAIR_I, PAIR_J) of one candidate and their derivatives:
    (105, 3) with respect to (x_j, y_j, θ_j) of the second shape and (105,) with respect to
    θ_i of the first (its (x_i, y_i) derivative is minus the second's)."""
    areas = np.zeros(PAIR_I.size)
    d_b = np.zeros((PAIR_I.size, 3))
    d_ta = np.zeros(PAIR_I.size)
    cx, cy = x[PAIR_J] - x[PAIR_I], y[PAIR_J] - y[PAIR_I]
    ta, tb = t[PAIR_I], t[PAIR_J]
    uax, uay, ubx, uby = np.cos(ta), np.sin(ta), np.cos(tb), np.sin(tb)
    near = cx * cx + cy * cy < 4.0
    near &= ~_behind(cx, cy, uax, uay, ubx, uby) & ~_behind(-cx, -cy, ubx, uby, uax, uay)
    k = np.flatnonzero(near)
    if k.size == 0:
        return areas, d_b, d_ta
    cx, cy, ta, tb = cx[k], cy[k], ta[k], tb[k]
    uax, uay, ubx, uby = uax[k], uay[k], ubx[k], uby[k]
    areas[k] = _area_relative(cx, cy, ta, tb)[0]
    d2 = cx * cx + cy * cy
    # B's arcs inside A (A's disk and A's half-plane), as the kernel cuts them.
    phi_b, half_b = _arc_constraint(-cx, -cy, 0.5 * d2)
    half_b = np.where(d2 == 0.0, -1.0, half_b)
    cons_b = ((phi_b, half_b), _arc_constraint(uax, uay, -(cx * uax + cy * uay)))
    gx, gy = np.zeros(k.size), np.zeros(k.size)
    for t0, t1 in _arc_pieces(tb, cons_b):
        gx += np.sin(t1) - np.sin(t0)
        gy += np.cos(t0) - np.cos(t1)
    # B's flat edge (direction (u_By, −u_Bx)) inside A at the origin.
    zero = np.zeros(k.size)
    lo, hi = _edge_inside(cx, cy, uby, -ubx, zero, zero, uax, uay)
    gx -= ubx * (hi - lo)
    gy -= uby * (hi - lo)
    d_b[k, 0], d_b[k, 1] = gx, gy
    d_b[k, 2] = -0.5 * (hi * hi - lo * lo)
    # A's flat edge inside B.
    lo_a, hi_a = _edge_inside(zero, zero, uay, -uax, cx, cy, ubx, uby)
    d_ta[k] = -0.5 * (hi_a * hi_a - lo_a * lo_a)
    return areas, d_b, d_ta


def reach_gradients(
    x: np.ndarray, y: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How far each semicircle reaches from the origin, and its derivatives in x, y, θ."""
    ux, uy = np.cos(t), np.sin(t)
    facing = x * ux + y * uy
    behind = facing >= 0.0
    along = x * uy - y * ux
    sign = np.where(along >= 0.0, 1.0, -1.0)
    norm = np.hypot(x, y)
    safe = np.where(norm > 0.0, norm, 1.0)
    arc = norm + 1.0
    end = np.sqrt(norm * norm + 1.0 + 2.0 * np.abs(along))
    reach = np.where(behind, arc, end)
    dx = np.where(behind, x / safe, (x + sign * uy) / end)
    dy = np.where(behind, y / safe, (y - sign * ux) / end)
    dt = np.where(behind, 0.0, sign * facing / end)
    return reach, dx, dy, dt
