"""The ``lightgbm_train`` catalog entry (docs/recipes.md, "lightgbm_train").

Light: pydantic and the payload model only (the API process imports it). The operations live in
:mod:`recipes.lightgbm_train.operations`, imported by the worker that runs a job.
"""

from __future__ import annotations

from typing import Any

from recipes.lightgbm_train.schema import LightGBMTrainPayload
from recipes.registry import Operation, Recipe

_OPERATIONS = "recipes.lightgbm_train.operations"

_METRIC = {
    "type": "string",
    "enum": ["rmse", "mae", "binary_logloss", "auc", "multi_logloss", "multi_error"],
    "description": "The metric scored (the payload's, or the objective's default).",
}

TRAIN_RESULT: dict[str, Any] = {
    "type": "object",
    "description": "`train`: one model, scored on the held-out rows at its best round.",
    "required": [
        "objective",
        "metric",
        "metric_value",
        "best_iteration",
        "n_train",
        "n_valid",
        "feature_importance",
        "model_artifact",
    ],
    "properties": {
        "objective": {
            "type": "string",
            "enum": ["regression", "binary", "multiclass"],
            "description": "The objective trained (the payload's, or inferred).",
        },
        "metric": _METRIC,
        "metric_value": {
            "type": "number",
            "description": "The metric on the held-out rows at the best round; "
            "`lightgbm.Booster(model_file=...)` of the model artifact reproduces it.",
        },
        "best_iteration": {
            "type": "integer",
            "description": "The best boosting round (1-based); the saved model stops there.",
        },
        "n_train": {"type": "integer", "description": "Rows trained on."},
        "n_valid": {"type": "integer", "description": "Rows held out (`test_size`)."},
        "feature_importance": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "Total gain of each feature's splits, by column name.",
        },
        "model_artifact": {
            "type": "string",
            "description": "Artifact id of `model.txt`, LightGBM's text model.",
        },
        "preprocessing_artifact": {
            "type": "string",
            "description": "Artifact id of `preprocessing.json`: feature names in order, "
            "categorical codes and class labels, to encode new rows for the model.",
        },
    },
}

CROSS_VALIDATE_RESULT: dict[str, Any] = {
    "type": "object",
    "description": "`cross_validate`: one model per fold, each scored on the fold it did not "
    "see; the folds train in parallel.",
    "required": ["metric", "mean", "std", "folds"],
    "properties": {
        "metric": _METRIC,
        "mean": {"type": "number", "description": "Mean of the folds' metric values."},
        "std": {
            "type": "number",
            "description": "Population standard deviation of the folds' metric values.",
        },
        "folds": {
            "type": "array",
            "description": "Each fold in order.",
            "items": {
                "type": "object",
                "required": ["fold", "metric_value", "best_iteration"],
                "properties": {
                    "fold": {"type": "integer", "description": "0-based fold index."},
                    "metric_value": {
                        "type": "number",
                        "description": "The metric on the fold's rows at its best round.",
                    },
                    "best_iteration": {
                        "type": "integer",
                        "description": "The fold model's best boosting round (1-based).",
                    },
                },
            },
        },
    },
}

RECIPE = Recipe(
    name="lightgbm_train",
    description="Train LightGBM on a dataset artifact (CSV, TSV, JSONL or Parquet): one model "
    "scored on held-out rows, or k-fold cross-validation with the folds in parallel.",
    payload_model=LightGBMTrainPayload,
    operations=(
        Operation(
            "train",
            "Train one model on a hold-out split; the model file is stored as an artifact.",
            target=f"{_OPERATIONS}:run_train",
        ),
        Operation(
            "cross_validate",
            "Score `folds` models, one per fold, trained in parallel on the job's CPUs.",
            target=f"{_OPERATIONS}:run_cross_validate",
            fans_out=True,
        ),
    ),
    artifact_inputs=("dataset_ref",),
    result_schema={"oneOf": [TRAIN_RESULT, CROSS_VALIDATE_RESULT]},
    examples=(
        {
            "description": "Train a binary classifier on the `churned` column of a CSV uploaded "
            "as artifact art_… (replace with your dataset's id), scored by AUC on 20 % held out.",
            "payload": {
                "operation": "train",
                "dataset_ref": "art_replace_with_your_dataset",
                "target_column": "churned",
                "metric": "auc",
                "categorical_columns": ["plan"],
                "drop_columns": ["customer_id"],
                "n_estimators": 300,
                "learning_rate": 0.05,
            },
        },
        {
            "description": "5-fold cross-validation of a regression on `price` in a Parquet "
            "dataset artifact art_… (replace with your dataset's id), scored by RMSE.",
            "payload": {
                "operation": "cross_validate",
                "dataset_ref": "art_replace_with_your_dataset",
                "target_column": "price",
                "objective": "regression",
                "folds": 5,
                "n_estimators": 200,
                "num_leaves": 63,
            },
        },
    ),
)
