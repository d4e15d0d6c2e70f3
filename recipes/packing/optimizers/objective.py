"""The smooth objective the packing optimisers descend, its gradient, and the feasibility repair
(docs/recipes.md, "packing").

The container is a circle of radius R centred at the origin; the variables are the 45 numbers of
a candidate and R. The objective is ``R + μ·(Σ pair overlap areas + Σ max(0, reach_i − R)²)``
where ``reach_i`` is how far semicircle i reaches from the origin: the exact areas of the kernel,
no sampling, each through ``a²/(a + 1e-3)`` so that the objective stays smooth where two flat
edges meet on one line. Its gradient is exact (:mod:`.gradients`); a central-difference version
is kept to check it.
A local minimisation is L-BFGS-B over an increasing schedule of μ; :func:`repair` then makes
the result valid under the exact scorer after 6-decimal rounding, scaling positions outward
from the enclosing circle's centre just enough.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ..geometry import PAIR_I, PAIR_J, pair_areas, round_candidates
from ..mec import farthest
from ..scoring import score_batch
from .gradients import pair_area_gradients, reach_gradients

N = 15
_STEP = 1e-7
#: Penalty weights of one local minimisation, applied one after another.
MU_SCHEDULE = (1.0, 10.0, 1_000.0, 100_000.0)

# For each of the 45 numbers (semicircle i = k // 3): the 14 other semicircles.
_OWNER = np.repeat(np.arange(N), 3)  # (45,) semicircle of each number
_OTHERS = np.array([[j for j in range(N) if j != i] for i in range(N)], dtype=np.intp)
_K_OTHERS = _OTHERS[_OWNER]  # (45, 14)


@dataclass
class Counter:
    """Candidates scored: an objective-and-gradient evaluation counts as one, a repair as the
    scale factors it tries."""

    evaluations: int = 0


#: Scale (square units) below which an overlap area is penalised quadratically, not linearly.
SMOOTH_AREA = 1e-3


def _soft(area: np.ndarray) -> np.ndarray:
    """``a²/(a + ε)``: the area where it is large, quadratic near 0, so the objective stays
    smooth where an area has a kink at 0 (two flat edges on one line)."""
    return area * area / (area + SMOOTH_AREA)


def _areas(z: np.ndarray) -> np.ndarray:
    x, y, t = z[0:45:3], z[1:45:3], z[2:45:3]
    return pair_areas(x[PAIR_I], y[PAIR_I], t[PAIR_I], x[PAIR_J], y[PAIR_J], t[PAIR_J])


def _reach(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    zero = np.zeros_like(x)
    return farthest(x, y, np.cos(t), np.sin(t), zero, zero)[0]


def _soft_slope(area: np.ndarray) -> np.ndarray:
    """d/da of :func:`_soft`."""
    return area * (area + 2.0 * SMOOTH_AREA) / (area + SMOOTH_AREA) ** 2


def value_and_grad(
    z: np.ndarray, mu: float, counter: Counter | None = None
) -> tuple[float, np.ndarray]:
    """Objective and its exact gradient at ``z`` = (45 numbers, R)
    (:mod:`.gradients`)."""
    cand, radius = z[:45], z[45]
    x, y, t = cand[0::3], cand[1::3], cand[2::3]
    areas, d_b, d_ta = pair_area_gradients(x, y, t)
    reach, rdx, rdy, rdt = reach_gradients(x, y, t)
    excess = np.maximum(reach - radius, 0.0)
    value = radius + mu * (_soft(areas).sum() + (excess * excess).sum())
    w = mu * _soft_slope(areas)
    wx, wy = w * d_b[:, 0], w * d_b[:, 1]
    c = 2.0 * mu * excess
    grad = np.empty(46)
    grad[0:45:3] = _sum_to(PAIR_J, wx) - _sum_to(PAIR_I, wx) + c * rdx
    grad[1:45:3] = _sum_to(PAIR_J, wy) - _sum_to(PAIR_I, wy) + c * rdy
    grad[2:45:3] = _sum_to(PAIR_J, w * d_b[:, 2]) + _sum_to(PAIR_I, w * d_ta) + c * rdt
    grad[45] = 1.0 - c.sum()
    if counter is not None:
        counter.evaluations += 1
    return float(value), grad


def _sum_to(index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.bincount(index, weights=weights, minlength=N)


def value_and_grad_numeric(
    z: np.ndarray, mu: float, counter: Counter | None = None
) -> tuple[float, np.ndarray]:
    """Objective at ``z`` = (45 numbers, R) and its gradient by central differences (a check
    of :func:`value_and_grad`)."""
    cand, radius = z[:45], z[45]
    x, y, t = cand[0::3], cand[1::3], cand[2::3]
    areas = _areas(cand)
    reach = _reach(x, y, t)
    excess = np.maximum(reach - radius, 0.0)
    value = radius + mu * (_soft(areas).sum() + (excess * excess).sum())

    # Central differences: 45 numbers × ±h, each recomputing 14 pairs and one reach.
    grad = np.empty(46)
    moved = np.empty((2, 45, 3))
    base = np.stack([x[_OWNER], y[_OWNER], t[_OWNER]], axis=1)  # (45, 3)
    for s, sign in enumerate((1.0, -1.0)):
        moved[s] = base
        moved[s, np.arange(45), np.arange(45) % 3] += sign * _STEP
    mx, my, mt = moved[..., 0], moved[..., 1], moved[..., 2]  # (2, 45)
    ox, oy, ot = x[_K_OTHERS], y[_K_OTHERS], t[_K_OTHERS]  # (45, 14)
    new_areas = pair_areas(mx[..., None], my[..., None], mt[..., None], ox, oy, ot)  # (2, 45, 14)
    new_reach = _reach(mx, my, mt)  # (2, 45)
    new_excess = np.maximum(new_reach - radius, 0.0)
    d_area = (_soft(new_areas[0]) - _soft(new_areas[1])).sum(axis=1)
    d_cont = new_excess[0] ** 2 - new_excess[1] ** 2
    grad[:45] = mu * (d_area + d_cont) / (2.0 * _STEP)
    grad[45] = 1.0 - 2.0 * mu * excess.sum()
    if counter is not None:
        counter.evaluations += 91
    return float(value), grad


def overlap_energy(cand: np.ndarray) -> float:
    """Summed exact overlap area of one candidate."""
    return float(_areas(cand).sum())


def reach_radius(cand: np.ndarray) -> float:
    """How far the candidate reaches from the origin."""
    return float(_reach(cand[0::3], cand[1::3], cand[2::3]).max())


def local_minimize(
    cand: np.ndarray,
    *,
    iters_per_stage: int = 300,
    schedule: tuple[float, ...] = MU_SCHEDULE,
    counter: Counter | None = None,
) -> np.ndarray:
    """Penalty-method descent from ``cand``: recentred at the origin, R started at its reach,
    L-BFGS-B at each μ of ``schedule``. Answers the 45 numbers (not yet repaired)."""
    cand = recentre(np.asarray(cand, dtype=float))
    z = np.append(cand, reach_radius(cand))
    for mu in schedule:
        res = minimize(
            value_and_grad,
            z,
            args=(mu, counter),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": iters_per_stage, "maxcor": 20, "ftol": 1e-15, "gtol": 1e-10},
        )
        z = res.x
    out = z[:45].copy()
    out[2::3] = np.mod(out[2::3] + np.pi, 2.0 * np.pi) - np.pi
    return out


def recentre(cand: np.ndarray) -> np.ndarray:
    """The candidate translated so that its enclosing circle is centred at the origin."""
    scored = score_batch(round_candidates(cand[None, :]), 0.0)
    out = cand.copy()
    out[0::3] -= scored["mec_x"][0]
    out[1::3] -= scored["mec_y"][0]
    return out


#: Outward scale factors :func:`repair` tries (1 + these), smallest first.
_SCALES = np.concatenate([[0.0], np.geomspace(1e-8, 0.2, 79)])


def repair(cand: np.ndarray, counter: Counter | None = None) -> tuple[np.ndarray, bool, float]:
    """The candidate scaled outward about its enclosing circle's centre by the smallest tried
    factor that makes it valid after rounding. Answers (rounded candidate, valid, radius);
    when no factor works, the candidate rounded as it was, invalid."""
    cand = recentre(np.asarray(cand, dtype=float))
    batch = np.repeat(cand[None, :], _SCALES.size, axis=0)
    batch[:, 0::3] *= 1.0 + _SCALES[:, None]
    batch[:, 1::3] *= 1.0 + _SCALES[:, None]
    rounded = round_candidates(batch)
    scored = score_batch(rounded, 0.0)
    if counter is not None:
        counter.evaluations += _SCALES.size
    ok = np.flatnonzero(scored["valid"])
    row = int(ok[0]) if ok.size else 0
    return rounded[row], bool(ok.size), float(scored["radius"][row])
