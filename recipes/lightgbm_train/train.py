"""The ``lightgbm_train`` kernels: one hold-out model, and one cross-validation fold at a time.

The recipe's Ray task calls :func:`train` with a local copy of the dataset and an output
directory whose ``model.txt`` it stores as the model artifact; ``cross_validate`` runs
:func:`cross_validate_fold` as one Ray task per fold (each with its share of the job's CPUs as
``num_threads``) and joins them with :func:`summarise_folds`.

``train``'s metric is the model's score at its best boosting round on the held-out rows,
computed here from the predictions of the saved model file, so ``lightgbm.Booster(model_file=…)``
on the same rows reproduces it exactly; a fold's is LightGBM's record of its best round, as
``lightgbm.cv`` reports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from recipes.lightgbm_train.dataset import Dataset, load_dataset
from recipes.lightgbm_train.metrics import best_round, metric_value, recorded_name
from recipes.lightgbm_train.problems import InputProblem
from recipes.lightgbm_train.schema import METRICS_BY_OBJECTIVE, LightGBMTrainPayload

MODEL_FILE = "model.txt"
#: Feature names, categorical codes and class labels needed to score new rows with the model.
PREPROCESSING_FILE = "preprocessing.json"


def _payload(payload: LightGBMTrainPayload | Mapping[str, Any]) -> LightGBMTrainPayload:
    if isinstance(payload, LightGBMTrainPayload):
        return payload
    return LightGBMTrainPayload.model_validate(payload)


def resolve_metric(payload: LightGBMTrainPayload, objective: str) -> str:
    """The payload's metric, or the objective's default one."""
    allowed = METRICS_BY_OBJECTIVE[objective]
    if payload.metric is None:
        return allowed[0]
    if payload.metric not in allowed:
        raise InputProblem(
            "metric",
            f"{payload.metric!r} does not score the {objective} objective inferred from "
            f"the target; use one of {list(allowed)} or set objective",
        )
    return payload.metric


def lightgbm_params(
    payload: LightGBMTrainPayload, ds: Dataset, metric: str, num_threads: int
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "objective": ds.objective,
        "metric": metric,
        "num_leaves": payload.num_leaves,
        "learning_rate": payload.learning_rate,
        "feature_fraction": payload.feature_fraction,
        "bagging_fraction": payload.bagging_fraction,
        "bagging_freq": 1 if payload.bagging_fraction < 1 else 0,
        "seed": payload.seed,
        "num_threads": max(1, int(num_threads)),
        "verbosity": -1,
    }
    if ds.objective == "multiclass":
        params["num_class"] = len(ds.classes or ())
    return params


def _stratify(ds: Dataset, payload: LightGBMTrainPayload) -> bool:
    return payload.stratified and ds.objective != "regression"


def split_indices(ds: Dataset, payload: LightGBMTrainPayload) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, valid) row indices: ``test_size`` of the rows held out, of every class
    alike when stratified. Same payload and data, same split."""
    rng = np.random.default_rng(payload.seed)
    groups = (
        [np.flatnonzero(ds.target == c) for c in range(len(ds.classes or ()))]
        if _stratify(ds, payload)
        else [np.arange(ds.rows)]
    )
    valid_parts = []
    for group in groups:
        shuffled = rng.permutation(group)
        valid_parts.append(shuffled[: round(len(group) * payload.test_size)])
    valid = np.sort(np.concatenate(valid_parts))
    if len(valid) == 0 or len(valid) == ds.rows:
        raise InputProblem(
            "test_size",
            f"{ds.rows} rows cannot be split with test_size {payload.test_size}: "
            "both the training and the validation part need rows",
        )
    mask = np.ones(ds.rows, dtype=bool)
    mask[valid] = False
    return np.flatnonzero(mask), valid


def fold_of_rows(ds: Dataset, payload: LightGBMTrainPayload, folds: int) -> np.ndarray:
    """The fold (0..folds-1) of every row; stratified folds deal each class round the folds."""
    if folds > ds.rows:
        raise InputProblem("folds", f"{folds} is larger than the dataset's {ds.rows} rows")
    rng = np.random.default_rng(payload.seed)
    assignment = np.empty(ds.rows, dtype=np.int64)
    groups = (
        [np.flatnonzero(ds.target == c) for c in range(len(ds.classes or ()))]
        if _stratify(ds, payload)
        else [np.arange(ds.rows)]
    )
    dealt = 0
    for group in groups:
        shuffled = rng.permutation(group)
        assignment[shuffled] = (dealt + np.arange(len(group))) % folds
        dealt += len(group)
    return assignment


