"""A hostile tenant's task against the sandbox (docs/sandbox.md), through the real platform.

The probe (``tests/support/probe.py``) runs as one tenant's job while a second tenant's task is
running, and tries each way out: the platform's files and keys, Ray's token, session directory,
logs and ports, other processes' environments, the other task's directory, ``/etc`` and
``/root``; it leaves session leavers and daemons behind. Every item must be refused, nothing of
it may outlive the job, and the second tenant's job completes with its own result. A task that
allocates past the default memory limit fails with ``memory_limit``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from computalot.engine.run_task import attempt_root
from tests.support.chaos import quiet_port as _quiet_port
from tests.support.helpers import host_pids, submit_job, wait_for, wait_job
from tests.support.probe import HOG, PROBE, VICTIM

API = "/api/v1"
#: What ``computalot up`` prints of the Ray dashboard (the token's place, never the token).
DASHBOARD = re.compile(
    r"^Ray dashboard: (?P<url>http://\S+) \(.*`ray get-auth-token`.* kept in (?P<where>.+)\)$"
)


@pytest.fixture
def listener() -> Iterator[str]:
    """A service of the platform's host on a loopback port (as HAProxy's stats or a local
    PostgreSQL would be): the test reaches it, a task must not."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _ray_ports() -> dict[str, str]:
    node = next(n for n in ray.nodes() if n["Alive"])
    ip = node["NodeManagerAddress"]
    gcs = ray.get_runtime_context().gcs_address
    return {
        "the Ray GCS": gcs,
        "the raylet": f"{ip}:{node['NodeManagerPort']}",
        "the object manager": f"{ip}:{node['ObjectManagerPort']}",
    }


def _session_dir() -> str:
    return str(ray._private.worker.global_worker.node.get_session_dir_path())


def _attempt_dir_of(secret: str) -> Path:
    """The running attempt's directory whose payload holds ``secret``: named after its task,
    or the slot of a warm sandbox (``sandbox.warm``), which holds one attempt at a time."""
    found = []
    for place in attempt_root().iterdir():
        try:
            if secret in (place / "payload.json").read_text():
                found.append(place)
        except OSError:
            continue
    (only,) = found
    return only


def test_a_hostile_task_is_refused_everything_and_leaves_nothing(
    platform: Any, new_account: Any, make_project: Any, task_tmp: Path, listener: str
) -> None:
    attacker, victim = new_account(), new_account()
    secret = uuid.uuid4().hex
    victim_job = submit_job(
        victim,
        make_project(victim, {"runner.py": VICTIM}),
        payload={"dir": str(task_tmp), "secret": secret},
    )
    wait_for((task_tmp / "victim-started").exists, "the other tenant's task to run")
    victim_dir = _attempt_dir_of(secret)

    ports = {**_ray_ports(), "a loopback service": listener}
    for address in ports.values():  # every target is really there, for the test itself
        host, port = address.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=3).close()
    marker = f"computalot-probe-{uuid.uuid4().hex}"
    payload = {
        "data_dir": str(platform.settings.data_dir),
        "ray_token": str(Path.home() / ".ray" / "auth_token"),
        "ray_session": _session_dir(),
        "attempt_root": str(attempt_root()),
        "victim_dir": str(victim_dir),
        "ports": ports,
        "marker": marker,
    }
    probe = make_project(attacker, {"runner.py": PROBE})
    end = wait_job(attacker, submit_job(attacker, probe, payload=payload))
    output = attacker.get(f"{API}/jobs/{end['id']}/output").json()["tasks"]
    assert end["status"] == "completed", json.dumps(output)
    assert end["warnings"] == [], end
    (row,) = attacker.get(f"{API}/results/{end['id']}").json()["results"]
    report = row["result"]

    got = {k: v for k, v in report.items() if isinstance(v, str) and v.startswith("GOT")}
    assert got == {"call the public API": "GOT: 200"}, json.dumps(report, indent=1)
    refused = [k for k, v in report.items() if isinstance(v, str) and v.startswith("refused")]
    assert len(refused) == 15 + len(ports), json.dumps(report, indent=1)
    assert report["uid"] != 0 and report["capabilities"] == ["0000000000000000"]
    assert len(report["visible pids"]) <= 3, report["visible pids"]  # bwrap's init, it, `ls`
    # Nothing it started outlives the job, and what it wrote in /tmp stayed in its own.
    wait_for(lambda: not host_pids(marker), "the probe's leftovers to die", 10)
    for place in ("/tmp", "/etc", "/root"):
        assert not (Path(place) / marker).exists()

    (task_tmp / "victim-go").touch()
    victim_end = wait_job(victim, victim_job)
    assert victim_end["status"] == "completed", victim_end
    (victim_row,) = victim.get(f"{API}/results/{victim_job}").json()["results"]
    assert victim_row["result"] == {"mine": secret}


