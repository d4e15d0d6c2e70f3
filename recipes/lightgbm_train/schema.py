"""The ``lightgbm_train`` payload (docs/recipes.md, "lightgbm_train").

Every field and default of the contract, checked before a job is created: a payload that breaks
a rule here is a 422 naming the field, so only what depends on the dataset's contents (a missing
column, a single-class target, more folds than rows) is left for the kernel to refuse.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Objective = Literal["regression", "binary", "multiclass"]
Metric = Literal["rmse", "mae", "binary_logloss", "auc", "multi_logloss", "multi_error"]
Operation = Literal["train", "cross_validate"]

#: The metrics each objective can be scored with; the first is the one inferred.
METRICS_BY_OBJECTIVE: dict[str, tuple[str, ...]] = {
    "regression": ("rmse", "mae"),
    "binary": ("binary_logloss", "auc"),
    "multiclass": ("multi_logloss", "multi_error"),
}

#: The objective a metric implies when only the metric is given.
OBJECTIVE_OF_METRIC: dict[str, str] = {
    metric: objective for objective, metrics in METRICS_BY_OBJECTIVE.items() for metric in metrics
}


class LightGBMTrainPayload(BaseModel):
    """Train one LightGBM model on a hold-out split (``train``) or score k folds
    (``cross_validate``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    operation: Operation = Field(
        "train", description="`train` (one model, hold-out metric) or `cross_validate` (k folds)."
    )
    dataset_ref: str = Field(
        pattern=r"^art_[A-Za-z0-9_-]+$",
        description="Artifact id of the dataset: CSV, TSV, JSONL or Parquet.",
    )
    target_column: str = Field(min_length=1, max_length=256, description="Column to predict.")
    objective: Objective | None = Field(
        None,
        description="Inferred when absent: from the metric if given, else from the target "
        "(non-numeric or integral with at most 10 values: binary/multiclass; else regression).",
    )
    metric: Metric | None = Field(
        None,
        description="Inferred when absent: rmse, binary_logloss or multi_logloss.",
    )
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seeds the split, folds and LightGBM.")
    n_estimators: int = Field(200, ge=1, le=100_000, description="Boosting rounds.")
    num_leaves: int = Field(31, ge=2, le=131_072, description="Most leaves of one tree.")
    learning_rate: float = Field(0.05, gt=0, le=1, description="Shrinkage of each round.")
    feature_fraction: float = Field(
        1.0, gt=0, le=1, description="Share of the features each tree is grown on."
    )
    bagging_fraction: float = Field(
        1.0, gt=0, le=1, description="Share of the rows each round trains on (below 1: bagging)."
    )
    test_size: float = Field(0.2, gt=0, lt=1, description="Share of rows held out by `train`.")
    folds: int = Field(5, ge=2, le=100, description="Folds of `cross_validate`.")
    weight_column: str | None = Field(
        None, min_length=1, max_length=256, description="Column of non-negative row weights."
    )
    categorical_columns: list[str] = Field(
        default_factory=list,
        max_length=10_000,
        description="Feature columns whose values are categories (text columns must be listed "
        "here or in drop_columns).",
    )
    drop_columns: list[str] = Field(
        default_factory=list, max_length=10_000, description="Columns that are not features."
    )
    row_limit: int | None = Field(None, ge=1, description="Use only the first rows of the file.")
    stratified: bool = Field(True, description="Keep class shares in every split (classification).")

    @field_validator("metric")
    @classmethod
    def _metric_fits_objective(cls, metric: str | None, info: ValidationInfo) -> str | None:
        objective = info.data.get("objective")
        if metric is not None and objective is not None:
            allowed = METRICS_BY_OBJECTIVE[objective]
            if metric not in allowed:
                raise ValueError(
                    f"metric {metric!r} does not score objective {objective!r}; "
                    f"use one of {list(allowed)} or leave metric out"
                )
        return metric

    @field_validator("weight_column")
    @classmethod
    def _weight_is_not_target(cls, column: str | None, info: ValidationInfo) -> str | None:
        if column is not None and column == info.data.get("target_column"):
            raise ValueError("weight_column cannot be the target_column")
        return column

    @field_validator("categorical_columns", "drop_columns")
    @classmethod
    def _columns_are_features(cls, columns: list[str], info: ValidationInfo) -> list[str]:
        field = info.field_name
        for column in columns:
            if not 1 <= len(column) <= 256:
                raise ValueError(f"{field}: a column name has 1 to 256 characters")
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        if duplicates:
            raise ValueError(f"{field}: {duplicates} listed more than once")
        roles = {
            "target_column": info.data.get("target_column"),
            "weight_column": info.data.get("weight_column"),
        }
        for role, name in roles.items():
            if name is not None and name in columns:
                raise ValueError(f"{field} cannot list the {role} {name!r}")
        if field == "drop_columns":
            both = sorted(set(columns) & set(info.data.get("categorical_columns") or ()))
            if both:
                raise ValueError(f"drop_columns: {both} are also in categorical_columns")
        return columns

    def resolved_objective_hint(self) -> str | None:
        """The objective the payload fixes (given, or implied by the metric); None leaves it to
        the target's values."""
        if self.objective is not None:
            return self.objective
        if self.metric is not None:
            return OBJECTIVE_OF_METRIC[self.metric]
        return None
