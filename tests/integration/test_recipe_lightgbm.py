"""The ``lightgbm_train`` recipe through real HTTP and real Ray (docs/recipes.md,
"lightgbm_train"): datasets uploaded as artifacts, the model artifact loaded in plain LightGBM,
folds in parallel, and bad data ending as a failed task naming the problem."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recipes.lightgbm_train.dataset import load_dataset
from recipes.lightgbm_train.schema import LightGBMTrainPayload
from recipes.lightgbm_train.train import cross_validate, split_indices
from tests.support.helpers import assert_envelope, wait_job

API = "/api/v1"


def make_rows(n: int = 1500, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {f"f{i}": rng.normal(size=n) for i in range(5)}
    logit = 1.5 * cols["f0"] - cols["f1"] + 0.5 * cols["f2"] * cols["f3"]
    cols["label"] = (logit + rng.normal(scale=0.5, size=n) > 0).astype(np.int64)
    return cols


def csv_bytes(cols: dict[str, np.ndarray]) -> bytes:
    names = list(cols)
    lines = [",".join(names)]
    lines += [
        ",".join(repr(float(cols[c][i])) if c != "label" else str(int(cols[c][i])) for c in names)
        for i in range(len(cols["label"]))
    ]
    return ("\n".join(lines) + "\n").encode()


def upload(client: httpx.Client, data: bytes, filename: str) -> str:
    answer = client.post(
        f"{API}/artifacts", content=data, headers={"X-Artifact-Filename": filename}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def run_recipe(client: httpx.Client, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    answer = client.post(f"{API}/recipes/lightgbm_train/jobs", json={"payload": payload, **fields})
    assert answer.status_code == 201, answer.text
    job = wait_job(client, answer.json()["id"], timeout_s=180)
    return job


def results_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"{API}/results/{job_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def task_error(client: httpx.Client, job_id: str) -> dict[str, Any]:
    tasks = client.get(f"{API}/jobs/{job_id}/tasks").json()
    rows = tasks.get("tasks") or tasks.get("data") or tasks
    return dict(rows[0]["error"])


@pytest.fixture(scope="module")
def member(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account()


@pytest.fixture(scope="module")
def dataset(member: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    data = csv_bytes(make_rows())
    path = tmp_path_factory.mktemp("lgbm") / "train.csv"
    path.write_bytes(data)
    return upload(member, data, "train.csv"), path


def test_train_through_the_platform_and_its_model_reproduces_the_metric(
    member: httpx.Client, dataset: tuple[str, Path], tmp_path: Path
) -> None:
    art, path = dataset
    payload = {"dataset_ref": art, "target_column": "label", "n_estimators": 60, "seed": 7}
    job = run_recipe(member, payload, requirements={"cpu": 2})
    assert job["status"] == "completed", job
    assert job["recipe"] == "lightgbm_train"
    result = results_of(member, job["id"])["aggregate_result"]
    assert result["objective"] == "binary" and result["metric"] == "binary_logloss"
    assert result["n_train"] + result["n_valid"] == 1500
    assert set(result["feature_importance"]) == {f"f{i}" for i in range(5)}
    # The model artifact, loaded in plain LightGBM, on the held-out rows of the same split.
    model = member.get(f"{API}/artifacts/{result['model_artifact']}")
    assert model.status_code == 200
    model_file = tmp_path / "model.txt"
    model_file.write_bytes(model.content)
    booster = lgb.Booster(model_file=str(model_file))
    checked = LightGBMTrainPayload.model_validate(payload)
    ds = load_dataset(checked, path, "train.csv")
    _, valid = split_indices(ds, checked)
    p = np.clip(booster.predict(ds.features[valid]), 1e-15, 1 - 1e-15)
    y = ds.target[valid]
    logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert logloss == pytest.approx(result["metric_value"], rel=1e-9)
    assert len(valid) == result["n_valid"]
    events = member.get(f"{API}/jobs/{job['id']}/events").json()
    kinds = [e.get("type") or e.get("event") for e in events.get("events", events.get("data", []))]
    assert "progress" in kinds


def test_cross_validate_runs_folds_in_parallel_and_matches_the_sequential_folds(
    member: httpx.Client, dataset: tuple[str, Path]
) -> None:
    art, path = dataset
    payload = {
        "operation": "cross_validate",
        "dataset_ref": art,
        "target_column": "label",
        "n_estimators": 40,
        "folds": 4,
    }
    job = run_recipe(member, payload, requirements={"cpu": 2})
    assert job["status"] == "completed", job
    result = results_of(member, job["id"])["aggregate_result"]
    assert [f["fold"] for f in result["folds"]] == [0, 1, 2, 3]
    local = cross_validate(payload, path, num_threads=1, filename="train.csv")
    assert result["mean"] == pytest.approx(local["mean"], rel=1e-9)
    for ours, theirs in zip(result["folds"], local["folds"], strict=True):
        assert ours["best_iteration"] == theirs["best_iteration"]


def test_a_parquet_dataset_trains_a_regression(member: httpx.Client) -> None:
    cols = make_rows(800, seed=5)
    cols["label"] = cols["f0"] * 2.0 + cols["f1"]
    sink = io.BytesIO()
    pq.write_table(pa.table(cols), sink)
    art = upload(member, sink.getvalue(), "data.parquet")
    job = run_recipe(member, {"dataset_ref": art, "target_column": "label", "n_estimators": 30})
    assert job["status"] == "completed", job
    result = results_of(member, job["id"])["aggregate_result"]
    assert result["objective"] == "regression" and result["metric"] == "rmse"


@pytest.mark.parametrize(
    ("name", "data", "payload", "needle"),
    [
        ("missing target", None, {"target_column": "nope"}, "nope"),
        ("single class", "single", {"objective": "binary"}, "class"),
        ("empty", b"f0,label\n", {}, "empty"),
        ("unsupported", b"\x89PNG\r\n\x1a\n\x00\x00", {}, "dataset_ref"),
        ("more folds than rows", "tiny", {"operation": "cross_validate", "folds": 10}, "folds"),
        ("text regression target", "text", {"objective": "regression"}, "numeric"),
    ],
)
def test_bad_data_fails_the_task_with_a_message_naming_the_problem(
    member: httpx.Client, name: str, data: Any, payload: dict[str, Any], needle: str
) -> None:
    if data is None:
        data = csv_bytes(make_rows(100))
    elif data == "single":
        cols = make_rows(100)
        cols["label"] = np.ones(100, dtype=np.int64)
        data = csv_bytes(cols)
    elif data == "tiny":
        data = csv_bytes(make_rows(6))
    elif data == "text":
        data = b"f0,label\n1.0,a\n2.0,b\n3.0,c\n"
    filename = "data.png" if name == "unsupported" else "data.csv"
    art = upload(member, data, filename)
    body = {"dataset_ref": art, "target_column": "label", "n_estimators": 5, **payload}
    job = run_recipe(member, body, timeout_s=120)
    assert job["status"] == "failed", (name, job)
    error = task_error(member, job["id"])
    assert error["code"] == "invalid_input", error
    assert needle in error["message"].lower(), error
    assert "Traceback" not in error["message"]


def test_payload_errors_are_422_naming_the_field_at_submit(
    member: httpx.Client, new_account: Callable[..., httpx.Client], dataset: tuple[str, Path]
) -> None:
    art, _ = dataset
    answer = member.post(
        f"{API}/recipes/lightgbm_train/jobs",
        json={"payload": {"dataset_ref": art, "target_column": "label", "learning_rate": 0}},
    )
    err = assert_envelope(answer, 422, "validation_error")
    assert err["details"][0]["loc"] == ["payload", "learning_rate"]
    answer = member.post(
        f"{API}/recipes/lightgbm_train/jobs", json={"payload": {"dataset_ref": art}}
    )
    err = assert_envelope(answer, 422, "validation_error")
    assert ["payload", "target_column"] in [d["loc"] for d in err["details"]]
    stranger = new_account()
    answer = stranger.post(
        f"{API}/recipes/lightgbm_train/jobs",
        json={"payload": {"dataset_ref": art, "target_column": "label"}},
    )
    err = assert_envelope(answer, 422, "validation_error")
    assert err["details"][0]["loc"] == ["payload", "dataset_ref"]
