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
