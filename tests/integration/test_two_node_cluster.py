"""The platform on a real multi-node Ray cluster on one machine (docs/operating.md, "Nodes and
the sandbox"): ``ray start`` for a head that declares ``computalot_head`` and no CPU, a worker
node that declares a GPU and ``gpu_memory_mb``, deployed with ``ray job submit -- computalot
serve --detach``.

It shows: the API, dispatcher and event hub run on the head, no task does; ``gpu_count: 1``
tasks run on the GPU node and see the device Ray assigned them (``CUDA_VISIBLE_DEVICES``); a
task on the worker node sees nothing of the head's data directory, of Ray's directories or of
another task running beside it (the sandbox); the node shows on each task; losing the worker
node mid-task retries a CPU task on a node that joined since and fails the GPU task with
``node_lost`` (no alive node has a GPU), so no job stays ``running``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from computalot.engine.placement import node_name
from tests.support.helpers import wait_for, wait_job
from tests.support.postgres import free_port
from tests.support.ray_nodes import LocalCluster, alive, ray_available

pytestmark = [
    pytest.mark.own_platform,
    # About 3.5 minutes on a 2-core machine under a load of 20 (three `ray start` nodes, a
    # deploy); room for a busier one.
    pytest.mark.timeout(600),
    pytest.mark.skipif(ray_available() is not None, reason=str(ray_available())),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
]

#: The project's one runner: ``env`` answers its device and attempt; ``hold`` leaves files in
#: its directory and /tmp, says it started (in the shared directory) and sleeps on its first
#: attempt; ``look`` searches for what it must not see.
PROBE = r"""
import json, os, pathlib, sys, time

payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
mode = sys.argv[1]
out = {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "attempt": os.environ["COMPUTALOT_ATTEMPT"]}
if mode == "hold":
    marker = sys.argv[2]
    pathlib.Path(marker).write_text("secret")
    pathlib.Path("/tmp", marker).write_text("secret")
    started = pathlib.Path(payload["shared"], marker + "." + out["attempt"])
    started.write_text(json.dumps(out))
    if out["attempt"] == "1":
        time.sleep(300)
if mode == "look":
    marker = payload["marker"]
    out["exists"] = {p: os.path.exists(p) for p in payload["paths"]}
    found = []
    roots = ["/tmp", "/task", "/home", "/root", "/var", "/run", "/mnt", "/srv", "/opt", "/dev/shm"]
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(dirpath, d) != payload["shared"]]
            found += [os.path.join(dirpath, f) for f in files if marker in f]
    out["found"] = found
    seen = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                seen.append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
            except OSError:
                pass
    out["processes"] = len(seen)
    out["marker_processes"] = [c for c in seen if marker in c]