def _fit(
    payload: LightGBMTrainPayload,
    ds: Dataset,
    train_rows: np.ndarray,
    valid_rows: np.ndarray,
    metric: str,
    num_threads: int,
    binned: lgb.Dataset | None = None,
    callbacks: Sequence[Callable[..., None]] = (),
) -> tuple[lgb.Booster, int, float]:
    """A booster trained on ``train_rows``, its best round on ``valid_rows`` (1-based) and
    LightGBM's own score of that round;
    from subsets of ``binned`` (see :func:`bin_rows`) when given, else binned from the
    training rows. ``callbacks`` see every round after it is recorded (one may stop the
    training early with ``lightgbm.EarlyStopException``: the best round so far counts)."""
    params = lightgbm_params(payload, ds, metric, num_threads)
    if binned is not None:
        train_set = binned.subset(train_rows.tolist(), params=params)
        valid_set = binned.subset(valid_rows.tolist(), params=params)
    else:
        weight = ds.weight
        train_set = lgb.Dataset(
            ds.features[train_rows],
            label=ds.target[train_rows],
            weight=None if weight is None else weight[train_rows],
            feature_name=_lightgbm_names(ds),
            categorical_feature=ds.categorical,
            free_raw_data=True,
        )
        valid_set = lgb.Dataset(
            ds.features[valid_rows],
            label=ds.target[valid_rows],
            weight=None if weight is None else weight[valid_rows],
            reference=train_set,
        )
    history: dict[str, Any] = {}
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=payload.n_estimators,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.record_evaluation(history), *callbacks],
        # Keeps the validation set's predictions (see _predicted), and saves a model text
        # round trip at the end.
        keep_training_booster=True,
    )
    best = best_round(metric, history["valid"])
    return booster, best, float(history["valid"][recorded_name(metric)][best - 1])


def bin_rows(payload: LightGBMTrainPayload, ds: Dataset, num_threads: int = 1) -> lgb.Dataset:
    """Every row binned once, for the folds to train on subsets of (as ``lightgbm.cv`` does):
    binning costs about a second per 200,000 x 50 rows, paid once instead of once a fold."""
    metric = resolve_metric(payload, ds.objective)
    params = lightgbm_params(payload, ds, metric, num_threads)
    return lgb.Dataset(
        ds.features,
        label=ds.target,
        weight=ds.weight,
        feature_name=_lightgbm_names(ds),
        categorical_feature=ds.categorical,
        free_raw_data=False,
        params=params,
    ).construct()


def _lightgbm_names(ds: Dataset) -> list[str]:
    return [_lightgbm_name(i, n) for i, n in enumerate(ds.feature_names)]


def _lightgbm_name(index: int, name: str) -> str:
    """LightGBM refuses JSON punctuation in feature names; the index keeps them unique."""
    clean = re.sub(r'[\s",:\[\]{}]', "_", name)
    return clean if clean == name else f"{clean}__{index}"


def _predicted(
    booster: lgb.Booster, best: int, saved: Path, ds: Dataset, rows: np.ndarray
) -> np.ndarray:
    """What the model saved at ``saved`` (cut at round ``best``) predicts for the validation
    ``rows``. When ``best`` is the booster's last round, these are the predictions LightGBM
    kept for the validation set while training (bit for bit what predicting again answers,
    without the pass over the rows: about 5 % of a 200-round training); else the saved model
    predicts them."""
    if best == booster.current_iteration():
        kept: list[np.ndarray] = []

        def grab(predictions: np.ndarray, _data: lgb.Dataset) -> tuple[str, float, bool]:
            kept.append(np.array(predictions, copy=True))
            return "kept", 0.0, False

        booster.eval_valid(feval=grab)
        if kept:
            return kept[0]
    return np.asarray(lgb.Booster(model_file=saved).predict(ds.features[rows]))


def _score(
    booster: lgb.Booster, best: int, saved: Path, ds: Dataset, rows: np.ndarray, metric: str
) -> float:
    weight = None if ds.weight is None else ds.weight[rows]
    predicted = _predicted(booster, best, saved, ds, rows)
    return metric_value(metric, ds.target[rows], predicted, weight)


