"""cluster.yaml is a config `ray up` accepts and describes the cluster the platform needs.

Validated twice: against the JSON schema shipped inside the installed ``ray`` package, and
through the steps ``ray up`` itself runs before it touches a cloud (``prepare_config`` fills
the provider's defaults, ``validate_config`` checks the result).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CLUSTER_YAML.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _ray_schema() -> dict[str, Any]:
    schema_file = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema: dict[str, Any] = json.loads(schema_file.read_text())
    return schema


def test_valid_against_rays_schema(config: dict[str, Any]) -> None:
    jsonschema.validate(config, _ray_schema())


def test_schema_check_is_live(config: dict[str, Any]) -> None:
    """The same validation refuses a node type Ray does not know how to read."""
    broken = json.loads(json.dumps(config))
    broken["available_node_types"]["gpu"]["resources"]["GPU"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _ray_schema())


def test_ray_up_accepts_it(config: dict[str, Any]) -> None:
    prepared = prepare_config(json.loads(json.dumps(config)))
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"


def test_head_runs_no_user_tasks(config: dict[str, Any]) -> None:
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    assert "GPU" not in head["resources"]


def test_cpu_and_gpu_worker_types(config: dict[str, Any]) -> None:
    types = config["available_node_types"]
    cpu, gpu = types["cpu"]["resources"], types["gpu"]["resources"]
    assert cpu["CPU"] > 0 and "GPU" not in cpu
    assert gpu["GPU"] >= 1 and gpu["gpu_memory_mb"] > 0 and gpu["CPU"] > 0
    assert types["gpu"]["node_config"]["guestAccelerators"][0]["acceleratorCount"] == gpu["GPU"]
    for name in ("cpu", "gpu"):
        assert 0 <= types[name]["min_workers"] <= types[name]["max_workers"]
    assert sum(types[n]["max_workers"] for n in ("cpu", "gpu")) <= config["max_workers"]


def test_nodes_install_the_platform_and_join_with_a_token(config: dict[str, Any]) -> None:
    setup = "\n".join(config["setup_commands"])
    assert "pip install" in setup and "$HOME/computalot" in setup
    assert "bubblewrap" in setup and "nftables" in setup  # the task sandbox (docs/sandbox.md)
    assert config["file_mounts"]["~/computalot"] == "."
    assert config["file_mounts"]["~/computalot-dist"] == "dist"  # python -m build's output
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "example.invalid" not in CLUSTER_YAML.read_text()
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert any("RAY_AUTH_MODE=token ray start" in c for c in commands)


def test_head_starts_the_platform_with_store_and_s3_from_env(config: dict[str, Any]) -> None:
    start = config["head_start_ray_commands"]
    ray_start = next(i for i, c in enumerate(start) if "ray start --head" in c)
    serve = next(i for i, c in enumerate(start) if "computalot serve" in c)
    assert ray_start < serve
    assert "--detach" in start[serve] and "--host 0.0.0.0" in start[serve]
    assert ". ~/computalot.env" in start[serve]
    for variable in ("COMPUTALOT_DATA_DIR", "COMPUTALOT_DATABASE_URL", "COMPUTALOT_ARTIFACT_STORE"):
        assert "${" + variable + ":?" in start[serve]


def _install_command(config: dict[str, Any]) -> str:
    (command,) = [
        c
        for c in config["setup_commands"]
        if "computalot-venv/bin/pip install" in c and "[server]" in c
    ]
    return str(command)


def _pip_calls(config: dict[str, Any], home: Path) -> list[list[str]]:
    """Run the node's install line with ``$HOME`` at ``home`` and a pip that only logs its
    arguments (one call per line)."""
    pip = home / "computalot-venv" / "bin" / "pip"
    pip.parent.mkdir(parents=True)
    pip.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$HOME/pip.log"\n')
    pip.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    done = subprocess.run(["bash", "-c", _install_command(config)], env=env, timeout=60)
    assert done.returncode == 0
    return [line.split() for line in (home / "pip.log").read_text().splitlines()]


def test_nodes_install_the_newest_wheel_with_the_server_extra(
    config: dict[str, Any], tmp_path: Path
) -> None:
    dist = tmp_path / "computalot-dist"
    dist.mkdir()
    for version in ("0.2.0", "0.10.1", "0.9.0"):
        (dist / f"computalot-{version}-py3-none-any.whl").write_bytes(b"")
    wheel = f"{dist}/computalot-0.10.1-py3-none-any.whl"
    assert _pip_calls(config, tmp_path) == [
        ["install", "--quiet", f"{wheel}[server]"],
        ["install", "--quiet", "--force-reinstall", "--no-deps", wheel],
    ]


def test_without_a_wheel_nodes_install_the_checkout(config: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "computalot-dist").mkdir()
    checkout = f"{tmp_path}/computalot"
    assert _pip_calls(config, tmp_path) == [
        ["install", "--quiet", f"{checkout}[server]"],
        ["install", "--quiet", "--force-reinstall", "--no-deps", checkout],
    ]
