"""Exact minimum enclosing circle (MEC) of 15 semicircles, vectorised over candidates.

For a centre q the farthest point of a semicircle is the arc point straight away from q when q
lies behind its flat edge ((c − q)·u ≥ 0, distance |c − q| + 1), else the farther flat-edge
endpoint. So the MEC is the minimax over 45 "atoms": 30 endpoints (points) and 15 arcs (unit
disks, counted only while q is behind their flat edge), and it is fixed by at most three of
them. The batch solver is the pivot method of LP-type problems: keep a basis of ≤ 3 atoms and
its circle; add the atom of the semicircle reaching farthest outside; the new circle is the
smallest one through the new atom and a subset of the old basis that encloses all of them
(circles through points and tangent to unit disks in closed form); where none does (an arc of
the old basis is now touched at a flat-edge endpoint) the four shapes are solved again with each
arc also offered as its two endpoints. The radius grows at every step and the loop ends when
every semicircle is inside within 1e-12. A candidate whose final
basis fails the optimality test (the centre inside the hull of its touching directions) or that
does not settle goes to :func:`mec_exhaustive`, which tries every basis of ≤ 3 atoms.
"""

from __future__ import annotations

import itertools

import numpy as np

TOL = 1e-12
"""Containment slack of the solver (length units)."""
_MAX_STEPS = 64


class _Table:
    """Every subset of ≤ 3 of K atoms (each triple twice: two roots), optionally only those
    containing atom 0, with padded member indices for gathering."""

    def __init__(self, k: int, with_first: bool) -> None:
        def keep(c: tuple[int, ...]) -> bool:
            return not with_first or 0 in c

        self.sizes = [
            np.array([c for c in itertools.combinations(range(k), size) if keep(c)], dtype=np.intp)
            for size in (1, 2, 3)
        ]
        members = [*self.sizes[0].tolist(), *self.sizes[1].tolist()]
        members += self.sizes[2].tolist() * 2
        self.members = np.array([[*m, *[-1] * (3 - len(m))] for m in members], dtype=np.intp)
        self.is_member = np.zeros((len(members), k), dtype=bool)
        for n, m in enumerate(members):
            self.is_member[n, m] = True


_STEP = _Table(4, with_first=True)  # the new atom and a subset of the old basis
_WIDE = _Table(12, with_first=False)  # 4 objects, arcs also by their two endpoints


