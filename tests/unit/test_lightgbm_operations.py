"""The lightgbm_train operations through a LocalContext: the published model reproduces the
reported metric in plain LightGBM, progress every few rounds, a stop before the deadline, folds
as parallel calls equal to the folds one after another, every bad input refused naming its
field, and the catalog entry."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import recipes.context
from recipes.context import LocalContext, RecipeFailure
from recipes.lightgbm_train import operations
from recipes.lightgbm_train.dataset import load_dataset
from recipes.lightgbm_train.folds import binned_rows, plan_waves, run_fold
from recipes.lightgbm_train.operations import run_cross_validate, run_train
from recipes.lightgbm_train.problems import InputProblem
from recipes.lightgbm_train.recipe import RECIPE
from recipes.lightgbm_train.schema import LightGBMTrainPayload
from recipes.lightgbm_train.train import (
    bin_rows,
    cross_validate,
    cross_validate_fold,
    split_indices,
    summarise_folds,
)

ROWS = 1500


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Features x0..x3, a text category, weights, a regression and a binary target."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(ROWS, 4))
    colour = rng.integers(0, 3, ROWS)
    signal = x[:, 0] * 2 + x[:, 1] - colour + rng.normal(scale=0.3, size=ROWS)
    table = pa.table(
        {
            "x0": x[:, 0],
            "x1": x[:, 1],
            "x2": x[:, 2],
            "x3": x[:, 3],
            "colour": np.array(["red", "green", "blue"])[colour],
            "w": rng.uniform(0.2, 3.0, ROWS),
            "price": signal * 10 + 100,
            "churn": np.where(signal > 1.2, "yes", "no"),
        }
    )
    path = tmp_path_factory.mktemp("lgb-ops") / "data.parquet"
    pq.write_table(table, path)
    return path


def payload(target: str = "price", **fields: Any) -> LightGBMTrainPayload:
    other = "churn" if target == "price" else "price"
    return LightGBMTrainPayload.model_validate(
        {
            "dataset_ref": "art_test",
            "target_column": target,
            "drop_columns": [other, "w"] if fields.get("weight_column") is None else [other],
            "categorical_columns": ["colour"],
            "n_estimators": 30,
            "num_leaves": 15,
            "learning_rate": 0.2,
            **fields,
        }
    )


def context(tmp_path: Path, data: Path, cpus: int = 2, **kw: Any) -> LocalContext:
    return LocalContext(tmp_path / "out", cpus=cpus, inputs={"dataset_ref": data}, **kw)


class PicklingContext(LocalContext):
    """As a Ray context: every parallel call's arguments and answer cross a process boundary
    (pickled), and what it was asked is recorded."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.waves: list[tuple[list[int], float]] = []

    def parallel(
        self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, num_cpus: float = 1
    ) -> list[Any]:
        self.waves.append(([int(call[3]) for call in calls], num_cpus))
        copied = [pickle.loads(pickle.dumps(call)) for call in calls]
        return [pickle.loads(pickle.dumps(fn(*args))) for args in copied]


@pytest.mark.parametrize(
    ("target", "fields", "metric"),
    [("price", {"weight_column": "w"}, "rmse"), ("churn", {"metric": "auc"}, "auc")],
)
def test_train_publishes_a_model_that_reproduces_its_metric(
    data_file: Path, tmp_path: Path, target: str, fields: dict[str, Any], metric: str
) -> None:
    p = payload(target, **fields)
    ctx = context(tmp_path, data_file)
    result = run_train(ctx, p)
    json.dumps(result, allow_nan=False)
    assert result["metric"] == metric
    assert result["model_artifact"] == ctx.published["model.txt"]
    assert result["preprocessing_artifact"] == ctx.published["preprocessing.json"]

    ds = load_dataset(p, data_file)
    _, valid = split_indices(ds, p)
    model = lgb.Booster(model_file=str(ctx.out_dir / "model.txt"))
    predicted = np.asarray(model.predict(ds.features[valid]))
    y = ds.target[valid]
    if metric == "rmse":
        assert ds.weight is not None
        expected = float(np.sqrt(np.average((y - predicted) ** 2, weights=ds.weight[valid])))
    else:
        pos, neg = predicted[y == 1], predicted[y == 0]
        wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        expected = float(wins.mean())
    assert abs(result["metric_value"] - expected) <= 1e-9


