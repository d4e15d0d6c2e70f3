"""``cross_validate``'s folds as parallel tasks on rows read and binned once (docs/recipes.md,
"lightgbm_train": "folds train in parallel").

The operation reads the file once and bins every row once (:func:`binned_rows`: LightGBM's
``save_binary`` of the whole binned dataset, about a tenth of the float matrix); each fold task
gets those bytes and the :class:`~recipes.lightgbm_train.dataset.Dataset` less its features
(:func:`without_features`: the target says which rows are in which fold) through the context's
``share`` (Ray's object store, NumPy arrays without a copy), writes the bytes to a temporary
file, loads them and trains on its subset of the rows, as ``lightgbm.cv`` does in one process.
A fold's result is exactly what :func:`~recipes.lightgbm_train.train.cross_validate_fold`
answers on the same binned rows in one process.

:func:`plan_waves` shares the job's CPUs between the folds: as many single-thread folds at a
time as there are CPUs, and the folds left over (when the CPUs do not divide them) with the
CPUs split between them, so the last wave does not leave CPUs idle. A wave is one call of
``parallel``, so the folds never hold more CPUs than the job.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from recipes.lightgbm_train.callbacks import RoundWatch, wall_clock_deadline
from recipes.lightgbm_train.dataset import Dataset
from recipes.lightgbm_train.schema import LightGBMTrainPayload
from recipes.lightgbm_train.train import (
    bin_rows,
    cross_validate_fold,
    lightgbm_params,
    resolve_metric,
)

_BINNED_FILE = "rows.bin"


def plan_waves(folds: int, cpus: int) -> list[tuple[list[int], int]]:
    """``[(fold indices, threads of each), …]``, one entry per call of the context's
    ``parallel``: the folds of an entry together never run more than ``cpus`` threads (a task
    holds as many CPUs as it runs threads), so a job never uses more CPUs than it holds, even
    where the cluster has more free."""
    cpus = max(1, cpus)
    waves = [(list(range(start, start + cpus)), 1) for start in range(0, folds - cpus + 1, cpus)]
    rest = folds % cpus if folds >= cpus else folds
    if rest:
        waves.append((list(range(folds - rest, folds)), cpus // rest))
    return waves


def binned_rows(payload: LightGBMTrainPayload, ds: Dataset, num_threads: int) -> bytes:
    """Every row binned once (:func:`~recipes.lightgbm_train.train.bin_rows`), as the bytes
    of LightGBM's binary dataset file."""
    binned = bin_rows(payload, ds, num_threads)
    with tempfile.TemporaryDirectory(prefix="lgb-binned-") as tmp:
        path = Path(tmp) / _BINNED_FILE
        binned.save_binary(str(path))
        return path.read_bytes()


def without_features(ds: Dataset) -> Dataset:
    """``ds`` with no feature rows (the names and categories kept): what a fold task needs
    beside the binned rows."""
    return dataclasses.replace(ds, features=np.empty((0, len(ds.feature_names))))


def run_fold(
    payload: LightGBMTrainPayload,
    ds: Dataset,
    binned: bytes,
    fold: int,
    folds: int,
    num_threads: int,
    stop_at: float | None = None,
) -> dict[str, Any]:
    """One fold task: train on every fold but ``fold`` of the rows ``binned`` holds (from
    :func:`binned_rows`), score on ``fold``; ``ds`` may be :func:`without_features`.
    ``stop_at`` (wall-clock seconds): stop boosting then and answer with the best round so
    far (``stopped_at`` in the answer: the round it stopped after, else None)."""
    metric = resolve_metric(payload, ds.objective)
    params = lightgbm_params(payload, ds, metric, num_threads)
    watch = RoundWatch(payload.n_estimators, time_up=wall_clock_deadline(stop_at))
    with tempfile.TemporaryDirectory(prefix="lgb-fold-") as tmp:
        path = Path(tmp) / _BINNED_FILE
        path.write_bytes(binned)
        rows = lgb.Dataset(str(path), params=params).construct()
        result = cross_validate_fold(
            payload, ds, fold, folds, num_threads, binned=rows, callbacks=[watch]
        )
    result["stopped_at"] = watch.stopped_at
    return result
