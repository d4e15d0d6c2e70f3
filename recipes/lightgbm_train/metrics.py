"""The ``lightgbm_train`` metrics, computed as LightGBM computes them (docs/recipes.md,
"lightgbm_train"), and the best round of a recorded validation curve.

A fold's or a model's reported metric is computed here from the saved model's predictions, so
plain ``lightgbm.Booster(model_file=…)`` on the same rows reproduces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

HIGHER_IS_BETTER = frozenset({"auc"})
#: The name LightGBM records a metric under, where it is not the metric's own.
RECORDED_AS = {"mae": "l1"}
_EPS = 1e-15  # probabilities are clipped like LightGBM's own log-loss


def recorded_name(metric: str) -> str:
    """The name LightGBM's evaluation records use for ``metric``."""
    return RECORDED_AS.get(metric, metric)


def best_round(metric: str, recorded: Mapping[str, Sequence[float]]) -> int:
    """The best round (1-based) of a validation set's ``record_evaluation`` history."""
    scores = np.asarray(recorded[recorded_name(metric)])
    best = np.argmax(scores) if metric in HIGHER_IS_BETTER else np.argmin(scores)
    return int(best) + 1


def metric_value(
    metric: str, y: np.ndarray, pred: np.ndarray, weight: np.ndarray | None = None
) -> float:
    """``metric`` of predictions ``pred`` (raw values, or probabilities) for labels ``y``."""
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    if metric == "rmse":
        return float(np.sqrt(np.sum(w * (y - pred) ** 2) / np.sum(w)))
    if metric == "mae":
        return float(np.sum(w * np.abs(y - pred)) / np.sum(w))
    if metric == "binary_logloss":
        p = np.clip(pred, _EPS, 1 - _EPS)
        return float(-np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))) / np.sum(w))
    if metric == "auc":
        return _auc(y, pred, w)
    labels = y.astype(np.int64)
    if metric == "multi_logloss":
        p = np.clip(pred[np.arange(len(labels)), labels], _EPS, None)
        return float(-np.sum(w * np.log(p)) / np.sum(w))
    if metric == "multi_error":
        wrong = np.argmax(pred, axis=1) != labels
        return float(np.sum(w * wrong) / np.sum(w))
    raise ValueError(f"unknown metric {metric!r}")


def _auc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> float:
    """Weighted ROC AUC, ties counted as half."""
    order = np.argsort(score, kind="mergesort")
    s, pos, neg = score[order], (w * y)[order], (w * (1 - y))[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos_t, neg_t = np.add.reduceat(pos, starts), np.add.reduceat(neg, starts)
    neg_below = np.cumsum(neg_t) - neg_t
    total = pos_t.sum() * neg_t.sum()
    if total == 0:
        return 1.0  # one class only: LightGBM reports 1 as well
    return float(np.sum(pos_t * (neg_below + neg_t / 2)) / total)
