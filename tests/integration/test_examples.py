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