def test_a_task_over_the_default_memory_limit_fails_with_memory_limit(
    admin: httpx.Client, make_project: Any, platform: Any
) -> None:
    limit = platform.settings.task_memory_mb
    hog = make_project(admin, {"runner.py": HOG})
    end = wait_job(admin, submit_job(admin, hog, payload={"mb": limit + 512}))
    assert end["status"] == "failed", end
    (task,) = admin.get(f"{API}/jobs/{end['id']}/tasks").json()["tasks"]
    assert task["error"]["code"] == "memory_limit", task
    assert f"{limit} MiB" in task["error"]["message"]
    assert "requirements.memory_mb" in task["error"]["recommended_action"]
    # Asking for more lifts it.
    end = wait_job(
        admin,
        submit_job(
            admin, hog, payload={"mb": limit + 512}, requirements={"memory_mb": limit + 1024}
        ),
    )
    assert end["status"] == "completed", end


@pytest.mark.own_platform
def test_an_unconfined_platform_says_so_on_ready_and_on_every_job(
    tmp_path: Path, make_project: Any
) -> None:
    """``COMPUTALOT_SANDBOX=none`` (its own small platform, beside the session's): the same
    probe now reads the admin key, and ``/ready`` and the job carry the warning.

    The same ``up`` also tells the operator where the Ray dashboard is and where its token is:
    the line leads to a dashboard that refuses a request without the token and lets one in with
    the token read from the place the line names; the token itself never appears in the output."""
    data_dir, port = tmp_path / "data", _quiet_port()
    marker = f"computalot-probe-{uuid.uuid4().hex}"
    # Not this session's settings, nor its Serve/HAProxy ports (platform.start exports them).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPUTALOT_", "RAY_SERVE"))}
    env.update({"COMPUTALOT_SANDBOX": "none", "COMPUTALOT_KILL_GRACE_S": "1"})
    # HAProxy's stats/metrics ports are otherwise picked from the ephemeral range, where the
    # session's own Ray workers may take one before this HAProxy binds it.
    env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(_quiet_port())
    env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(_quiet_port())
    command = [str(Path(sys.executable).parent / "computalot"), "up", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--num-cpus", "1"]
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), "the unconfined platform to be ready", 150)
        _check_the_dashboard_line(tmp_path / "up.log")
        ready = httpx.get(f"{url}/ready").json()
        assert ready["checks"]["sandbox"] == "ok"
        assert [w for w in ready["warnings"] if "COMPUTALOT_SANDBOX=none" in w], ready
        key = (data_dir / "admin_key").read_text().strip()
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as admin:
            probe = make_project(admin, {"runner.py": PROBE})
            payload = {
                "data_dir": str(data_dir),
                "ray_token": str(Path.home() / ".ray" / "auth_token"),
                "ray_session": "/nonexistent",
                "attempt_root": str(attempt_root()),
                "victim_dir": "/nonexistent",
                "ports": {},
                "marker": marker,
                "spare_the_store": True,
            }
            end = wait_job(admin, submit_job(admin, probe, payload=payload))
            assert [w for w in end["warnings"] if "COMPUTALOT_SANDBOX=none" in w], end
            (row,) = admin.get(f"{API}/results/{end['id']}").json()["results"]
            assert row["result"]["read the admin key"].startswith("GOT"), row["result"]
    finally:
        for pid in host_pids(marker):  # unconfined, its daemons outlive it: end them here
            os.kill(pid, signal.SIGKILL)
        for place in ("/tmp", "/etc", "/root"):
            (Path(place) / marker).unlink(missing_ok=True)
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        log.close()


def _check_the_dashboard_line(log: Path) -> None:
    def printed() -> str | None:
        lines = log.read_text().splitlines()
        return next((x for x in lines if x.startswith("Ray dashboard:")), None)

    # /ready can answer a moment before `up` prints its lines.
    line = wait_for(printed, f"up to print the dashboard line: {log.read_text()[-3000:]}", 60)
    output = log.read_text()
    match = DASHBOARD.match(line)
    assert match is not None, line
    token = Path(match["where"]).read_text().strip()
    assert token and token not in output
    version = f"{match['url']}/api/version"
    assert httpx.get(version, timeout=30).status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(version, headers=auth, timeout=30).status_code == 200


def _ready(url: str) -> bool:
    try:
        answer = httpx.get(f"{url}/ready", timeout=5)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and "COMPUTALOT_SANDBOX=none" in answer.text
