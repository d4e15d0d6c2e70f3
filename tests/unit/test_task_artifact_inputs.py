"""Artifact inputs named by a submit (docs/llms-full.md, "Artifact inputs"): the shapes refused
with a 422 naming the field, the ids collected from a payload, its fan-out and a manifest, and
the downloads a launched task gets."""

from __future__ import annotations

import pytest

from computalot.artifacts.inputs import (
    manifest_refs,
    parse_downloads,
    payload_refs,
    safe_relative,
    task_inputs,
)
from computalot.errors import ValidationFailed

ART = "art_abcDEF123"


def loc_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str | int]:
    return list(exc.value.details[0]["loc"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("inputs/data.parquet", "inputs/data.parquet"),
        ("./a//b", "a/b"),
        ("a/./b", "a/b"),
        ("/etc/passwd", None),
        ("../x", None),
        ("a/../../x", None),
        ("a/../b", None),  # '..' anywhere is refused, even when it would stay inside
        (".", None),
        ("", None),
        ("a\\b", None),
        ("a\x00b", None),
        (7, None),
    ],
)
def test_paths_stay_inside_the_working_directory(value: object, expected: str | None) -> None:
    assert safe_relative(value) == expected


def test_a_download_list_parses_into_ids_and_normalised_paths() -> None:
    spec = {"download": [{"id": ART, "path": "in/a"}, {"id": "art_2", "path": "b"}]}
    found = parse_downloads(spec, ["payload", "_artifacts"])
    assert found == [(0, ART, "in/a"), (1, "art_2", "b")]


@pytest.mark.parametrize(
    ("spec", "loc"),
    [
        ([], ["_artifacts"]),
        ({"upload": []}, ["_artifacts", "upload"]),
        ({"download": {}}, ["_artifacts", "download"]),
        ({"download": ["art_x"]}, ["_artifacts", "download", 0]),
        ({"download": [{"id": ART}]}, ["_artifacts", "download", 0]),
        ({"download": [{"id": "job_x", "path": "a"}]}, ["_artifacts", "download", 0, "id"]),
        ({"download": [{"id": ART, "path": "../a"}]}, ["_artifacts", "download", 0, "path"]),
        (
            {"download": [{"id": ART, "path": "a"}, {"id": ART, "path": "./a"}]},
            ["_artifacts", "download", 1, "path"],
        ),
    ],
)
def test_malformed_downloads_are_422_naming_the_field(spec: object, loc: list[str | int]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_downloads(spec, ["_artifacts"])
    assert loc_of(exc) == loc
    assert exc.value.status == 422


def test_refs_come_from_the_payload_and_every_items_element() -> None:
    payload = {"_artifacts": {"download": [{"id": ART, "path": "a"}]}, "x": 1}
    items = [{"y": 1}, {"_artifacts": {"download": [{"id": "art_7", "path": "b"}]}}]
    refs = payload_refs(payload, {"items": items}, "items")
    assert [(r.loc, r.artifact_id) for r in refs] == [
        (["payload", "_artifacts", "download", 0, "id"], ART),
        (["fan_out", "items", 1, "_artifacts", "download", 0, "id"], "art_7"),
    ]


def test_a_fan_out_by_artifacts_checks_each_element() -> None:
    elements = [{"download": [{"id": f"art_{i}", "path": "in"}]} for i in range(3)]
    refs = payload_refs({"_artifacts": elements}, {"by": "_artifacts"}, "by")
    assert [r.artifact_id for r in refs] == ["art_0", "art_1", "art_2"]
    assert refs[2].loc == ["payload", "_artifacts", 2, "download", 0, "id"]


def test_a_payload_without_artifacts_names_none_cheaply() -> None:
    items = [{"n": i} for i in range(100_000)]
    assert payload_refs({"a": 1}, {"items": items}, "items") == []


def test_manifest_sources_are_named_under_manifest() -> None:
    manifest = {"data_sources": [{"name": "w", "artifact": ART, "mount": "data/w"}]}
    (ref,) = manifest_refs(manifest)
    assert ref.loc == ["manifest", "data_sources", 0, "artifact"] and ref.artifact_id == ART
    assert manifest_refs({}) == [] and manifest_refs(None) == []


def test_task_inputs_are_relative_to_the_workdir_and_cover_a_batch() -> None:
    one = {"_artifacts": {"download": [{"id": ART, "path": "in/a"}]}}
    assert task_inputs(one, ".") == [(ART, "in/a")]
    assert task_inputs(one, "src") == [(ART, "src/in/a")]
    batch = {"batch": [one, one, {"_artifacts": {"download": [{"id": "art_2", "path": "b"}]}}]}
    assert task_inputs(batch, ".") == [(ART, "in/a"), ("art_2", "b")]
    assert task_inputs({"x": 1}, ".") == []
