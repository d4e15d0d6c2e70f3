"""Reading lightgbm_train datasets: the four formats alike, the payload's column options, and a
refusal naming the field and the problem for everything the payload could not show."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from recipes.context import RecipeFailure
from recipes.lightgbm_train.dataset import load_dataset
from recipes.lightgbm_train.formats import detect_format
from recipes.lightgbm_train.schema import LightGBMTrainPayload

ROWS = 300


def payload(**fields: Any) -> LightGBMTrainPayload:
    return LightGBMTrainPayload.model_validate(
        {"dataset_ref": "art_test", "target_column": "y", **fields}
    )


def sample_table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(rows, 3)), 6)
    return pa.table(
        {
            "x0": x[:, 0],
            "x1": x[:, 1],
            "n": rng.integers(0, 100, rows),
            "colour": np.array(["red", "green", "blue"])[rng.integers(0, 3, rows)],
            "w": np.round(rng.uniform(0.5, 2.0, rows), 6),
            "y": np.round(x[:, 0] * 3 + x[:, 2], 6),
            "label": np.array(["no", "yes"])[(x[:, 0] > 0).astype(int)],
            "kind": rng.integers(0, 4, rows),
        }
    )


def write(table: pa.Table, path: Path) -> Path:
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(table, path)
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        lines = "".join(json.dumps(row) + "\n" for row in table.to_pylist())
        opener: Any = gzip.open if name.endswith(".gz") else open
        with opener(path, "wt") as fh:
            fh.write(lines)
    else:
        delimiter = "\t" if ".tsv" in name else ","
        options = pa_csv.WriteOptions(delimiter=delimiter, quoting_style="none")
        if name.endswith(".gz"):
            with pa.CompressedOutputStream(str(path), "gzip") as out:
                pa_csv.write_csv(table, out, options)
        else:
            pa_csv.write_csv(table, path, options)
    return path


@pytest.mark.parametrize(
    "name", ["d.csv", "d.tsv", "d.jsonl", "d.parquet", "d.csv.gz", "d.jsonl.gz", "d.ndjson"]
)
def test_every_format_reads_the_same_arrays(tmp_path: Path, name: str) -> None:
    table = sample_table()
    reference = load_dataset(
        payload(categorical_columns=["colour"], drop_columns=["label"], weight_column="w"),
        write(table, tmp_path / "ref.parquet"),
    )
    path = write(table, tmp_path / name)
    ds = load_dataset(
        payload(categorical_columns=["colour"], drop_columns=["label"], weight_column="w"), path
    )
    assert ds.feature_names == ["x0", "x1", "n", "colour", "kind"]
    assert ds.categorical == [3]
    assert ds.categories == {"colour": ["blue", "green", "red"]}
    assert ds.objective == "regression"
    np.testing.assert_array_equal(ds.features, reference.features)
    np.testing.assert_array_equal(ds.target, table.column("y").to_numpy())
    assert ds.weight is not None
    np.testing.assert_array_equal(ds.weight, table.column("w").to_numpy())
    colours = table.column("colour").to_pylist()
    assert [ds.categories["colour"][int(c)] for c in ds.features[:, 3]] == colours


def test_the_artifact_filename_decides_the_format(tmp_path: Path) -> None:
    path = write(sample_table(), tmp_path / "d.parquet").rename(tmp_path / "blob")
    assert detect_format(path, "train.parquet") == "parquet"
    ds = load_dataset(payload(drop_columns=["colour", "label"]), path, filename="train.parquet")
    assert ds.rows == ROWS


def test_row_limit_and_drop_columns(tmp_path: Path) -> None:
    path = write(sample_table(), tmp_path / "d.csv")
    ds = load_dataset(payload(row_limit=50, drop_columns=["colour", "label", "w"]), path)
    assert ds.rows == 50
    assert ds.feature_names == ["x0", "x1", "n", "kind"]
    assert ds.weight is None
    np.testing.assert_array_equal(ds.target, sample_table().column("y").to_numpy()[:50])


@pytest.mark.parametrize(
    ("target", "objective", "classes"),
    [
        ("y", "regression", None),
        ("label", "binary", ["no", "yes"]),
        ("kind", "multiclass", [0, 1, 2, 3]),
        ("n", "regression", None),  # integral but 100 distinct values
    ],
)
def test_the_objective_is_inferred_from_the_target(
    tmp_path: Path, target: str, objective: str, classes: list[Any] | None
) -> None:
    path = write(sample_table(), tmp_path / "d.parquet")
    others = [c for c in ("y", "label", "kind", "n") if c != target]
    ds = load_dataset(
        payload(target_column=target, drop_columns=["colour", *others]),
        path,
    )
    assert ds.objective == objective
    assert ds.classes == classes
    if classes is not None:
        raw = sample_table().column(target).to_pylist()
        assert [classes[int(i)] for i in ds.target] == raw


def test_the_metric_implies_the_objective(tmp_path: Path) -> None:
    path = write(sample_table(), tmp_path / "d.parquet")
    ds = load_dataset(
        payload(target_column="kind", metric="rmse", drop_columns=["colour", "label", "y"]), path
    )
    assert ds.objective == "regression"


def test_rows_without_a_target_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,y\n1,0.5\n2,\n3,1.5\n4,NA\n")
    ds = load_dataset(payload(), path)
    assert ds.rows == 2
    np.testing.assert_array_equal(ds.features[:, 0], [1.0, 3.0])


def test_missing_feature_values_are_nan(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,c,y\n1,u,0.5\n,,1.0\n3,v,1.5\n")
    ds = load_dataset(payload(categorical_columns=["c"]), path)
    assert np.isnan(ds.features[1, 0]) and np.isnan(ds.features[1, 1])
    assert ds.features[2, 1] == 1.0


XLSX_HEAD = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00"


@pytest.mark.parametrize(
    ("name", "content", "fields", "words"),
    [
        ("d.csv", "a,b\n1,2\n", {}, "target_column: 'y' is not a column"),
        ("d.csv", "a,y\n1,x\n2,z\n", {"objective": "regression"}, "regression needs a numeric"),
        ("d.csv", "a,y\n1,x\n2,z\n3,x\n", {"metric": "mae"}, "regression needs a numeric"),
        (
            "d.csv",
            "a,y\n1,1\n2,1\n",
            {"objective": "binary"},
            "target_column: 'y' has a single class (1)",
        ),
        ("d.csv", "a,y\n1,s\n2,s\n", {}, "target_column: 'y' has a single class ('s')"),
        (
            "d.csv",
            "a,y\n1,0\n2,1\n3,2\n",
            {"objective": "binary"},
            "target_column: 'y' has 3 classes: binary",
        ),
        ("d.xlsx", XLSX_HEAD, {}, "dataset_ref: unsupported dataset file type 'd.xlsx'"),
        ("data", "a;y\n1;2\n", {}, "dataset_ref: unsupported dataset file type 'data'"),
        ("d.csv", "", {}, "dataset_ref: the dataset is empty"),
        ("d.csv", "a,y\n", {}, "dataset_ref: the dataset is empty"),
        ("d.jsonl", "", {}, "dataset_ref: the dataset is empty"),
        (
            "d.csv",
            "a,y\n1,\n2,\n",
            {},
            "target_column: the dataset is empty: it has no rows with a 'y' value",
        ),
        (
            "d.csv",
            "a,y\nfoo,1\nbar,2\n",
            {},
            "categorical_columns: feature column 'a' holds string",
        ),
        ("d.csv", "a,y\n1,2\n", {"drop_columns": ["zz"]}, "drop_columns: 'zz' is not a column"),
        (
            "d.csv",
            "a,y\n1,2\n",
            {"categorical_columns": ["c"]},
            "categorical_columns: 'c' is not a column",
        ),
        ("d.csv", "a,y\n1,2\n", {"weight_column": "w"}, "weight_column: 'w' is not a column"),
        (
            "d.csv",
            "a,w,y\n1,-1,2.5\n2,1,3.5\n",
            {"weight_column": "w"},
            "weight_column: 'w' must be finite, non-negative",
        ),
        (
            "d.csv",
            "a,w,y\n1,0,2.5\n2,0,3.5\n",
            {"weight_column": "w"},
            "weight_column: 'w' is zero on every row",
        ),
        (
            "d.csv",
            "a,w,y\n1,x,2.5\n2,z,3.5\n",
            {"weight_column": "w"},
            "weight_column: 'w' holds string values: weights are numbers",
        ),
        ("d.csv", "a,y\n1,2.5\n", {"drop_columns": ["a"]}, "drop_columns: no feature columns"),
        (
            "d.csv",
            "a,a,y\n1,2,3\n",
            {},
            "dataset_ref: the dataset has duplicate column names: ['a']",
        ),
        (
            "d.parquet",
            "not parquet at all",
            {},
            "dataset_ref: the dataset could not be read as parquet",
        ),
        (
            "d.jsonl",
            '{"a": 1, "y": 2}\n{"a": \n',
            {},
            "dataset_ref: the dataset could not be read as jsonl",
        ),
    ],
)
def test_bad_data_is_refused_naming_the_field(
    tmp_path: Path, name: str, content: str | bytes, fields: dict[str, Any], words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(RecipeFailure) as caught:
        load_dataset(payload(**fields), path)
    assert isinstance(caught.value, ValueError)  # for callers using the kernels as a library
    assert caught.value.code == "invalid_input"
    assert words in caught.value.message
    assert "Traceback" not in caught.value.message


@pytest.mark.parametrize(
    ("blob", "fmt"),
    [
        ("d.csv", "csv"),
        ("d.tsv", "tsv"),
        ("d.jsonl", "jsonl"),
        ("d.parquet", "parquet"),
        ("d.csv.gz", "csv"),
        ("d.jsonl.gz", "jsonl"),
    ],
)
def test_a_name_without_a_known_suffix_is_read_by_its_content(
    tmp_path: Path, blob: str, fmt: str
) -> None:
    path = write(sample_table(), tmp_path / blob).rename(tmp_path / "upload.bin")
    assert detect_format(path) == fmt
    assert detect_format(path, "dataset") == fmt
    ds = load_dataset(payload(drop_columns=["colour", "label"]), path, filename="dataset")
    assert ds.rows == ROWS


def test_a_boolean_target_is_binary_and_too_many_classes_are_refused(tmp_path: Path) -> None:
    table = pa.table({"a": [1.0, 2.0, 3.0, 4.0], "y": [True, False, True, None]})
    ds = load_dataset(payload(), write(table, tmp_path / "b.parquet"))
    assert (ds.objective, ds.classes, ds.target.tolist()) == ("binary", [False, True], [1, 0, 1])
    ids = pa.table({"a": np.arange(1200.0), "y": [f"id{i}" for i in range(1200)]})
    with pytest.raises(ValueError, match="1200 classes: multiclass supports at most 1000"):
        load_dataset(payload(), write(ids, tmp_path / "ids.parquet"))


def test_an_empty_parquet_file_is_refused(tmp_path: Path) -> None:
    path = write(sample_table().slice(0, 0), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="empty"):
        load_dataset(payload(drop_columns=["colour", "label"]), path)