def train(
    payload: LightGBMTrainPayload | Mapping[str, Any],
    dataset_path: str | Path,
    out_dir: str | Path,
    num_threads: int = 1,
    filename: str | None = None,
    callbacks: Sequence[Callable[..., None]] = (),
) -> dict[str, Any]:
    """Train on a hold-out split; write ``out_dir/model.txt`` (cut at the best round) and
    ``out_dir/preprocessing.json``; answer the ``train`` result. ``model_artifact`` is None here:
    the recipe's operation sets it once it has published ``model.txt``. ``callbacks`` are
    LightGBM callbacks run after each round is recorded (progress, the job's deadline)."""
    p = _payload(payload)
    ds = load_dataset(p, dataset_path, filename)
    metric = resolve_metric(p, ds.objective)
    train_rows, valid_rows = split_indices(ds, p)
    booster, best, _ = _fit(p, ds, train_rows, valid_rows, metric, num_threads, callbacks=callbacks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(out / MODEL_FILE, num_iteration=best)
    (out / PREPROCESSING_FILE).write_text(json.dumps(ds.describe(), default=str))
    gains = booster.feature_importance(importance_type="gain", iteration=best)
    score = _score(booster, best, out / MODEL_FILE, ds, valid_rows, metric)
    booster.free_dataset()
    return {
        "objective": ds.objective,
        "metric": metric,
        "metric_value": score,
        "best_iteration": best,
        "n_train": len(train_rows),
        "n_valid": len(valid_rows),
        "feature_importance": {
            name: float(gain) for name, gain in zip(ds.feature_names, gains, strict=True)
        },
        "model_artifact": None,
    }


def cross_validate_fold(
    payload: LightGBMTrainPayload | Mapping[str, Any],
    dataset_path: str | Path | Dataset,
    fold: int,
    folds: int | None = None,
    num_threads: int = 1,
    filename: str | None = None,
    binned: lgb.Dataset | None = None,
    callbacks: Sequence[Callable[..., None]] = (),
) -> dict[str, Any]:
    """Train on every fold but ``fold`` and score on ``fold``: one Ray task's share of
    ``cross_validate``. ``folds`` defaults to the payload's. ``dataset_path`` may be a
    :class:`Dataset` already loaded with the same payload (read once, shared by the folds
    through Ray's object store instead of parsed by each), and ``binned`` its
    :func:`bin_rows` (in one process; across processes, ``save_binary`` it to a file and pass
    ``lightgbm.Dataset(that_file)``): then the features are not read at all, only the target
    (which rows are in which fold) and the objective. The fold's metric is LightGBM's own
    record of its best round, as ``lightgbm.cv`` reports it (no model is saved to
    reproduce)."""
    p = _payload(payload)
    k = p.folds if folds is None else folds
    if not 0 <= fold < k:
        raise ValueError(f"fold {fold} is outside 0..{k - 1}")
    if isinstance(dataset_path, Dataset):
        ds = dataset_path
    else:
        ds = load_dataset(p, dataset_path, filename)
    metric = resolve_metric(p, ds.objective)
    assignment = fold_of_rows(ds, p, k)
    valid_rows = np.flatnonzero(assignment == fold)
    train_rows = np.flatnonzero(assignment != fold)
    _, best, score = _fit(p, ds, train_rows, valid_rows, metric, num_threads, binned, callbacks)
    return {
        "fold": fold,
        "metric": metric,
        "metric_value": score,
        "best_iteration": best,
    }


def summarise_folds(results: Iterable[Mapping[str, Any]], metric: str | None = None) -> dict:
    """The ``cross_validate`` result from the folds' results: their mean and (population)
    standard deviation, folds in order."""
    rows = sorted(results, key=lambda r: int(r["fold"]))
    if not rows:
        raise ValueError("no fold results to summarise")
    name = metric or str(rows[0]["metric"])
    values = np.array([float(r["metric_value"]) for r in rows])
    return {
        "metric": name,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "folds": [
            {
                "fold": int(r["fold"]),
                "metric_value": float(r["metric_value"]),
                "best_iteration": int(r["best_iteration"]),
            }
            for r in rows
        ],
    }


def cross_validate(
    payload: LightGBMTrainPayload | Mapping[str, Any],
    dataset_path: str | Path,
    num_threads: int = 1,
    filename: str | None = None,
) -> dict[str, Any]:
    """Every fold in this process, one after another (the recipe runs them as Ray tasks)."""
    p = _payload(payload)
    ds = load_dataset(p, dataset_path, filename)
    binned = bin_rows(p, ds, num_threads)
    return summarise_folds(
        cross_validate_fold(p, ds, fold, p.folds, num_threads, binned=binned)
        for fold in range(p.folds)
    )
