"""The lightgbm_train kernels: inference, the saved model reproducing the reported metric in
plain LightGBM, the metrics matching LightGBM's own, splits, folds and determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recipes.lightgbm_train.dataset import load_dataset
from recipes.lightgbm_train.metrics import metric_value
from recipes.lightgbm_train.schema import LightGBMTrainPayload
from recipes.lightgbm_train.train import (
    bin_rows,
    cross_validate,
    cross_validate_fold,
    fold_of_rows,
    lightgbm_params,
    split_indices,
    summarise_folds,
    train,
)

ROWS = 2000
RESULT_KEYS = {
    "objective",
    "metric",
    "metric_value",
    "best_iteration",
    "n_train",
    "n_valid",
    "feature_importance",
    "model_artifact",
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Features x0..x3, a text category, weights, and a regression, a binary (unbalanced) and a
    four-class target."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(ROWS, 4))
    colour = rng.integers(0, 3, ROWS)
    signal = x[:, 0] * 2 + x[:, 1] - colour + rng.normal(scale=0.3, size=ROWS)
    table = pa.table(
        {
            "x0": x[:, 0],
            "x 1,odd": x[:, 1],
            "x2": x[:, 2],
            "x3": x[:, 3],
            "colour": np.array(["red", "green", "blue"])[colour],
            "w": rng.uniform(0.2, 3.0, ROWS),
            "price": signal * 10 + 100,
            "churn": np.where(signal > 1.2, "yes", "no"),
            "tier": np.digitize(signal, [-1.5, 0.0, 1.5]),
        }
    )
    path = tmp_path_factory.mktemp("lgb") / "data.parquet"
    pq.write_table(table, path)
    return path


TARGETS = {"price": "regression", "churn": "binary", "tier": "multiclass"}


def payload_for(target: str, **fields: Any) -> dict[str, Any]:
    others = [t for t in TARGETS if t != target]
    if fields.get("weight_column") is None:
        others.append("w")
    return {
        "dataset_ref": "art_test",
        "target_column": target,
        "drop_columns": others,
        "categorical_columns": ["colour"],
        "n_estimators": 25,
        "num_leaves": 15,
        "learning_rate": 0.2,
        **fields,
    }


def reference_metric(metric: str, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """The metrics written out independently of the kernel (AUC by counting pairs)."""
    if metric == "rmse":
        return float(np.sqrt(np.average((y - p) ** 2, weights=w)))
    if metric == "mae":
        return float(np.average(np.abs(y - p), weights=w))
    if metric == "binary_logloss":
        return float(-np.average(np.where(y == 1, np.log(p), np.log(1 - p)), weights=w))
    if metric == "auc":
        pos, neg = p[y == 1], p[y == 0]
        wp, wn = w[y == 1], w[y == 0]
        greater = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return float((wp[:, None] * wn[None, :] * greater).sum() / (wp.sum() * wn.sum()))
    labels = y.astype(int)
    if metric == "multi_logloss":
        return float(-np.average(np.log(p[np.arange(len(y)), labels]), weights=w))
    assert metric == "multi_error"
    return float(np.average(p.argmax(axis=1) != labels, weights=w))


@pytest.mark.parametrize(
    ("target", "fields", "metric"),
    [
        ("price", {}, "rmse"),
        ("price", {"metric": "mae", "weight_column": "w"}, "mae"),
        ("churn", {}, "binary_logloss"),
        ("churn", {"metric": "auc", "weight_column": "w"}, "auc"),
        ("tier", {}, "multi_logloss"),
        ("tier", {"metric": "multi_error", "stratified": False}, "multi_error"),
    ],
)
def test_the_saved_model_reproduces_the_reported_metric(
    data_file: Path, tmp_path: Path, target: str, fields: dict[str, Any], metric: str
) -> None:
    body = payload_for(target, **fields)
    result = train(body, data_file, tmp_path / "out", num_threads=2)
    assert set(result) == RESULT_KEYS
    assert result["objective"] == TARGETS[target]
    assert result["metric"] == metric
    assert result["n_train"] + result["n_valid"] == ROWS
    assert result["n_valid"] == pytest.approx(ROWS * 0.2, abs=3)
    assert 1 <= result["best_iteration"] <= 25
    assert set(result["feature_importance"]) == {"x0", "x 1,odd", "x2", "x3", "colour"}
    assert result["feature_importance"]["x0"] > result["feature_importance"]["x3"]
    assert result["model_artifact"] is None
    json.dumps(result)  # plain JSON types only

    # Plain LightGBM, the model file and the validation rows: nothing of the kernel's scoring.
    p = LightGBMTrainPayload.model_validate(body)
    ds = load_dataset(p, data_file)
    _, valid = split_indices(ds, p)
    model = lgb.Booster(model_file=str(tmp_path / "out" / "model.txt"))
    assert model.current_iteration() == result["best_iteration"]
    predictions = np.asarray(model.predict(ds.features[valid]))
    w = np.ones(len(valid)) if ds.weight is None else ds.weight[valid]
    expected = reference_metric(metric, ds.target[valid], predictions, w)
    assert abs(result["metric_value"] - expected) <= 1e-9

    described = json.loads((tmp_path / "out" / "preprocessing.json").read_text())
    assert described["categories"] == {"colour": ["blue", "green", "red"]}
    assert described["categorical_features"] == ["colour"]


def test_a_model_cut_before_its_last_round_reproduces_its_metric(
    data_file: Path, tmp_path: Path
) -> None:
    """Overfitting on purpose: the best round is not the last, so the saved model (cut there)
    predicts the validation rows again; at the last round LightGBM's kept predictions count."""
    for fields, cut in (
        ({"learning_rate": 1.0, "num_leaves": 200, "n_estimators": 40}, True),
        ({}, False),
    ):
        body = payload_for("churn", **fields)
        result = train(body, data_file, tmp_path / str(cut), num_threads=2)
        rounds = LightGBMTrainPayload.model_validate(body).n_estimators
        assert (result["best_iteration"] < rounds) is cut
        p = LightGBMTrainPayload.model_validate(body)
        ds = load_dataset(p, data_file)
        _, valid = split_indices(ds, p)
        model = lgb.Booster(model_file=str(tmp_path / str(cut) / "model.txt"))
        predicted = np.asarray(model.predict(ds.features[valid]))
        expected = reference_metric(
            "binary_logloss", ds.target[valid], predicted, np.ones(len(valid))
        )
        assert abs(result["metric_value"] - expected) <= 1e-9


