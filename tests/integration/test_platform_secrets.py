"""No secret in reach of the platform's own processes, and a data dir only its owner can read.

The session's platform was started with the database URL and a metrics token in the starting
process's environment (tests/conftest.py), the way an operator may give them. Neither value,
nor the variables' names, may be in the environment (``/proc/<pid>/environ``) of the
dispatcher, the event hub, the API replicas, HAProxy or any other process of the local Ray
instance; the actors still hold both, as their constructor argument. The data dir (started out
0755) is 0700, and everything the platform wrote in it is the owner's only.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from computalot.engine.names import DISPATCHER_NAME, HUB_NAME
from computalot.platform import haproxy_dir
from tests.support import proctree
from tests.support.helpers import make_tarball, wait_job

API = "/api/v1"
REMOTE = {"X-Forwarded-For": "203.0.113.5"}  # not the API host: /metrics wants a token
SECRET_NAMES = (b"COMPUTALOT_DATABASE_URL", b"COMPUTALOT_METRICS_TOKEN")

JOB = """
import json, os
with open(os.path.join(os.environ["COMPUTALOT_ARTIFACT_DIR"], "note.txt"), "w") as fh:
    fh.write("an artifact")
json.dump({"ok": True}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def _proc(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # gone meanwhile, or not ours
        return None


def _cmdline(pid: int) -> str:
    raw = _proc(pid, "cmdline") or b""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _leaks(pid: int, needles: list[bytes]) -> list[str]:
    """Which of ``needles`` the environment of ``pid`` holds (as names, never the values)."""
    environ = _proc(pid, "environ")
    if environ is None:
        return []
    return [
        needle.decode() if needle in SECRET_NAMES else f"secret #{n}"
        for n, needle in enumerate(needles)
        if needle in environ
    ]


def _actor_pid(name: str, namespace: str) -> int:
    handle = ray.get_actor(name, namespace=namespace)
    return int(ray.get(handle.__ray_call__.remote(lambda _self: os.getpid()), timeout=60))


@pytest.fixture(scope="module")
def secrets(platform: Any) -> Iterator[tuple[str, str]]:
    """(database URL, metrics token) the platform runs with."""
    settings = platform.settings
    assert settings.metrics_token is not None, "the fixture gives the platform a metrics token"
    yield settings.resolved_database_url, settings.metrics_token.get_secret_value()


@pytest.fixture(scope="module")
def ran_a_job(admin: httpx.Client) -> str:
    """A pushed project (one executable file) and one finished job with an artifact, so the
    data dir holds a revision and an artifact and Ray workers have run a tenant's task."""
    name = f"p-{uuid.uuid4().hex[:10]}"
    assert admin.post(f"{API}/projects", json={"name": name}).status_code == 201
    files = {"job.py": JOB, "run.sh": "#!/bin/sh\nexec python3 job.py\n"}
    pushed = admin.post(
        f"{API}/projects/{name}/push", content=make_tarball(files, modes={"run.sh": 0o755})
    )
    assert pushed.status_code == 200, pushed.text
    job = admin.post(f"{API}/jobs", json={"project": name, "runner_command": ["python3", "job.py"]})
    assert job.status_code in (200, 201), job.text
    end = wait_job(admin, job.json()["id"])
    assert end["status"] == "completed", end
    return name


def test_no_platform_process_has_a_secret_in_its_environment(
    platform: Any, secrets: tuple[str, str], ran_a_job: str
) -> None:
    database_url, token = secrets
    needles = [database_url.encode(), token.encode(), *SECRET_NAMES]
    namespace = platform.settings.ray_namespace
    # The test process started the platform: it took the secrets out of its own environment
    # before Ray started, so nothing Ray starts from it inherits them.
    assert not any(name.decode() in os.environ for name in SECRET_NAMES)

    named = {
        "dispatcher": _actor_pid(DISPATCHER_NAME, namespace),
        "event hub": _actor_pid(HUB_NAME, namespace),
    }
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::computalot#api#"):
            named[f"API replica {actor['name']}"] = _actor_pid(actor["name"], actor["namespace"])
    assert any(what.startswith("API replica") for what in named), named
    ingress_config = str(haproxy_dir(platform.settings))
    haproxies = [
        pid
        for pid in proctree.session_tree()
        if "haproxy" in _cmdline(pid) and ingress_config in _cmdline(pid)
    ]
    assert haproxies, "no HAProxy process of this platform found"
    for pid in haproxies:
        named[f"HAProxy {pid}"] = pid

    # Every process the platform's start made, directly or not: Ray's own (GCS, raylet,
    # agents), every worker (Serve's controller and proxy, the engine's actors, task workers).
    everything = proctree.session_tree()
    assert set(named.values()) <= everything, (named, "not started by this session's platform")
    workers = {pid for pid in everything if _cmdline(pid).startswith("ray::")}
    assert workers - set(named.values()), "Ray workers beyond the named actors are checked too"

    problems = {what: _leaks(pid, needles) for what, pid in named.items()}
    problems.update({f"{pid} {_cmdline(pid)[:80]}": _leaks(pid, needles) for pid in everything})
    assert not {what: found for what, found in problems.items() if found}

    # The secrets reached the platform another way: the engine's actors hold the URL (their
    # constructor argument), and the API replicas honour the metrics token.
    for name in (DISPATCHER_NAME, HUB_NAME):
        handle = ray.get_actor(name, namespace=namespace)
        held = ray.get(handle.__ray_call__.remote(lambda s: s.settings.resolved_database_url))
        assert held == database_url
    # Through the ingress every client of this loopback-bound platform is a loopback one
    # (the ingress forwards each client's real address): the token's branch of /metrics is
    # tested in-process (test_ops_docs); here, that every replica holds the token.
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::computalot#api#"):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            # The API app's settings, read inside the replica actor.
            held = ray.get(
                handle.__ray_call__.remote(
                    lambda r: r._replica_impl._user_callable_wrapper.user_callable.settings
                )
            ).metrics_token
            assert held is not None and held.get_secret_value() == token, actor
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        odd = "Bearer café".encode()  # a token that is not ASCII: never a 500
        assert client.get("/metrics", headers={**REMOTE, "Authorization": odd}).status_code == 200
        assert client.get("/ready").status_code == 200


def test_the_data_dir_is_the_owners_only(platform: Any, ran_a_job: str) -> None:
    root = platform.settings.data_dir.resolve()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700  # the fixture made it 0755 before start
    modes: dict[str, int] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue  # removed meanwhile (a push's upload, a staging dir)
            modes[str(path.relative_to(root))] = info.st_mode
    assert {"computalot.db", "computalot.db-wal", "admin_key", "revisions"} <= set(modes)
    note = hashlib.sha256(b"an artifact").hexdigest()  # stored under its sha256
    assert any(rel.startswith(f"artifacts/blobs/{note[:2]}/{note}.") for rel in modes)
    executables = []
    for rel, mode in modes.items():
        assert not stat.S_ISLNK(mode), rel
        wanted = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_ISREG(mode) and rel.startswith("revisions/") and mode & stat.S_IXUSR:
            wanted = 0o700  # a project's executable file keeps its bit, for the owner only
            executables.append(rel)
        assert stat.S_IMODE(mode) == wanted, f"{rel}: {oct(stat.S_IMODE(mode))}"
    assert any(rel.endswith("/run.sh") for rel in executables), executables
    assert not any(rel.endswith("/job.py") for rel in executables)
