"""cluster.yaml is a config `ray up` accepts and describes the cluster the platform needs.

Validated twice: against the JSON schema shipped inside the installed ``ray`` package, and
through the steps ``ray up`` itself runs before it touches a cloud (``prepare_config`` fills
the provider's defaults, ``validate_config`` checks the result).
"""

from __future__ import annotations

import json
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
