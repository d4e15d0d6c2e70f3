"""The lightgbm_train payload: every field and default of the contract, and clear refusals."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from recipes.lightgbm_train.schema import (
    METRICS_BY_OBJECTIVE,
    OBJECTIVE_OF_METRIC,
    LightGBMTrainPayload,
)

BASE = {"dataset_ref": "art_AbCdEfGhIjKlMnOpQrStUv", "target_column": "y"}


def _refusal(**fields: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        LightGBMTrainPayload.model_validate({**BASE, **fields})
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return dict(errors[0])


def test_defaults_are_the_contracts() -> None:
    payload = LightGBMTrainPayload.model_validate(BASE)
    assert payload.model_dump() == {
        "operation": "train",
        "dataset_ref": BASE["dataset_ref"],
        "target_column": "y",
        "objective": None,
        "metric": None,
        "seed": 42,
        "n_estimators": 200,
        "num_leaves": 31,
        "learning_rate": 0.05,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "test_size": 0.2,
        "folds": 5,
        "weight_column": None,
        "categorical_columns": [],
        "drop_columns": [],
        "row_limit": None,
        "stratified": True,
    }


def test_every_metric_belongs_to_one_objective() -> None:
    metrics = [m for ms in METRICS_BY_OBJECTIVE.values() for m in ms]
    assert sorted(metrics) == sorted(
        ["rmse", "mae", "binary_logloss", "auc", "multi_logloss", "multi_error"]
    )
    assert OBJECTIVE_OF_METRIC["auc"] == "binary"
    payload = LightGBMTrainPayload.model_validate({**BASE, "metric": "multi_error"})
    assert payload.resolved_objective_hint() == "multiclass"
    assert LightGBMTrainPayload.model_validate(BASE).resolved_objective_hint() is None


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"surprise": 1}, ("surprise",), "Extra inputs"),
        ({"objective": "ranking"}, ("objective",), "regression"),
        ({"objective": "regression", "metric": "auc"}, ("metric",), "does not score"),
        ({"objective": "binary", "metric": "multi_error"}, ("metric",), "binary_logloss"),
        ({"dataset_ref": "job_x"}, ("dataset_ref",), "pattern"),
        ({"target_column": ""}, ("target_column",), "at least 1"),
        ({"test_size": 1.0}, ("test_size",), "less than 1"),
        ({"test_size": 0}, ("test_size",), "greater than 0"),
        ({"folds": 1}, ("folds",), "greater than or equal to 2"),
        ({"n_estimators": 0}, ("n_estimators",), "greater than or equal to 1"),
        ({"learning_rate": float("nan")}, ("learning_rate",), "finite"),
        ({"feature_fraction": 1.5}, ("feature_fraction",), "less than or equal to 1"),
        ({"row_limit": 0}, ("row_limit",), "greater than or equal to 1"),
        ({"weight_column": "y"}, ("weight_column",), "cannot be the target_column"),
        ({"drop_columns": ["a", "y"]}, ("drop_columns",), "target_column 'y'"),
        ({"categorical_columns": ["y"]}, ("categorical_columns",), "target_column"),
        (
            {"weight_column": "w", "categorical_columns": ["w"]},
            ("categorical_columns",),
            "weight_column 'w'",
        ),
        ({"drop_columns": ["a", "a"]}, ("drop_columns",), "more than once"),
        (
            {"categorical_columns": ["c"], "drop_columns": ["c"]},
            ("drop_columns",),
            "also in categorical_columns",
        ),
        ({"operation": "predict"}, ("operation",), "cross_validate"),
    ],
)
def test_a_bad_field_is_named(fields: dict[str, Any], loc: tuple[str, ...], words: str) -> None:
    error = _refusal(**fields)
    assert tuple(error["loc"]) == loc
    assert words in error["msg"]


def test_a_full_payload_round_trips() -> None:
    full = {
        **BASE,
        "operation": "cross_validate",
        "objective": "multiclass",
        "metric": "multi_error",
        "seed": 7,
        "n_estimators": 10,
        "num_leaves": 7,
        "learning_rate": 0.3,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.7,
        "test_size": 0.3,
        "folds": 3,
        "weight_column": "w",
        "categorical_columns": ["c"],
        "drop_columns": ["id"],
        "row_limit": 1000,
        "stratified": False,
    }
    assert LightGBMTrainPayload.model_validate(full).model_dump() == full
    schema = LightGBMTrainPayload.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["dataset_ref", "target_column"]