def farthest(
    cx: np.ndarray, cy: np.ndarray, ux: np.ndarray, uy: np.ndarray, qx: np.ndarray, qy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distance from q to the farthest point of each semicircle, and that point as an atom.

    Returns (distance, atom x, atom y, atom radius): radius 1 means the arc (the atom is the
    disk centre), radius 0 a flat-edge endpoint.
    """
    dx, dy = cx - qx, cy - qy
    behind = dx * ux + dy * uy >= 0.0
    along = dx * uy - dy * ux  # (c − q)·t with t = (uy, −ux)
    d2 = dx * dx + dy * dy
    dist = np.where(behind, np.sqrt(d2) + 1.0, np.sqrt(d2 + 1.0 + 2.0 * np.abs(along)))
    sign = np.where(along >= 0.0, 1.0, -1.0)
    ax = np.where(behind, cx, cx + sign * uy)
    ay = np.where(behind, cy, cy - sign * ux)
    return dist, ax, ay, np.where(behind, 1.0, 0.0)


def _circle2(
    ax: np.ndarray, ay: np.ndarray, ar: np.ndarray, bx: np.ndarray, by: np.ndarray, br: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smallest circle through/tangent to two atoms, diametrically opposite."""
    dx, dy = bx - ax, by - ay
    d = np.hypot(dx, dy)
    r = 0.5 * (d + ar + br)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(d > 0.0, (r - ar) / np.where(d > 0.0, d, 1.0), 0.0)
    return ax + f * dx, ay + f * dy, np.where(d > 0.0, r, np.maximum(ar, br))


def _circle3(
    a: tuple[np.ndarray, np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray, np.ndarray],
    c: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The (up to two) circles with |q − atom| = R − r for three atoms; NaN where none."""
    ax, ay, ar = a
    bx, by = b[0] - ax, b[1] - ay
    cx, cy = c[0] - ax, c[1] - ay
    br, cr = b[2], c[2]
    det = bx * cy - by * cx
    h0b = 0.5 * (bx * bx + by * by - br * br + ar * ar)
    h0c = 0.5 * (cx * cx + cy * cy - cr * cr + ar * ar)
    h1b, h1c = br - ar, cr - ar
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        q0x, q0y = (h0b * cy - by * h0c) * inv, (bx * h0c - h0b * cx) * inv
        wx, wy = (h1b * cy - by * h1c) * inv, (bx * h1c - h1b * cx) * inv
        qa = wx * wx + wy * wy - 1.0
        qb = 2.0 * (q0x * wx + q0y * wy + ar)
        qc = q0x * q0x + q0y * q0y - ar * ar
        disc = qb * qb - 4.0 * qa * qc
        sq = np.sqrt(np.where(disc >= 0.0, disc, np.nan))
        # Stable roots of qa R² + qb R + qc = 0.
        big = -0.5 * (qb + np.where(qb >= 0.0, sq, -sq))
        roots = (big / qa, qc / big)
        linear = np.abs(qa) < 1e-14
        out = []
        for root in roots:
            r = np.where(linear, -qc / qb, root)
            out.append((ax + q0x + r * wx, ay + q0y + r * wy, r))
    return out


def _candidates(
    table: _Table, sx: np.ndarray, sy: np.ndarray, sr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circles of every subset of the table for atom sets (m, K): three (m, L) arrays."""
    one, two, three = table.sizes
    cols: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (sx[:, one[:, 0]], sy[:, one[:, 0]], sr[:, one[:, 0]])
    ]
    a, b = two[:, 0], two[:, 1]
    cols.append(_circle2(sx[:, a], sy[:, a], sr[:, a], sx[:, b], sy[:, b], sr[:, b]))
    a, b, c = three[:, 0], three[:, 1], three[:, 2]
    cols.extend(
        _circle3(
            (sx[:, a], sy[:, a], sr[:, a]),
            (sx[:, b], sy[:, b], sr[:, b]),
            (sx[:, c], sy[:, c], sr[:, c]),
        )
    )
    return (
        np.concatenate([c[0] for c in cols], axis=1),
        np.concatenate([c[1] for c in cols], axis=1),
        np.concatenate([c[2] for c in cols], axis=1),
    )


def _solve(
    table: _Table,
    sx: np.ndarray,
    sy: np.ndarray,
    sr: np.ndarray,
    sux: np.ndarray,
    suy: np.ndarray,
    present: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Smallest table circle enclosing the first four atoms' shapes, with its arcs touched.

    Returns (subset index, x, y, r, found) per row.
    """
    kx, ky, kr = _candidates(table, sx, sy, sr)  # (m, L)
    reach, behind = _atom_reach(
        sx[:, None, :], sy[:, None, :], sr[:, None, :], sux[:, None, :], suy[:, None, :],
        kx[:, :, None], ky[:, :, None],
    )  # fmt: skip
    is_member = table.is_member[None, :, :]
    with np.errstate(invalid="ignore"):
        ok = ((reach[:, :, :4] <= kr[:, :, None] + TOL) | ~present[:, None, :4]).all(axis=2)
        ok &= (behind | ~is_member).all(axis=2)
        ok &= (present[:, None, :] | ~is_member).all(axis=2)
        ok &= np.isfinite(kr) & (kr >= (sr[:, None, :] * is_member).max(axis=2) - TOL)
    score = np.where(ok, kr, np.inf)
    best = np.argmin(score, axis=1)
    rows = np.arange(best.size)
    return best, kx[rows, best], ky[rows, best], kr[rows, best], np.isfinite(score[rows, best])


def _atom_reach(
    ax: np.ndarray,
    ay: np.ndarray,
    ar: np.ndarray,
    aux: np.ndarray,
    auy: np.ndarray,
    qx: np.ndarray,
    qy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest reach of each atom from q (a point's distance, an arc's semicircle farthest
    distance) and whether q is behind an arc atom's flat edge (always True for points)."""
    dist, _, _, _ = farthest(ax, ay, aux, auy, qx, qy)
    point = np.hypot(ax - qx, ay - qy)
    is_arc = ar > 0.5
    behind = ~is_arc | ((ax - qx) * aux + (ay - qy) * auy >= -TOL)
    return np.where(is_arc, dist, point), behind


def _widen(
    sx: np.ndarray,
    sy: np.ndarray,
    sr: np.ndarray,
    sux: np.ndarray,
    suy: np.ndarray,
    present: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(m, 4) atoms → (m, 12): the atoms, then each arc's two flat-edge endpoints as points."""
    arc = present & (sr > 0.5)
    zero = np.zeros_like(sr)
    return (
        np.concatenate([sx, sx + suy, sx - suy], axis=1),
        np.concatenate([sy, sy - sux, sy + sux], axis=1),
        np.concatenate([sr, zero, zero], axis=1),
        np.tile(sux, 3),
        np.tile(suy, 3),
        np.concatenate([present, arc, arc], axis=1),
    )


def _optimal(
    bx: np.ndarray, by: np.ndarray, nb: np.ndarray, qx: np.ndarray, qy: np.ndarray
) -> np.ndarray:
    """True where the centre lies in the convex hull of the directions to its basis atoms."""
    gx, gy = bx - qx[:, None], by - qy[:, None]
    norm = np.hypot(gx, gy)
    norm = np.where(norm > 0.0, norm, 1.0)
    gx, gy = gx / norm, gy / norm
    two = np.abs(gx[:, 0] * gy[:, 1] - gy[:, 0] * gx[:, 1]) < 1e-9
    two &= gx[:, 0] * gx[:, 1] + gy[:, 0] * gy[:, 1] < 0.0
    c1 = gx[:, 0] * gy[:, 1] - gy[:, 0] * gx[:, 1]
    c2 = gx[:, 1] * gy[:, 2] - gy[:, 1] * gx[:, 2]
    c3 = gx[:, 2] * gy[:, 0] - gy[:, 2] * gx[:, 0]
    eps = 1e-12
    three = ((c1 >= -eps) & (c2 >= -eps) & (c3 >= -eps)) | ((c1 <= eps) & (c2 <= eps) & (c3 <= eps))
    return np.where(nb == 2, two, np.where(nb == 3, three, False))


def mec_batch(
    x: np.ndarray, y: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact MECs of (n, 15) semicircle arrays: (centre x, centre y, radius), each (n,)."""
    x, y, theta = (np.atleast_2d(np.asarray(v, dtype=float)) for v in (x, y, theta))
    n = x.shape[0]
    ox, oy = x.mean(axis=1), y.mean(axis=1)
    cx, cy = x - ox[:, None], y - oy[:, None]  # work near the origin: no precision lost
    ux, uy = np.cos(theta), np.sin(theta)
    rows = np.arange(n)

    # Basis: up to 3 atoms (x, y, radius, u of their semicircle).
    bx, by, br = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 3))
    bux, buy = np.zeros((n, 3)), np.zeros((n, 3))
    nb = np.ones(n, dtype=np.intp)
    zero = np.zeros(n)
    dist, fx, fy, fr = farthest(cx, cy, ux, uy, zero[:, None], zero[:, None])
    first = np.argmax(dist, axis=1)
    bx[:, 0], by[:, 0], br[:, 0] = fx[rows, first], fy[rows, first], fr[rows, first]
    bux[:, 0], buy[:, 0] = ux[rows, first], uy[rows, first]
    qx, qy, qr = bx[:, 0].copy(), by[:, 0].copy(), br[:, 0].copy()

    active = np.ones(n, dtype=bool)
    failed = np.zeros(n, dtype=bool)
    for _ in range(_MAX_STEPS):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        dist, fx, fy, fr = farthest(
            cx[idx], cy[idx], ux[idx], uy[idx], qx[idx, None], qy[idx, None]
        )
        worst = np.argmax(dist, axis=1)
        sub = np.arange(idx.size)
        done = dist[sub, worst] <= qr[idx] + TOL
        active[idx[done]] = False
        keep = ~done
        idx, worst, sub = idx[keep], worst[keep], sub[keep]
        if idx.size == 0:
            break
        # Atom set S = [new, b0, b1, b2] (m, 4).
        sx = np.column_stack([fx[sub, worst], bx[idx]])
        sy = np.column_stack([fy[sub, worst], by[idx]])
        sr = np.column_stack([fr[sub, worst], br[idx]])
        sux = np.column_stack([ux[idx, worst], bux[idx]])
        suy = np.column_stack([uy[idx, worst], buy[idx]])
        present = np.column_stack([np.ones(idx.size, dtype=bool), np.arange(3) < nb[idx, None]])
        wide = _widen(sx, sy, sr, sux, suy, present)
        pick, nx, ny, nr, found = _solve(_STEP, sx, sy, sr, sux, suy, present)
        members = _STEP.members[pick]
        stuck = np.flatnonzero(~found)
        if stuck.size:
            # An arc of the old basis may now be touched at a flat-edge endpoint instead: solve
            # those four shapes exactly, arcs also offered as their two endpoints.
            wpick, wx, wy, wr, wfound = _solve(_WIDE, *(w[stuck] for w in wide))
            nx[stuck], ny[stuck], nr[stuck], found[stuck] = wx, wy, wr, wfound
            members[stuck] = _WIDE.members[wpick]
        failed[idx[~found]] = True
        active[idx[~found]] = False
        go = np.flatnonzero(found)
        idx, members = idx[go], members[go]
        safe = np.maximum(members, 0)
        for arr_b, arr_s in zip((bx, by, br, bux, buy), wide, strict=False):
            arr_b[idx] = arr_s[go][np.arange(go.size)[:, None], safe]
        nb[idx] = (members >= 0).sum(axis=1)
        qx[idx], qy[idx], qr[idx] = nx[go], ny[go], nr[go]
    failed |= active
    # Where the basis has padding slots, repeat its first atom so the hull test sees real ones.
    pad = np.arange(3)[None, :] >= nb[:, None]
    hx, hy = np.where(pad, bx[:, :1], bx), np.where(pad, by[:, :1], by)
    failed |= ~_optimal(hx, hy, nb, qx, qy)
    for row in np.flatnonzero(failed):
        qx[row], qy[row], qr[row] = mec_exhaustive(cx[row], cy[row], theta[row])
    return qx + ox, qy + oy, qr


def mec_exhaustive(x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> tuple[float, float, float]:
    """MEC of one candidate by trying every basis of ≤ 3 atoms (slow: milliseconds).

    The smallest circle that encloses every semicircle and whose arc atoms are really touched
    (centre behind their flat edge) is the MEC, since the MEC is fixed by such a basis.
    """
    x, y, theta = (np.asarray(v, dtype=float) for v in (x, y, theta))
    ux, uy = np.cos(theta), np.sin(theta)
    ax = np.concatenate([x, x + uy, x - uy])
    ay = np.concatenate([y, y - ux, y + ux])
    ar = np.concatenate([np.ones_like(x), np.zeros_like(x), np.zeros_like(x)])
    aux, auy = np.tile(ux, 3), np.tile(uy, 3)
    n_atoms = ax.size
    circles: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    arcs = np.arange(len(x))
    circles.append((ax[arcs], ay[arcs], ar[arcs], arcs[:, None]))
    pairs = np.array(list(itertools.combinations(range(n_atoms), 2)))
    px, py, pr = _circle2(
        ax[pairs[:, 0]], ay[pairs[:, 0]], ar[pairs[:, 0]],
        ax[pairs[:, 1]], ay[pairs[:, 1]], ar[pairs[:, 1]],
    )  # fmt: skip
    circles.append((px, py, pr, pairs))
    triples = np.array(list(itertools.combinations(range(n_atoms), 3)))
    atoms = [(ax[triples[:, k]], ay[triples[:, k]], ar[triples[:, k]]) for k in range(3)]
    for tx, ty, tr in _circle3(*atoms):
        circles.append((tx, ty, tr, triples))
    best = (np.nan, np.nan, np.inf)
    for kx, ky, kr, members in circles:
        with np.errstate(invalid="ignore"):
            dist, _, _, _ = farthest(x, y, ux, uy, kx[:, None], ky[:, None])
            ok = np.isfinite(kr) & (dist.max(axis=1) <= kr + TOL)
            mx, my = ax[members], ay[members]
            behind = (ar[members] < 0.5) | (
                (mx - kx[:, None]) * aux[members] + (my - ky[:, None]) * auy[members] >= -TOL
            )
            ok &= behind.all(axis=1) & (kr >= ar[members].max(axis=1) - TOL)
        if ok.any():
            k = int(np.argmin(np.where(ok, kr, np.inf)))
            if kr[k] < best[2]:
                best = (float(kx[k]), float(ky[k]), float(kr[k]))
    return best
