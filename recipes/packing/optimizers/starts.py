"""Starting arrangements of the packing optimisers (docs/recipes.md, "packing").

The default start pairs 14 semicircles back to back into 7 unit disks in a hexagonal flower
(one in the middle, six around it, 2 apart: enclosing radius 3) and lays the fifteenth against
the rim; the optimisers squeeze it from there. A random start scatters the semicircles in a
disk of radius 3.5 with random directions.
"""

from __future__ import annotations

import math

import numpy as np


def default_start() -> np.ndarray:
    """The hexagonal flower of 7 disks (each two semicircles back to back) and one more
    semicircle outside, as a 45-vector."""
    out: list[float] = []
    centres = [(0.0, 0.0)] + [
        (2.0 * math.cos(k * math.pi / 3), 2.0 * math.sin(k * math.pi / 3)) for k in range(6)
    ]
    for n, (x, y) in enumerate(centres):
        angle = 0.3 * n
        out += [x, y, angle, x, y, angle + math.pi]
    out += [0.0, 3.2, math.pi / 2 + 0.5]
    return np.array(out)


def random_start(rng: np.random.Generator) -> np.ndarray:
    """Fifteen semicircles uniformly in a disk of radius 3.5, directions uniform."""
    radius = 3.5 * np.sqrt(rng.uniform(0.0, 1.0, 15))
    angle = rng.uniform(-math.pi, math.pi, 15)
    out = np.empty(45)
    out[0::3] = radius * np.cos(angle)
    out[1::3] = radius * np.sin(angle)
    out[2::3] = rng.uniform(-math.pi, math.pi, 15)
    return out


def perturb(cand: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A hop: every number moved by N(0, scale²) (angles by twice as much), and a few
    semicircles (1 to 3) moved by N(0, (4·scale)²) or flipped around."""
    out = cand + rng.normal(0.0, scale, 45) * np.tile([1.0, 1.0, 2.0], 15)
    for i in rng.choice(15, size=int(rng.integers(1, 4)), replace=False):
        if rng.uniform() < 0.3:
            out[3 * i + 2] += math.pi
        else:
            out[3 * i : 3 * i + 3] += rng.normal(0.0, 4.0 * scale, 3)
    return out
