"""Worker capabilities (docs/recipes.md, "Worker capabilities"): what a machine detects with
real probes (programs on a PATH made for the test), what a node declares and a task asks of
Ray, what the cluster view reads, and the per-operation capability of the catalog."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from computalot import capabilities
from computalot.capabilities import (
    CAPABILITY_SHARE,
    cluster_has,
    has_crates,
    node_resources,
    task_resources,
)
from computalot.engine.cluster import node_capabilities
from computalot.jobs.recipe_submit import operation_state, with_capability
from recipes.registry import get_recipe


def _program(bin_dir: Path, name: str, exit_code: int = 0) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\necho '{name} 1.0'\nexit {exit_code}\n")
    path.chmod(0o755)


def _registry(root: Path, crates: list[str]) -> Path:
    for crate in crates:
        (root / crate).mkdir(parents=True)
    return root


ALL_CRATES = [
    "rand-0.8.5",
    "rand_distr-0.4.3",
    "rand_pcg-0.3.1",
    "syn-1.0.107",
    "quote-1.0.21",
    "proc-macro2-1.0.47",
]


@pytest.fixture()
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An otherwise empty PATH (plus /bin for the scripts' shell)."""
    found = tmp_path / "bin"
    found.mkdir()
    monkeypatch.setenv("PATH", f"{found}{os.pathsep}/bin")
    return found


def test_rustc_needs_cargo_rustc_and_every_debian_crate(bin_dir: Path, tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry", ALL_CRATES)
    assert not capabilities.has_rustc(registry)  # no cargo yet
    _program(bin_dir, "cargo")
    assert not capabilities.has_rustc(registry)  # no rustc yet
    _program(bin_dir, "rustc")
    assert capabilities.has_rustc(registry)
    assert not capabilities.has_rustc(tmp_path / "missing")
    partial = _registry(tmp_path / "partial", [c for c in ALL_CRATES if "distr" not in c])
    assert not has_crates(partial) and not capabilities.has_rustc(partial)


def test_a_program_that_fails_its_version_probe_does_not_count(bin_dir: Path) -> None:
    _program(bin_dir, "echidna", exit_code=1)
    assert not capabilities.has_echidna()
    _program(bin_dir, "echidna")
    assert capabilities.has_echidna()


def test_sbf_needs_the_toolchain_and_the_interpreter(bin_dir: Path) -> None:
    _program(bin_dir, "cargo-build-sbf")
    _program(bin_dir, "solana")
    assert not capabilities.has_sbf()  # no rbpf interpreter
    _program(bin_dir, "rbpf-cli")
    assert capabilities.has_sbf()


def test_detect_probes_once_and_is_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    capabilities.detect.cache_clear()
    calls: list[str] = []
    for name in capabilities.CAPABILITIES:
        monkeypatch.setitem(
            capabilities.PROBES, name, lambda name=name: calls.append(name) or name != "sbf"
        )
    started = time.monotonic()
    assert capabilities.detect() == ("rustc", "echidna")
    assert capabilities.detect() == ("rustc", "echidna")
    assert calls == ["rustc", "sbf", "echidna"]  # cached after the first
    assert time.monotonic() - started < 1.0
    capabilities.detect.cache_clear()


def test_this_machines_real_detection_answers_quickly() -> None:
    capabilities.detect.cache_clear()
    started = time.monotonic()
    found = capabilities.detect()
    assert time.monotonic() - started < 15.0
    assert set(found) <= set(capabilities.CAPABILITIES)
    assert "echidna" not in found or capabilities.has_echidna()
    capabilities.detect.cache_clear()


def test_what_a_node_declares_and_a_task_asks() -> None:
    assert node_resources(["rustc", "echidna"]) == {"rustc": 1.0, "echidna": 1.0}
    assert task_resources("sbf") == {"sbf": CAPABILITY_SHARE}
    assert task_resources(None) == {}
    options = {"num_cpus": 1.0, "resources": {"storage_gb": 5.0}}
    assert with_capability(options, "rustc") == {
        "num_cpus": 1.0,
        "resources": {"storage_gb": 5.0, "rustc": CAPABILITY_SHARE},
    }
    assert with_capability({"num_cpus": 2.0}, None) == {"num_cpus": 2.0}


def test_the_cluster_view_reads_capabilities_from_node_resources() -> None:
    nodes = [{"CPU": 4.0, "rustc": 1.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 2.0, "echidna": 0.0}]
    assert node_capabilities(nodes) == {"rustc"}
    assert cluster_has("rustc", nodes) and not cluster_has("echidna", nodes)
    assert node_capabilities([]) == set()


def test_each_prop_amm_and_echidna_operation_names_its_capability() -> None:
    prop_amm = get_recipe("prop_amm")
    echidna = get_recipe("echidna")
    assert prop_amm is not None and echidna is not None
    wanted = {
        "eval": "rustc",
        "eval_chunk": "rustc",
        "validate": "rustc",
        "concavity_check": "rustc",
        "build": "rustc",
        "bpf_eval": "sbf",
        "bpf_eval_chunk": "sbf",
        "validate_full": "sbf",
    }
    assert {op.name: op.capability for op in prop_amm.operations} == wanted
    assert {op.capability for op in echidna.operations} == {"echidna"}


def test_an_operation_is_available_only_where_a_node_has_its_capability() -> None:
    prop_amm = get_recipe("prop_amm")
    assert prop_amm is not None
    rustc_only = [{"CPU": 2.0, "rustc": 1.0}]
    assert operation_state(prop_amm, "eval", rustc_only) == (True, None)
    ok, why = operation_state(prop_amm, "bpf_eval", rustc_only)
    assert not ok and why is not None and "'sbf'" in why
    ok, why = operation_state(prop_amm, "eval", [{"CPU": 2.0}])
    assert not ok and why is not None and "'rustc'" in why
    # nodes not known yet: nothing is refused for its capability
    assert operation_state(prop_amm, "eval", [])[0]


def test_cluster_yaml_shows_a_worker_type_declaring_capabilities() -> None:
    """The commented ``tools`` worker type, uncommented, is a node type Ray's schema accepts,
    and it declares capabilities by their names."""
    import json

    import jsonschema
    import ray.autoscaler
    import yaml

    text = (Path(__file__).resolve().parents[2] / "cluster.yaml").read_text()
    lines = text.splitlines()
    start = lines.index("  # tools:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        block.append("  " + line[4:])
    config = yaml.safe_load(text)
    config["available_node_types"].update(yaml.safe_load("\n".join(block)))
    schema_file = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_file.read_text()))
    declared = config["available_node_types"]["tools"]["resources"]
    assert set(declared) - {"CPU"} <= set(capabilities.CAPABILITIES)
    assert all(declared[name] == capabilities.NODE_AMOUNT for name in set(declared) - {"CPU"})
