"""Placement on the alive nodes (computalot/engine/placement.py): what an attempt needs, whether
a node offers it, how long an unplaceable one waits, and the verdict it gets."""

from __future__ import annotations

from ray.exceptions import TaskCancelledError

from computalot.engine.failures import judge_failure
from computalot.engine.inflight import Inflight
from computalot.engine.outcomes import should_retry
from computalot.engine.placement import (
    PlacementWatch,
    fits_a_node,
    node_name,
    resources_key,
    runs_tasks,
    wanted_resources,
)
from computalot.jobs.resources import ray_options

HEAD = {"CPU": 0.0, "computalot_head": 1.0, "memory": 8e9}
GPU_NODE = {"CPU": 2.0, "GPU": 1.0, "gpu_memory_mb": 24000.0, "memory": 16e9}
CPU_NODE = {"CPU": 1.0, "memory": 4e9}


def test_requirements_become_node_resources() -> None:
    options = ray_options({"cpu": 1, "memory_mb": 1024, "gpu_count": 1, "gpu_memory_mb": 16000})
    assert wanted_resources(options) == {
        "CPU": 1.0,
        "GPU": 1.0,
        "memory": 1024.0 * 1024 * 1024,
        "gpu_memory_mb": 16000.0,
    }
    assert wanted_resources({"num_cpus": 0, "name": "x"}) == {}


def test_a_node_fits_only_when_it_offers_everything() -> None:
    gpu = wanted_resources(ray_options({"cpu": 1, "gpu_count": 1, "gpu_memory_mb": 16000}))
    assert fits_a_node(gpu, [HEAD, GPU_NODE])
    assert not fits_a_node(gpu, [HEAD, CPU_NODE])
    big = wanted_resources(ray_options({"cpu": 1, "gpu_count": 1, "gpu_memory_mb": 80000}))
    assert not fits_a_node(big, [HEAD, GPU_NODE])
    cpu = wanted_resources(ray_options({"cpu": 1}))
    assert not fits_a_node(cpu, [HEAD])  # the head offers no CPU to tasks
    assert fits_a_node(cpu, [])  # the cluster could not be read: no verdict


def test_unplaceable_after_the_wait_and_reset_when_a_node_joins() -> None:
    watch = PlacementWatch(wait_s=5.0)
    gpu = resources_key(ray_options({"cpu": 1, "gpu_count": 1}))
    cpu = resources_key(ray_options({"cpu": 1}))
    nodes = [HEAD, CPU_NODE]
    assert watch.unplaceable({gpu, cpu}, nodes, now=100.0) == set()
    assert watch.unplaceable({gpu, cpu}, nodes, now=104.9) == set()
    assert watch.unplaceable({gpu, cpu}, nodes, now=105.0) == {gpu}
    # A GPU node joins: the wait starts over when it leaves again.
    assert watch.unplaceable({gpu}, [HEAD, GPU_NODE], now=106.0) == set()
    assert watch.unplaceable({gpu}, nodes, now=107.0) == set()
    assert watch.unplaceable({gpu}, nodes, now=112.0) == {gpu}


def _stopped(lost_before: bool) -> Inflight:
    info = Inflight("t", "j", "a", 2, None, 0.0, 1e9)
    info.lost_before = lost_before
    info.unplaceable = True
    return info


def test_an_unplaceable_attempt_is_node_lost_or_unsatisfiable_and_not_retried() -> None:
    cancelled = TaskCancelledError()
    lost = judge_failure(_stopped(True), cancelled, 60, node_wait_s=3)
    assert lost.code == "node_lost" and "3 s" in (lost.message or "")
    assert lost.error() is not None and lost.error()["recommended_action"]  # type: ignore[index]
    never = judge_failure(_stopped(False), cancelled, 60, node_wait_s=3)
    assert never.code == "unsatisfiable_requirements"
    for verdict in (lost, never):
        assert not should_retry(verdict, attempt=1, max_retries=5, lost=0, lost_budget=2)


def test_node_names_are_stable_and_opaque() -> None:
    node_id = "ab" * 28
    assert node_name(node_id) == node_name(node_id)
    assert node_name(node_id) != node_name("cd" * 28)
    name = node_name(node_id) or ""
    assert name.startswith("node-") and len(name) == 13 and node_id[:8] not in name
    assert node_name(None) is None


def test_the_head_runs_no_tasks() -> None:
    assert [runs_tasks(n) for n in (HEAD, GPU_NODE, CPU_NODE)] == [False, True, True]