@pytest.mark.parametrize(
    "metric", ["rmse", "mae", "binary_logloss", "auc", "multi_logloss", "multi_error"]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_the_metrics_are_lightgbms_own(data_file: Path, metric: str, weighted: bool) -> None:
    """Each metric of the kernel equals what LightGBM reports on the same validation rows."""
    target = {"rmse": "price", "mae": "price", "binary_logloss": "churn", "auc": "churn"}.get(
        metric, "tier"
    )
    p = LightGBMTrainPayload.model_validate(
        payload_for(target, metric=metric, weight_column="w" if weighted else None)
    )
    ds = load_dataset(p, data_file)
    train_rows, valid = split_indices(ds, p)
    weight = ds.weight
    params: dict[str, Any] = {"objective": ds.objective, "metric": metric, "verbosity": -1}
    if ds.objective == "multiclass":
        params["num_class"] = 4
    train_set = lgb.Dataset(
        ds.features[train_rows],
        ds.target[train_rows],
        weight=None if weight is None else weight[train_rows],
    )
    valid_set = lgb.Dataset(
        ds.features[valid],
        ds.target[valid],
        weight=None if weight is None else weight[valid],
        reference=train_set,
    )
    history: dict[str, Any] = {}
    booster = lgb.train(
        params, train_set, 10, valid_sets=[valid_set], callbacks=[lgb.record_evaluation(history)]
    )
    ours = metric_value(
        metric,
        ds.target[valid],
        np.asarray(booster.predict(ds.features[valid])),
        None if weight is None else weight[valid],
    )
    recorded = history["valid_0"]["l1" if metric == "mae" else metric][-1]
    assert ours == pytest.approx(recorded, rel=1e-6)


def test_the_same_seed_gives_the_same_model(data_file: Path, tmp_path: Path) -> None:
    body = payload_for("churn", bagging_fraction=0.7, feature_fraction=0.8)
    first = train(body, data_file, tmp_path / "a", num_threads=2)
    second = train(body, data_file, tmp_path / "b", num_threads=2)
    assert first == second
    assert (tmp_path / "a" / "model.txt").read_text() == (tmp_path / "b" / "model.txt").read_text()
    other = train({**body, "seed": 7}, data_file, tmp_path / "c", num_threads=2)
    assert other["metric_value"] != first["metric_value"]


def test_stratified_splits_keep_class_shares(data_file: Path) -> None:
    p = LightGBMTrainPayload.model_validate(payload_for("tier", test_size=0.25))
    ds = load_dataset(p, data_file)
    train_rows, valid = split_indices(ds, p)
    assert len(np.intersect1d(train_rows, valid)) == 0
    assert len(train_rows) + len(valid) == ds.rows
    counts = np.bincount(ds.target.astype(int))
    in_valid = np.bincount(ds.target[valid].astype(int), minlength=len(counts))
    assert np.all(np.abs(in_valid - counts * 0.25) <= 0.5)

    folds = fold_of_rows(ds, p, 5)
    for c in range(len(counts)):
        per_fold = np.bincount(folds[ds.target == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1


def test_cross_validation_folds_and_summary(data_file: Path) -> None:
    body = payload_for("price", folds=3, n_estimators=15)
    result = cross_validate(body, data_file, num_threads=2)
    assert result["metric"] == "rmse"
    assert [f["fold"] for f in result["folds"]] == [0, 1, 2]
    values = np.array([f["metric_value"] for f in result["folds"]])
    assert result["mean"] == pytest.approx(values.mean())
    assert result["std"] == pytest.approx(values.std())
    assert 0 < result["mean"] < 10  # the target's noise is 3, its spread about 25
    p = LightGBMTrainPayload.model_validate(body)
    loaded = load_dataset(p, data_file)
    binned = bin_rows(p, loaded, 2)
    one = cross_validate_fold(body, loaded, 1, 3, 2, binned=binned)
    assert one == {**result["folds"][1], "metric": "rmse"}
    shuffled = [cross_validate_fold(body, loaded, k, 3, 2, binned=binned) for k in (2, 0, 1)]
    assert summarise_folds(shuffled) == result

    # Binned from its own training rows (a fold task alone with the file), the fold differs a
    # little (other bin edges) and is the same whether it reads the file or the loaded rows.
    alone = cross_validate_fold(body, data_file, 1, 3, 2)
    assert alone == cross_validate_fold(body, loaded, 1, 3, 2)
    assert alone["metric_value"] == pytest.approx(one["metric_value"], rel=0.1)


def test_a_fold_is_what_lightgbm_cv_reports_for_it(data_file: Path) -> None:
    body = payload_for("churn", folds=4, n_estimators=12, metric="auc")
    p = LightGBMTrainPayload.model_validate(body)
    ds = load_dataset(p, data_file)
    binned = bin_rows(p, ds, 1)
    ours = cross_validate_fold(p, ds, 2, 4, 1, binned=binned)
    assignment = fold_of_rows(ds, p, 4)
    rows = (np.flatnonzero(assignment != 2), np.flatnonzero(assignment == 2))
    params = lightgbm_params(p, ds, "auc", 1)
    theirs = lgb.cv(params, bin_rows(p, ds, 1), num_boost_round=12, folds=[rows])
    curve = np.asarray(theirs["valid auc-mean"])
    assert ours["best_iteration"] == int(np.argmax(curve)) + 1
    assert ours["metric_value"] == pytest.approx(curve.max(), rel=1e-9)


def test_more_folds_than_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(4)))
    body = {"dataset_ref": "art_test", "target_column": "y", "folds": 5}
    with pytest.raises(ValueError, match=r"folds: 5 is larger than the dataset's 4 rows"):
        cross_validate_fold(body, path, 0, 5, 1)
    with pytest.raises(ValueError, match=r"fold 5 is outside 0\.\.4"):
        cross_validate_fold(body, path, 5, 5, 1)
    with pytest.raises(ValueError, match="no fold results"):
        summarise_folds([])


def test_the_metric_fixes_the_objective(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    # auc scores binary models only: three classes cannot be one.
    with pytest.raises(
        ValueError, match="target_column: 'y' has 3 classes: binary needs exactly two"
    ):
        train({"dataset_ref": "art_t", "target_column": "y", "metric": "auc"}, path, tmp_path)
    # rmse makes the same integral target a regression one.
    body = {"dataset_ref": "art_t", "target_column": "y", "metric": "rmse", "n_estimators": 3}
    assert train(body, path, tmp_path / "o")["objective"] == "regression"


def test_too_few_rows_to_split(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,y\n1,0.5\n2,1.5\n")
    with pytest.raises(ValueError, match=r"test_size: 2 rows cannot be split with test_size 0\.2"):
        train({"dataset_ref": "art_t", "target_column": "y"}, path, tmp_path)
