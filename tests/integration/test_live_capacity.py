"""The dispatcher's capacity follows the cluster: a Ray node that joins a running platform
raises the in-flight target, and its leaving lowers it again (``ray up`` starts worker nodes
after the head; an autoscaler adds and removes them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import ray

from tests.support.helpers import wait_for

EXTRA_CPUS = 3


def _ping(platform: Any) -> dict[str, Any]:
    namespace = platform.settings.ray_namespace
    dispatcher = ray.get_actor("computalot-dispatcher", namespace=namespace)
    info: dict[str, Any] = ray.get(dispatcher.ping.remote(), timeout=30)
    return info


def _start_node(tmp_path: Path) -> subprocess.Popen[bytes]:
    """``ray start`` of one more node on this machine joining the test cluster (blocking mode:
    it runs until signalled, then stops its own processes)."""
    ray_cli = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    return subprocess.Popen(
        [
            str(ray_cli),
            "start",
            f"--address={ray.get_runtime_context().gcs_address}",
            f"--num-cpus={EXTRA_CPUS}",
            "--num-gpus=0",
            "--block",
            "--disable-usage-stats",
            "--log-style=record",
        ],
        env=env,
        stdout=(tmp_path / "node.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_node_joining_raises_the_inflight_target_and_leaving_lowers_it(
    platform: Any, tmp_path: Path
) -> None:
    before = _ping(platform)
    node = _start_node(tmp_path)
    try:
        grown = wait_for(
            lambda: (info := _ping(platform))["cluster_cpus"] > before["cluster_cpus"] and info,
            "the dispatcher to see the new node's CPUs",
            timeout_s=90,
        )
        assert grown["cluster_cpus"] == before["cluster_cpus"] + EXTRA_CPUS, grown
        assert grown["max_inflight"] > before["max_inflight"], grown
        assert grown["capacity"] > before["capacity"], grown
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=60)
    shrunk = wait_for(
        lambda: (info := _ping(platform))["cluster_cpus"] == before["cluster_cpus"] and info,
        "the dispatcher to drop the node's CPUs",
        timeout_s=120,
    )
    assert shrunk["max_inflight"] == before["max_inflight"], shrunk
