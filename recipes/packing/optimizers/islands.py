"""One island's work between two gathers, for each packing optimiser (docs/recipes.md,
"packing").

An :class:`Island` carries its current point, its best candidate and its counters from epoch to
epoch; :func:`island_epoch` (a module-level function: each call is a Ray task of
``ctx.parallel``) advances it by a given list of iterations. Every iteration draws its randomness
from ``(seed, island, iteration)`` alone, so the same seed and iteration count give the same
packing however the iterations are grouped into epochs or scheduled.

- ``feasible_optimize``: iteration r is restart r (the start itself, then random starts or, when
  a start was given, hops around it): local minimisation, then repair.
- ``basin_hopping``: iteration = one hop from the island's current point (``perturb`` with
  ``hop_scale``), local minimisation, repair, Metropolis acceptance at ``temperature``; an
  island whose best has not improved in :data:`RESTART_AFTER` hops goes on from a random start.
- ``differential_evolution``: iteration = one DE/current-to-best/1/bin generation of the
  island's population on the penalised score; the fittest member not yet polished is polished
  (local minimisation and repair) when the population is made and every ``polish_every``
  generations.

Island 0 begins at the start itself, minimised with :data:`START_EFFORT` times the iterations;
the other islands begin at random starts, so no two islands repeat the same work.
"""

from __future__ import annotations

import ctypes
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import round_candidates
from ..scoring import score_batch
from .objective import Counter, local_minimize, repair
from .starts import perturb, random_start


@dataclass
class Island:
    """The state one island carries between epochs. Scores rank a valid candidate by its
    radius and an invalid one after every valid one, by its penalised score."""

    index: int
    current: np.ndarray
    current_key: tuple[int, float] = (2, math.inf)
    best: np.ndarray | None = None
    best_key: tuple[int, float] = (2, math.inf)
    best_radius: float = math.inf
    evaluations: int = 0
    iterations: int = 0
    cut_short: bool = False
    population: np.ndarray | None = None
    fitness: np.ndarray | None = None
    accepted: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def offer(self, cand: np.ndarray, key: tuple[int, float], radius: float) -> None:
        """Keep ``cand`` as the island's best when it ranks better."""
        if key < self.best_key:
            self.best, self.best_key, self.best_radius = cand.copy(), key, radius


def rank_key(valid: bool, radius: float, penalized: float) -> tuple[int, float]:
    """Valid candidates by radius, then invalid ones by penalised score."""
    return (0, radius) if valid else (1, penalized)


#: The start itself is minimised with this many times the iterations of a hop (it is squeezed
#: the most: from radius ≈ 3.57 for the default start).
START_EFFORT = 3
#: A basin-hopping island whose best has not improved in this many hops goes on from a random
#: start.
RESTART_AFTER = 4


def _polish(
    cand: np.ndarray, params: dict[str, Any], counter: Counter, effort: int = 1
) -> tuple[np.ndarray, tuple[int, float], float]:
    """Local minimisation and repair; answers (rounded candidate, rank key, radius)."""
    iters = params["local_iters"] * effort
    local = local_minimize(cand, iters_per_stage=iters, counter=counter)
    rounded, valid, radius = repair(local, counter)
    penalized = radius
    if not valid:
        scored = score_batch(rounded[None, :], params["penalty"])
        penalized = float(scored["penalized"][0])
    return rounded, rank_key(valid, radius, penalized), radius


def _rng(params: dict[str, Any], island: int, iteration: int) -> np.random.Generator:
    return np.random.default_rng([params["seed"], island, iteration])


def _feasible_step(state: Island, params: dict[str, Any], it: int, counter: Counter) -> None:
    rng = _rng(params, 0, it)  # restarts are numbered globally: islands share one sequence
    start: np.ndarray = params["start"]
    if it == 0:
        rounded, key, radius = _polish(start, params, counter, START_EFFORT)
    else:
        given = params["start_given"]
        cand = perturb(start, rng, params["hop_scale"]) if given else random_start(rng)
        rounded, key, radius = _polish(cand, params, counter)
    state.offer(rounded, key, radius)


def _hopping_step(state: Island, params: dict[str, Any], it: int, counter: Counter) -> None:
    rng = _rng(params, state.index, it)
    effort = 1
    if state.current_key[0] == 2 and state.index == 0:  # island 0 polishes the start itself
        trial, effort = state.current, START_EFFORT
    elif state.current_key[0] == 2 or state.extra.get("stale", 0) >= RESTART_AFTER:
        # the other islands' first visit, or stuck: go on from a random start
        trial = random_start(rng)
        state.current_key = (2, math.inf)
        state.extra["stale"] = 0
        state.extra["restarts"] = state.extra.get("restarts", 0) + 1
    else:
        trial = perturb(state.current, rng, params["hop_scale"])
    rounded, key, radius = _polish(trial, params, counter, effort)
    previous = state.best_key
    state.offer(rounded, key, radius)
    state.extra["stale"] = 0 if state.best_key < previous else state.extra.get("stale", 0) + 1
    threshold = rng.uniform()
    if key <= state.current_key:
        accept = True
    elif key[0] == state.current_key[0] and params["temperature"] > 0:
        accept = threshold < math.exp(-(key[1] - state.current_key[1]) / params["temperature"])
    else:
        accept = False
    if accept:
        state.current, state.current_key = rounded, key
        state.accepted += 1


