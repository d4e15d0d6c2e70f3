"""The runnable quickstarts in ``examples/`` run against a live platform, as the README says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _env(platform: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTALOT_")}
    url = str(platform.url).rstrip("/")
    token = str(platform.admin_key)
    return {**env, "COMPUTALOT_URL": url, "COMPUTALOT_TOKEN": token, "TOKEN": token}


def test_the_sdk_fan_out_example_prints_its_merged_estimate(platform: Any) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "sdk_fanout.py")],
        env=_env(platform),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert sum(line.startswith("progress ") for line in lines) == 20
    merged = json.loads(lines[-1].replace("'", '"'))
    assert abs(merged["pi"] - 3.1416) < 0.05


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_quickstart_prints_its_results(platform: Any) -> None:
    done = subprocess.run(
        ["bash", str(EXAMPLES / "quickstart.sh")],
        env=_env(platform),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["status"] == "completed"
    assert results["aggregate_result"] == {
        "a": {"score": 15, "model": "a"},
        "bb": {"score": 16, "model": "bb"},
        "ccc": {"score": 17, "model": "ccc"},
    }


def _run_example(platform: Any, name: str, *args: str, timeout: float = 400) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=_env(platform),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def test_the_packing_example_optimises_checks_and_continues_from_its_artifact(
    platform: Any,
) -> None:
    lines = _run_example(platform, "packing_optimize.py", "8")
    assert any(line.startswith("progress ") for line in lines)
    summary = json.loads(lines[-1].replace("'", '"'))
    assert summary["eval"] == pytest.approx(summary["first"], abs=1e-9)
    assert summary["second"] <= summary["first"] + 1e-9  # started from the first run's best
    assert summary["first"] < 4.0


def test_the_lightgbm_example_trains_cross_validates_and_loads_its_model(platform: Any) -> None:
    lines = _run_example(platform, "lightgbm_train.py")
    summary = json.loads(lines[-1].replace("'", '"'))
    assert 0.8 < summary["train_auc"] <= 1.0
    assert summary["cv_mean"] > 0
    assert summary["trees"] >= 1


def _example_aggregate(platform: Any, name: str) -> tuple[str, dict[str, Any]]:
    """(the example's first line, the aggregate it printed as JSON after it)."""
    lines = _run_example(platform, name)
    print("\n".join(lines))  # shown with -rP: the output docs/workflows.md quotes
    return lines[0], json.loads("\n".join(lines[1:]))


def test_the_sweep_example_ranks_its_grid_best_first(platform: Any) -> None:
    first, aggregate = _example_aggregate(platform, "sweep.py")
    assert first.endswith("completed: 15 points ranked")
    assert aggregate["best"]["params"] == {"lr": 0.01, "depth": 5}
    assert aggregate["best"]["value"] == pytest.approx(0.01)
    values = [row["value"] for row in aggregate["ranking"]]
    assert values == sorted(values) and aggregate["failed"] == 0


def test_the_map_reduce_example_reduces_its_chunks_to_pi(platform: Any) -> None:
    first, aggregate = _example_aggregate(platform, "map_reduce.py")
    assert "completed: pi ~ 3.1" in first
    assert aggregate["samples"] == 400_000 and aggregate["_n"] == 8
    assert aggregate["pi"] == pytest.approx(4 * aggregate["inside"] / 400_000)
    assert sum(aggregate["spread"]["counts"]) == 8


def test_the_benchmark_example_ranks_three_sorts_over_three_replicas(platform: Any) -> None:
    first, aggregate = _example_aggregate(platform, "benchmark.py")
    assert "completed: fastest is builtin" in first
    assert [row["n"] for row in aggregate["ranking"]] == [3, 3, 3]
    assert aggregate["ranking"][-1]["name"] == "insertion"
    assert set(aggregate["per_replica"]) == {"builtin", "merge", "insertion"}


def test_the_sdk_quickstart_prints_the_catalog_and_the_last_jobs(platform: Any) -> None:
    lines = _run_example(platform, "sdk_quickstart.py", timeout=120)
    recipes, jobs = int(lines[0]), int(lines[1])
    assert recipes >= 4 and 0 <= jobs <= 5
    names = {line.split()[1] for line in lines if line.startswith("recipe ")}
    assert {"packing", "lightgbm_train"} <= names and len(names) == recipes
    assert sum(line.startswith("job job_") for line in lines) == jobs