def test_train_reports_progress_every_few_rounds(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recipes.context, "PROGRESS_INTERVAL_S", 0.0)
    ctx = context(tmp_path, data_file)
    result = run_train(ctx, payload(n_estimators=30))
    rounds = [e for e in ctx.events if "iteration" in e]
    assert [e["iteration"] for e in rounds] == list(range(1, 31))
    assert [e["fraction"] for e in rounds] == [round(i / 30, 4) for i in range(1, 31)]
    assert all(e["metric"] == "rmse" and e["metric_value"] > 0 for e in rounds)
    best = [e["best_score"] for e in rounds]
    assert best == sorted(best, reverse=True)  # rmse: the best so far only falls
    assert ctx.events[0]["fraction"] == 0.0
    assert ctx.events[-1]["fraction"] == 1.0
    assert ctx.events[-1]["best_score"] == result["metric_value"]
    assert "trained 30 rounds" in ctx.events[-1]["message"]


def test_train_stops_before_the_deadline_with_the_best_round_so_far(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "MIN_MARGIN_S", 10_000.0)  # always short of time
    ctx = context(tmp_path, data_file)
    result = run_train(ctx, payload(n_estimators=500))
    assert result["best_iteration"] == 1
    assert lgb.Booster(model_file=str(ctx.out_dir / "model.txt")).current_iteration() == 1
    assert "stopped after round 1 of 500" in ctx.events[-1]["message"]


def test_cross_validate_in_parallel_equals_the_folds_one_after_another(
    data_file: Path, tmp_path: Path
) -> None:
    p = payload("churn", folds=5, n_estimators=20)
    ctx = PicklingContext(tmp_path / "out", cpus=2, inputs={"dataset_ref": data_file})
    result = run_cross_validate(ctx, p)
    # Two CPUs: four single-thread folds two at a time, then the fifth with both CPUs.
    assert ctx.waves == [([0, 1], 1), ([2, 3], 1), ([4], 2)]
    json.dumps(result, allow_nan=False)
    # The same folds one after another, each on as many threads as in its wave: the same.
    ds = load_dataset(p, data_file)
    binned = bin_rows(p, ds, 1)
    threads = [1, 1, 1, 1, 2]
    one_by_one = [cross_validate_fold(p, ds, k, 5, threads[k], binned=binned) for k in range(5)]
    assert result == summarise_folds(one_by_one)
    # On other thread counts LightGBM sums a metric in another order: equal to the last bits.
    sequential = cross_validate(p, data_file, num_threads=1)
    assert result["mean"] == pytest.approx(sequential["mean"], rel=1e-12)
    for ours, theirs in zip(result["folds"], sequential["folds"], strict=True):
        assert ours["best_iteration"] == theirs["best_iteration"]
        assert ours["metric_value"] == pytest.approx(theirs["metric_value"], rel=1e-12)
    assert [f["fold"] for f in result["folds"]] == [0, 1, 2, 3, 4]
    assert ctx.events[-1]["fraction"] == 1.0
    assert ctx.events[-1]["best_score"] == result["mean"]
    assert any("binning 1500 rows once" in e.get("message", "") for e in ctx.events)


def test_a_fold_past_its_deadline_answers_its_best_round_so_far(data_file: Path) -> None:
    p = payload(n_estimators=200)
    ds = load_dataset(p, data_file)
    binned = binned_rows(p, ds, 1)
    done = run_fold(p, ds, binned, 2, 5, 1, stop_at=0.0)
    assert (done["fold"], done["best_iteration"], done["stopped_at"]) == (2, 1, 1)
    whole = run_fold(p, ds, binned, 2, 5, 1)
    assert whole["stopped_at"] is None and whole["best_iteration"] > 1


@pytest.mark.parametrize(
    ("folds", "cpus", "waves"),
    [
        (5, 2, [([0, 1], 1), ([2, 3], 1), ([4], 2)]),
        (5, 1, [([0], 1), ([1], 1), ([2], 1), ([3], 1), ([4], 1)]),
        (5, 4, [([0, 1, 2, 3], 1), ([4], 4)]),
        (5, 5, [([0, 1, 2, 3, 4], 1)]),
        (3, 8, [([0, 1, 2], 2)]),
        (10, 4, [([0, 1, 2, 3], 1), ([4, 5, 6, 7], 1), ([8, 9], 2)]),
        (4, 2, [([0, 1], 1), ([2, 3], 1)]),
    ],
)
def test_the_folds_share_the_jobs_cpus(
    folds: int, cpus: int, waves: list[tuple[list[int], int]]
) -> None:
    assert plan_waves(folds, cpus) == waves
    assert all(len(wave) * threads <= cpus for wave, threads in waves)