json.dump(out, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""

GPU = {"gpu_count": 1, "gpu_memory_mb": 16000}


def _node_ids(cluster: LocalCluster, kinds: set[str], timeout_s: float = 30) -> dict[str, str]:
    """``{"head" | "gpu" | "cpu": Ray node id}`` of the alive nodes, once they are ``kinds``
    (the state API can lag a node's registration); on failure, what the cluster says."""
    out: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        out = {}
        for node in cluster.alive_nodes():
            total = node.get("resources_total") or {}
            kind = "head" if "computalot_head" in total else "gpu" if total.get("GPU") else "cpu"
            out[kind] = str(node["node_id"])
        if set(out) == kinds or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(out) == kinds, f"alive {sorted(out)}, expected {sorted(kinds)}\n" + (
        cluster.diagnosis()
    )
    return out


def _actors_by_node(cluster: LocalCluster) -> dict[str, list[str]]:
    """``{class name: [node ids]}`` of the alive actors."""
    out: dict[str, list[str]] = {}
    for actor in cluster.state("actors", detail="true"):
        if actor.get("state") == "ALIVE":
            out.setdefault(str(actor["class_name"]), []).append(str(actor["node_id"]))
    return out


def _tasks(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/api/v1/jobs/{job_id}/tasks")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["tasks"])


def _submit(client: httpx.Client, project: str, argv: list[str], **fields: Any) -> str:
    body = {"project": project, "runner_command": ["python3", "probe.py", *argv], "timeout_s": 600}
    answer = client.post("/api/v1/jobs", json={**body, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


#: ``computalot admin create-account``'s arguments for the operator's admin task.
ALICE = ["--name", "alice", "--json"]


def test_two_node_cluster(make_project: Callable[..., str]) -> None:
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="c2n", dir="/tmp"))  # short: Unix socket paths
    cluster = LocalCluster(root)
    data_dir = root / "data"
    # The one directory the operator shares with tasks (how tasks tell the test they started).
    shared = Path(tempfile.mkdtemp(prefix="c2s", dir="/tmp"))
    shared.chmod(0o777)
    port = free_port()
    timings: dict[str, float] = {}
    try:
        cluster.start_head({"computalot_head": 1})
        gpu_node = cluster.add_node("gpu", cpus=2, gpus=1, resources={"gpu_memory_mb": 24000})
        timings["cluster_up_s"] = time.monotonic() - began
        settings = {
            "COMPUTALOT_DATA_DIR": str(data_dir),
            "COMPUTALOT_HOST": "127.0.0.1",
            "COMPUTALOT_PORT": str(port),
            "COMPUTALOT_SANDBOX_SHARED_DIRS": json.dumps([str(shared)]),
            "COMPUTALOT_TASK_MEMORY_MB": "1024",
            "COMPUTALOT_KILL_GRACE_S": "1.0",
            "COMPUTALOT_DISPATCH_INTERVAL_S": "0.2",
            "COMPUTALOT_NODE_WAIT_S": "3",
            "COMPUTALOT_X402_PAY_TO": "0x00000000000000000000000000000000c0ffee01",
        }
        t0 = time.monotonic()
        deployed = cluster.submit(
            [sys.executable, "-m", "computalot.cli", "serve", "--detach"], settings
        )
        timings["deploy_s"] = time.monotonic() - t0
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        ids = _node_ids(cluster, {"head", "gpu"})

        # The API, the dispatcher and the hub run on the head.
        actors = _actors_by_node(cluster)
        for name in ("Dispatcher", "EventHub", "ServeReplica:computalot:api"):
            found = [n for cls, nodes in actors.items() if cls.startswith(name) for n in nodes]
            assert found and set(found) == {ids["head"]}, (name, actors, ids)

        admin_key = (data_dir / "admin_key").read_text().strip()
        # An admin task as the README's operator section runs one: `ray job submit -- computalot
        # admin …` on the cluster, against the deployed store.
        made = cluster.submit(
            [sys.executable, "-m", "computalot.cli", "admin", "create-account", *ALICE], settings
        )
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
        alice_key = re.search(r'"api_key": "([^"]+)"', made.stdout)
        assert alice_key, made.stdout[-3000:]
        alice = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/account",
            headers={"Authorization": f"Bearer {alice_key.group(1)}"},
            timeout=60,
        )
        assert alice.status_code == 200 and alice.json()["name"] == "alice", alice.text
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=60,
        ) as client:
            project = make_project(client, {"probe.py": PROBE})

            # gpu_count: 1 → the GPU node, with the device Ray assigned.
            gpu_job = _submit(
                client, project, ["env"], requirements=GPU, fan_out={"items": [{}, {}]}
            )
            done = wait_job(client, gpu_job, timeout_s=120)
            assert done["status"] == "completed", done
            results = client.get(f"/api/v1/results/{gpu_job}").json()["results"]
            assert [r["result"]["cuda"] for r in results] == ["0", "0"], results
            assert {t["node"] for t in _tasks(client, gpu_job)} == {node_name(ids["gpu"])}
            # The project is ready on the nodes that run tasks: the head is not one of them.
            status = client.get(f"/api/v1/projects/{project}/status").json()
            assert (status["nodes_total"], status["nodes_ready"]) == (1, 1), status

            # The sandbox on the worker node: a task sees nothing of the head's data directory,
            # Ray's directories, or the task running beside it.
            marker = f"held-{uuid.uuid4().hex[:12]}"
            hold_job = _submit(client, project, ["hold", marker], payload={"shared": str(shared)})
            wait_for(lambda: (shared / f"{marker}.1").exists(), "the held task to start", 90)
            paths = [str(data_dir), str(data_dir / "admin_key"), str(root)]
            paths += [str(node.temp_dir) for node in cluster.nodes]
            look_job = _submit(
                client,
                project,
                ["look"],
                payload={"marker": marker, "paths": paths, "shared": str(shared)},
            )
            looked = wait_job(client, look_job, timeout_s=120)
            assert looked["status"] == "completed", looked
            seen = client.get(f"/api/v1/results/{look_job}").json()["results"][0]["result"]
            assert seen["exists"] == {p: False for p in paths}, seen
            assert seen["found"] == [] and seen["marker_processes"] == [], seen
            assert 0 < seen["processes"] < 10, seen  # its own pid namespace
            assert _tasks(client, look_job)[0]["node"] == node_name(ids["gpu"])

            # A GPU task mid-run when the GPU node is lost: none is left → node_lost. The CPU
            # task beside it is retried on the CPU node that joined meanwhile.
            cpu_node = cluster.add_node("cpu", cpus=1, wait=False)  # starts while the GPU task does
            victim = f"gpu-{uuid.uuid4().hex[:12]}"
            gpu_hold = _submit(
                client, project, ["hold", victim], requirements=GPU, payload={"shared": str(shared)}
            )
            wait_for(lambda: (shared / f"{victim}.1").exists(), "the GPU task to start", 90)
            cluster.wait_for_nodes(3, cpu_node)
            ids = _node_ids(cluster, {"head", "gpu", "cpu"})
            killed = gpu_node.kill()
            t0 = time.monotonic()
            held = wait_job(client, hold_job, timeout_s=120)
            timings["cpu_task_retried_s"] = time.monotonic() - t0
            lost = wait_job(client, gpu_hold, timeout_s=120)
            timings["gpu_task_node_lost_s"] = time.monotonic() - t0
            assert not [p for p in killed if alive(p)]

            assert held["status"] == "completed", held
            (task,) = _tasks(client, hold_job)
            assert task["attempt"] == 2 and task["node"] == node_name(ids["cpu"]), task
            assert (shared / f"{marker}.2").exists()

            assert lost["status"] == "failed", lost
            (task,) = _tasks(client, gpu_hold)
            assert task["status"] == "failed" and task["error"]["code"] == "node_lost", task
            assert task["error"]["recommended_action"], task

            # Nothing is left running, and a GPU job is now refused outright.
            running = client.get("/api/v1/jobs", params={"status": "running"}).json()
            assert [j["id"] for j in running.get("jobs", running.get("items", []))] == []
            refused = wait_for(
                lambda: (
                    (
                        a := client.post(
                            "/api/v1/jobs",
                            json={
                                "project": project,
                                "runner_command": ["python3", "probe.py", "env"],
                                "requirements": GPU,
                            },
                        )
                    ).status_code
                    == 422
                    and a
                ),
                "a GPU job to be refused",
                30,
            )
            assert refused.json()["error"]["code"] == "unsatisfiable_requirements"
    finally:
        left = cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)
        print(
            f"two-node cluster timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}"
            f", total {time.monotonic() - began:.1f} s"
        )
    assert left == [], f"processes of the cluster still alive: {left}"
