"""computalot.project.json parsing: defaults, schema errors, OCI fallback and soft warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from computalot.errors import ValidationFailed
from computalot.projects.manifest import (
    MANIFEST_NAME,
    OCI_NOT_BUILT_WARNING,
    ManifestResult,
    ProjectManifest,
    load_manifest,
)

SPEC_EXAMPLE: dict[str, Any] = {
    "version": 1,
    "runtime": {
        "kind": "python",
        "workdir": ".",
        "requirements": "requirements.txt",
        "env": {"OMP_NUM_THREADS": "1"},
        "init": {"commands": [{"label": "warm", "command": ["python3", "-c", "pass"]}]},
    },
    "entrypoint": {"command": ["python3", "job.py"]},
    "validation": {
        "executables": ["python3"],
        "files": ["job.py"],
        "commands": [{"label": "numpy import", "command": ["python3", "-c", "import numpy"]}],
    },
    "data_sources": [{"name": "weights", "artifact": "art_abc123", "mount": "data/weights"}],
    "cache_mounts": [{"name": "hf", "path": ".cache/hf", "env": "HF_HOME"}],
}


def tree(tmp_path: Path, files: dict[str, str], manifest: Any = None) -> list[str]:
    """Write ``files`` and the manifest (JSON-encoded unless already a str) under tmp_path."""
    if manifest is not None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        files = {**files, MANIFEST_NAME: text}
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(files)


def load(tmp_path: Path, files: dict[str, str], manifest: Any = None, **kw: bool) -> ManifestResult:
    return load_manifest(tmp_path, tree(tmp_path, files, manifest), **kw)


def test_no_manifest_gives_defaults(tmp_path: Path) -> None:
    result = load(tmp_path, {"job.py": ""})
    assert result.manifest == ProjectManifest()
    assert result.runtime_kind == "python"
    assert result.warnings == []
    assert result.requirements_file is None
    rt = result.manifest.runtime
    assert (rt.kind, rt.workdir, rt.requirements, rt.env) == ("python", ".", "requirements.txt", {})
    assert rt.init.commands == [] and result.manifest.entrypoint is None
    assert result.manifest.data_sources == [] and result.manifest.cache_mounts == []


def test_default_requirements_file_is_found(tmp_path: Path) -> None:
    result = load(tmp_path, {"job.py": "", "requirements.txt": "numpy\n"})
    assert result.requirements_file == "requirements.txt"


def test_spec_example_parses(tmp_path: Path) -> None:
    result = load(tmp_path, {"job.py": "", "requirements.txt": ""}, SPEC_EXAMPLE)
    m = result.manifest
    assert result.runtime_kind == "python" and result.warnings == []
    assert m.entrypoint is not None and m.entrypoint.command == ["python3", "job.py"]
    assert m.runtime.init.commands[0].cwd == "."
    assert m.validation.commands[0].label == "numpy import"
    assert m.data_sources[0].artifact == "art_abc123"
    assert m.cache_mounts[0].env == "HF_HOME"
    assert result.requirements_file == "requirements.txt"


def test_custom_requirements_path(tmp_path: Path) -> None:
    manifest = {"runtime": {"requirements": "./env/reqs.txt"}}
    result = load(tmp_path, {"env/reqs.txt": "scipy"}, manifest)
    assert result.requirements_file == "env/reqs.txt"
    missing = load(tmp_path / "b", {"job.py": ""}, {"runtime": {"requirements": "nope.txt"}})
    assert missing.requirements_file is None
    assert any("nope.txt" in w for w in missing.warnings)


def test_missing_validation_files_warn(tmp_path: Path) -> None:
    result = load(tmp_path, {"job.py": ""}, {"validation": {"files": ["job.py", "model.pkl"]}})
    assert len(result.warnings) == 1 and "'model.pkl'" in result.warnings[0]


@pytest.mark.parametrize(
    "body", ["{not json", "[1, 2]", '"a string"', "\xff\xfe", '{"version": NaN}']
)
def test_not_json_or_not_object(tmp_path: Path, body: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        load(tmp_path, {}, body)
    assert info.value.status == 422
    assert info.value.details[0]["loc"] == ["manifest"]
    assert info.value.message.startswith(f"{MANIFEST_NAME}: ")


def test_invalid_utf8_and_oversized(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(b'{"version": "\xff"}')
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        load_manifest(tmp_path, [MANIFEST_NAME])
    (tmp_path / MANIFEST_NAME).write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(ValidationFailed, match="larger than"):
        load_manifest(tmp_path, [MANIFEST_NAME])


def test_bad_kind_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        load(tmp_path, {}, {"runtime": {"kind": "docker"}})
    err = info.value
    assert err.message == f"{MANIFEST_NAME}: runtime.kind: Input should be 'python' or 'oci'"
    assert err.details == [
        {"loc": ["manifest", "runtime", "kind"], "msg": "Input should be 'python' or 'oci'"}
    ]


@pytest.mark.parametrize(
    ("manifest", "loc"),
    [
        ({"version": 2}, ["manifest", "version"]),
        ({"runtime": {"requirments": "r.txt"}}, ["manifest", "runtime", "requirments"]),
        ({"surprise": True}, ["manifest", "surprise"]),
        ({"entrypoint": {"command": []}}, ["manifest", "entrypoint", "command"]),
        ({"entrypoint": {"command": "python3 job.py"}}, ["manifest", "entrypoint", "command"]),
        (
            {"runtime": {"init": {"commands": [{"label": "x", "command": []}]}}},
            ["manifest", "runtime", "init", "commands", 0, "command"],
        ),
        (
            {"runtime": {"init": {"commands": [{"command": ["ls"]}]}}},
            ["manifest", "runtime", "init", "commands", 0, "label"],
        ),
        ({"runtime": {"env": {"A": 1}}}, ["manifest", "runtime", "env", "A"]),
        ({"runtime": {"workdir": "/abs"}}, ["manifest", "runtime", "workdir"]),
        ({"runtime": {"workdir": "a/../.."}}, ["manifest", "runtime", "workdir"]),
        (
            {"data_sources": [{"name": "w", "artifact": "job_1", "mount": "data"}]},
            ["manifest", "data_sources", 0, "artifact"],
        ),
        (
            {"data_sources": [{"name": "w", "artifact": "art_1", "mount": "../up"}]},
            ["manifest", "data_sources", 0, "mount"],
        ),
        (
            {"data_sources": [{"name": "w", "artifact": "art_1", "mount": "/etc"}]},
            ["manifest", "data_sources", 0, "mount"],
        ),
        (
            {"data_sources": [{"name": "w", "artifact": "art_1", "mount": "."}]},
            ["manifest", "data_sources", 0, "mount"],
        ),
        (
            {"cache_mounts": [{"name": "c", "path": "../c"}]},
            ["manifest", "cache_mounts", 0, "path"],
        ),
        (
            {"cache_mounts": [{"name": "c", "path": "c", "env": "1BAD"}]},
            ["manifest", "cache_mounts", 0, "env"],
        ),
        (
            {"cache_mounts": [{"name": "c", "path": "c"}, {"name": "c", "path": "d"}]},
            ["manifest", "cache_mounts"],
        ),
        (
            {
                "data_sources": [{"name": "w", "artifact": "art_1", "mount": "m"}],
                "cache_mounts": [{"name": "c", "path": "./m"}],
            },
            ["manifest"],
        ),
        ({"version": True}, ["manifest", "version"]),
        ({"version": "1"}, ["manifest", "version"]),
        ({"validation": {"files": ["../secret"]}}, ["manifest", "validation", "files", 0]),
    ],
)
def test_schema_violations(tmp_path: Path, manifest: dict[str, Any], loc: list[Any]) -> None:
    with pytest.raises(ValidationFailed) as info:
        load(tmp_path, {}, manifest)
    assert info.value.details[0]["loc"] == loc
    dotted = ".".join(str(p) for p in loc[1:])
    assert info.value.message.startswith(f"{MANIFEST_NAME}: {dotted}")


def test_many_errors_are_summarized(tmp_path: Path) -> None:
    manifest = {f"k{i}": i for i in range(8)}
    with pytest.raises(ValidationFailed) as info:
        load(tmp_path, {}, manifest)
    assert len(info.value.details) == 8
    assert info.value.message.endswith("(and 3 more)")


def test_dockerfile_without_manifest_falls_back_to_python(tmp_path: Path) -> None:
    result = load(tmp_path, {"Dockerfile": "FROM python:3.11", "job.py": ""})
    assert result.runtime_kind == "python"
    assert result.warnings == [OCI_NOT_BUILT_WARNING]
    assert "Dockerfile was not built" in result.warnings[0]


def test_dockerfile_without_manifest_builds_where_possible(tmp_path: Path) -> None:
    result = load(tmp_path, {"Dockerfile": "FROM x"}, oci_builder_available=True)
    assert (result.runtime_kind, result.warnings) == ("oci", [])


def test_nested_dockerfile_is_not_a_request(tmp_path: Path) -> None:
    assert load(tmp_path, {"docker/Dockerfile": "FROM x"}).warnings == []


def test_oci_manifest(tmp_path: Path) -> None:
    manifest = {"runtime": {"kind": "oci", "sandbox": "gvisor"}}
    files = {"Dockerfile": "FROM x"}
    fallback = load(tmp_path / "a", files, manifest)
    assert (fallback.runtime_kind, fallback.warnings) == ("python", [OCI_NOT_BUILT_WARNING])
    assert fallback.manifest.runtime.kind == "oci" and fallback.manifest.runtime.sandbox == "gvisor"
    built = load(tmp_path / "b", files, manifest, oci_builder_available=True)
    assert (built.runtime_kind, built.warnings) == ("oci", [])


def test_oci_with_custom_dockerfile_path(tmp_path: Path) -> None:
    manifest = {"runtime": {"kind": "oci", "dockerfile": "build/Containerfile"}}
    result = load(tmp_path, {"build/Containerfile": "FROM x"}, manifest, oci_builder_available=True)
    assert result.runtime_kind == "oci"


def test_oci_without_dockerfile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        load(tmp_path, {"job.py": ""}, {"runtime": {"kind": "oci"}})
    assert info.value.details[0]["loc"] == ["manifest", "runtime", "dockerfile"]


def test_python_manifest_with_dockerfile_does_not_warn(tmp_path: Path) -> None:
    result = load(tmp_path, {"Dockerfile": "FROM x"}, {"runtime": {"kind": "python"}})
    assert (result.runtime_kind, result.warnings) == ("python", [])