def _csv(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


NUMBERS = "a,b,y\n" + "".join(f"{i},{i % 7},{i * 0.5}\n" for i in range(20))


@pytest.mark.parametrize("operation", ["train", "cross_validate"])
@pytest.mark.parametrize(
    ("name", "content", "fields", "words"),
    [
        ("d.csv", NUMBERS, {"target_column": "nope"}, "target_column: 'nope' is not a column"),
        (
            "d.csv",
            "a,y\n" + "".join(f"{i},t{i}\n" for i in range(20)),
            {"objective": "regression"},
            "target_column: 'y' holds string values: regression needs a numeric target",
        ),
        (
            "d.csv",
            "a,y\n" + "".join(f"{i},yes\n" for i in range(20)),
            {"objective": "binary"},
            "target_column: 'y' has a single class ('yes'): binary needs at least two",
        ),
        (
            "d.xlsx",
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",
            {},
            "dataset_ref: unsupported dataset file type 'd.xlsx'",
        ),
        ("d.csv", "", {}, "dataset_ref: the dataset is empty"),
        ("d.csv", "a,b,y\n", {}, "dataset_ref: the dataset is empty"),
        ("d.csv", NUMBERS, {"weight_column": "w"}, "weight_column: 'w' is not a column"),
        (
            "d.csv",
            NUMBERS,
            {"categorical_columns": ["c"]},
            "categorical_columns: 'c' is not a column",
        ),
        ("d.csv", NUMBERS, {"drop_columns": ["z"]}, "drop_columns: 'z' is not a column"),
    ],
)
def test_bad_input_is_a_failure_naming_its_field(
    tmp_path: Path,
    operation: str,
    name: str,
    content: str | bytes,
    fields: dict[str, Any],
    words: str,
) -> None:
    body = {"dataset_ref": "art_test", "target_column": "y", "n_estimators": 3, **fields}
    p = LightGBMTrainPayload.model_validate({"operation": operation, **body})
    run = run_train if operation == "train" else run_cross_validate
    with pytest.raises(RecipeFailure) as caught:
        run(context(tmp_path, _csv(tmp_path, name, content)), p)
    assert caught.value.code == "invalid_input"
    assert words in caught.value.message
    assert not (tmp_path / "out" / "model.txt").exists()


def test_more_folds_than_rows_is_refused_before_any_fold_runs(tmp_path: Path) -> None:
    path = _csv(tmp_path, "d.csv", "a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(4)))
    p = LightGBMTrainPayload.model_validate(
        {"operation": "cross_validate", "dataset_ref": "art_t", "target_column": "y", "folds": 5}
    )
    ctx = PicklingContext(tmp_path / "out", cpus=2, inputs={"dataset_ref": path})
    with pytest.raises(RecipeFailure, match="folds: 5 is larger than the dataset's 4 rows"):
        run_cross_validate(ctx, p)
    assert ctx.waves == []


def test_a_refusal_survives_the_trip_back_from_a_task() -> None:
    problem = pickle.loads(pickle.dumps(InputProblem("folds", "too many")))
    assert isinstance(problem, RecipeFailure) and isinstance(problem, ValueError)
    assert (problem.message, problem.code, problem.field) == (
        "folds: too many",
        "invalid_input",
        "folds",
    )


def test_the_catalog_entry(tmp_path: Path) -> None:
    assert RECIPE.name == "lightgbm_train"
    assert [op.name for op in RECIPE.operations] == ["train", "cross_validate"]
    assert RECIPE.default_operation == "train"
    assert RECIPE.artifact_inputs == ("dataset_ref",)
    assert RECIPE.operation("train").load() is run_train
    assert RECIPE.operation("cross_validate").load() is run_cross_validate
    assert RECIPE.operation("cross_validate").fans_out
    for example in RECIPE.examples:
        assert "art_" in example["description"]
        RECIPE.payload_model.model_validate(example["payload"])
    schema = RECIPE.payload_model.model_json_schema()
    assert all("description" in field for field in schema["properties"].values())
    assert {s["description"][:8] for s in RECIPE.result_schema["oneOf"]} == {
        "`train`:",
        "`cross_v",
    }
    # The API process imports the entry: nothing heavy comes with it.
    probe = (
        "import sys, recipes.lightgbm_train.recipe, recipes.lightgbm_train.schema; "
        "print(sorted(m for m in ('numpy', 'lightgbm', 'pyarrow', 'scipy') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