def _penalized(pop: np.ndarray, penalty: float, counter: Counter) -> np.ndarray:
    counter.evaluations += pop.shape[0]
    scored = score_batch(round_candidates(pop), penalty)
    return np.where(scored["valid"], scored["radius"], scored["penalized"])


def _de_polish(state: Island, params: dict[str, Any], counter: Counter, effort: int = 1) -> None:
    """Polish the fittest member not polished yet (members polished already are local minima:
    polishing them again finds nothing new)."""
    assert state.population is not None and state.fitness is not None
    polished = state.extra.setdefault("polished", np.zeros(len(state.fitness), dtype=bool))
    fresh = np.where(polished, np.inf, state.fitness)
    pick = int(np.argmin(fresh if np.isfinite(fresh).any() else state.fitness))
    rounded, key, radius = _polish(state.population[pick], params, counter, effort)
    state.offer(rounded, key, radius)
    state.population[pick] = rounded
    state.fitness[pick] = _penalized(rounded[None, :], params["penalty"], counter)[0]
    polished[pick] = True


def _evolution_step(state: Island, params: dict[str, Any], it: int, counter: Counter) -> None:
    rng = _rng(params, state.index, it)
    size = params["population_size"]
    if state.population is None:  # around the start (island 0) or a random one
        centre = state.current if state.index == 0 else random_start(rng)
        pop = np.repeat(centre[None, :], size, axis=0)
        pop[1:] = np.array([perturb(centre, rng, params["hop_scale"]) for _ in range(size - 1)])
        state.population = pop
        state.fitness = _penalized(pop, params["penalty"], counter)
        state.fitness[0] = -math.inf  # the centre is polished first
        _de_polish(state, params, counter, START_EFFORT if state.index == 0 else 1)
    pop, fit = state.population, state.fitness
    assert fit is not None
    best = pop[int(np.argmin(fit))]
    a, b = np.empty(size, dtype=np.intp), np.empty(size, dtype=np.intp)
    for n in range(size):
        a[n], b[n] = rng.choice([m for m in range(size) if m != n], size=2, replace=False)
    f_scale = rng.uniform(0.4, 0.9, size)[:, None]
    mutant = pop + f_scale * (best[None, :] - pop) + f_scale * (pop[a] - pop[b])
    cross = rng.uniform(size=pop.shape) < params["crossover"]
    cross[np.arange(size), rng.integers(0, 45, size)] = True
    trial = np.where(cross, mutant, pop)
    trial_fit = _penalized(trial, params["penalty"], counter)
    better = trial_fit <= fit
    pop[better], fit[better] = trial[better], trial_fit[better]
    state.extra["polished"][better] = False
    if (it + 1) % params["polish_every"] == 0:
        _de_polish(state, params, counter)


_STEPS = {
    "feasible_optimize": _feasible_step,
    "basin_hopping": _hopping_step,
    "differential_evolution": _evolution_step,
}


def _own_arrays(state: Island) -> None:
    """Writable copies of the state's arrays (Ray hands a task's NumPy arguments over
    read-only)."""
    state.current = np.array(state.current)
    if state.best is not None:
        state.best = np.array(state.best)
    if state.population is not None and state.fitness is not None:
        state.population, state.fitness = np.array(state.population), np.array(state.fitness)
        state.extra["polished"] = np.array(state.extra["polished"])


_BLAS_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def one_blas_thread() -> None:
    """Keep every loaded OpenBLAS to one thread in this process: an island is one CPU's work,
    and L-BFGS-B's small BLAS calls spinning threads of two islands on two cores ran each
    local minimisation 5.5x slower. Ray sets ``OMP_NUM_THREADS`` in its workers; a process
    pool or a worker started otherwise may not have."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return
    libs = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in _BLAS_SETTERS:
            setter = getattr(handle, name, None)
            if setter is not None:
                setter(1)


def island_epoch(
    operation: str,
    params: dict[str, Any],
    state: Island,
    iterations: list[int],
    time_cap_s: float,
) -> Island:
    """Advance ``state`` by ``iterations`` of ``operation`` (stopping early, ``cut_short``, once
    ``time_cap_s`` seconds have passed) and answer it."""
    one_blas_thread()
    _own_arrays(state)
    started = time.monotonic()
    counter = Counter()
    step = _STEPS[operation]
    state.cut_short = False
    for it in iterations:
        if time.monotonic() - started > time_cap_s:
            state.cut_short = True
            break
        step(state, params, it, counter)
        state.iterations += 1
    state.evaluations += counter.evaluations
    return state
