"""A ``lightgbm_train`` dataset as arrays LightGBM trains on (docs/recipes.md, "lightgbm_train").

:mod:`~recipes.lightgbm_train.formats` reads the file (CSV, TSV, JSONL or Parquet); the columns
become one float64 feature matrix (column-major, so LightGBM reads it without a copy).
Everything the payload cannot show at submit time is checked here and refused with an
:class:`~recipes.lightgbm_train.problems.InputProblem` naming the field and the problem: the
job fails with that message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recipes.lightgbm_train.formats import detect_format, read_table
from recipes.lightgbm_train.problems import InputProblem
from recipes.lightgbm_train.schema import LightGBMTrainPayload

#: An integral numeric target with at most this many distinct values is taken as classes.
MAX_INFERRED_CLASSES = 10
#: More classes than this is almost surely an id column given as the target.
MAX_CLASSES = 1000


@dataclass
class Dataset:
    """A dataset ready for LightGBM: features, encoded target, weights and how they were made."""

    features: np.ndarray  # (rows, columns) float64, NaN for missing
    feature_names: list[str]
    categorical: list[int]  # indices into feature_names
    target: np.ndarray  # float64; class index for classification
    weight: np.ndarray | None
    objective: str
    classes: list[Any] | None = None  # class labels in index order (classification)
    categories: dict[str, list[Any]] = field(default_factory=dict)  # code -> value per column

    @property
    def rows(self) -> int:
        return int(self.target.shape[0])

    def describe(self) -> dict[str, Any]:
        """What a user needs to feed new rows to the saved model (written beside it)."""
        return {
            "objective": self.objective,
            "feature_names": self.feature_names,
            "categorical_features": [self.feature_names[i] for i in self.categorical],
            "categories": self.categories,
            "classes": self.classes,
        }


def _numeric(column: pa.ChunkedArray) -> bool:
    t = column.type
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_null(t)
    )


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """float64 values, NaN for nulls."""
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    cast = pc.cast(column, pa.float64())
    return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Each value's index among the column's sorted distinct values (NaN for nulls)."""
    values = pc.unique(column.combine_chunks()).drop_null()
    values = values.take(pc.sort_indices(values))
    codes = pc.index_in(column, value_set=values)
    return _floats(pa.chunked_array([codes.combine_chunks()])), values.to_pylist()


def _require(table: pa.Table, names: list[str], field: str) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        shown = table.column_names[:20]
        more = " …" if table.num_columns > 20 else ""
        raise InputProblem(
            field, f"{missing[0]!r} is not a column of the dataset (columns: {shown}{more})"
        )


def _objective(target: pa.ChunkedArray, hint: str | None) -> str:
    """The objective the payload gives, or the one the target's values suggest."""
    if hint is not None:
        return hint
    if not _numeric(target) or pa.types.is_boolean(target.type):
        classes = len(pc.unique(target).drop_null())
    else:
        values = _floats(target)
        distinct = np.unique(values)
        if len(distinct) > MAX_INFERRED_CLASSES or not np.all(np.mod(distinct, 1) == 0):
            return "regression"
        classes = len(distinct)
    return "binary" if classes <= 2 else "multiclass"


def _target(
    target: pa.ChunkedArray, name: str, objective: str
) -> tuple[np.ndarray, list[Any] | None]:
    if objective == "regression":
        if not _numeric(target) or pa.types.is_null(target.type):
            raise InputProblem(
                "target_column",
                f"{name!r} holds {target.type} values: regression needs a numeric target "
                "(or set objective to binary/multiclass)",
            )
        values = _floats(target)
        if not np.all(np.isfinite(values)):
            raise InputProblem("target_column", f"{name!r} has infinite values")
        return values, None
    codes, classes = _codes(target)
    if len(classes) < 2:
        shown = f" ({classes[0]!r})" if classes else ""
        raise InputProblem(
            "target_column",
            f"{name!r} has a single class{shown}: {objective} needs at least two",
        )
    if objective == "binary" and len(classes) > 2:
        raise InputProblem(
            "target_column",
            f"{name!r} has {len(classes)} classes: binary needs exactly two "
            "(use objective multiclass)",
        )
    if len(classes) > MAX_CLASSES:
        raise InputProblem(
            "target_column",
            f"{name!r} has {len(classes)} classes: multiclass supports at most "
            f"{MAX_CLASSES} (is it an id column?)",
        )
    return codes, classes


def _weights(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if not _numeric(column):
        raise InputProblem(
            "weight_column", f"{name!r} holds {column.type} values: weights are numbers"
        )
    weight = _floats(column)
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise InputProblem(
            "weight_column", f"{name!r} must be finite, non-negative and never missing"
        )
    if not np.any(weight > 0):
        raise InputProblem("weight_column", f"{name!r} is zero on every row")
    return weight


def prepare(table: pa.Table, payload: LightGBMTrainPayload) -> Dataset:
    """Check the table against the payload and encode it for LightGBM."""
    names = table.column_names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputProblem("dataset_ref", f"the dataset has duplicate column names: {twice}")
    _require(table, [payload.target_column], "target_column")
    if payload.weight_column is not None:
        _require(table, [payload.weight_column], "weight_column")
    _require(table, payload.categorical_columns, "categorical_columns")
    _require(table, payload.drop_columns, "drop_columns")
    # Rows without a target cannot teach anything.
    target_column = table.column(payload.target_column)
    if target_column.null_count:
        table = table.filter(pc.is_valid(target_column))
    if table.num_rows == 0:
        raise InputProblem(
            "target_column",
            f"the dataset is empty: it has no rows with a {payload.target_column!r} value",
        )
    target_column = table.column(payload.target_column)
    objective = _objective(target_column, payload.resolved_objective_hint())
    target, classes = _target(target_column, payload.target_column, objective)
    weight = _weights(table, payload.weight_column) if payload.weight_column else None

    skip = {payload.target_column, payload.weight_column, *payload.drop_columns}
    feature_names = [n for n in names if n not in skip]
    if not feature_names:
        raise InputProblem(
            "drop_columns",
            "no feature columns are left after the target, weight and drop columns",
        )
    features = np.empty((table.num_rows, len(feature_names)), dtype=np.float64, order="F")
    categorical: list[int] = []
    categories: dict[str, list[Any]] = {}
    wanted = set(payload.categorical_columns)
    for i, name in enumerate(feature_names):
        column = table.column(name)
        if name in wanted:
            features[:, i], categories[name] = _codes(column)
            categorical.append(i)
        elif _numeric(column):
            features[:, i] = _floats(column)
        else:
            raise InputProblem(
                "categorical_columns",
                f"feature column {name!r} holds {column.type} values: list it in "
                "categorical_columns or drop_columns",
            )
    return Dataset(
        features=features,
        feature_names=feature_names,
        categorical=categorical,
        target=target,
        weight=weight,
        objective=objective,
        classes=classes,
        categories=categories,
    )


def load_dataset(
    payload: LightGBMTrainPayload, path: str | Path, filename: str | None = None
) -> Dataset:
    """Read the file at ``path`` (its type from ``filename`` or the path) and prepare it."""
    fmt = detect_format(path, filename)
    table = read_table(path, fmt, payload.row_limit)
    return prepare(table, payload)
