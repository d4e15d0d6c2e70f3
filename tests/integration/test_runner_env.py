"""What a runner process really gets in a real job (docs/llms-full.md, "Runner protocol"): exactly the protocol's variables,
no secret of the platform, and the runtime's Python as ``python3``.

The runner reports its environment (``os.environ``) and its initial environment block
(``/proc/self/environ``, so nothing Python adds at start-up hides a leak; a task forked from a
warm interpreter shows that interpreter's start-up block there, a subset), and the interpreter
that ``python3`` resolved to.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from computalot.engine.run_task import attempt_root
from tests.support.helpers import host_pids, parent_pid, pid_alive, submit_job, wait_for, wait_job

API = "/api/v1"

RUNNER = r"""
import json, os, sys
raw = open("/proc/self/environ", "rb").read().decode().split("\0")
initial = dict(kv.split("=", 1) for kv in raw if kv)
import numpy
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"env": dict(os.environ), "initial": initial, "prefix": sys.prefix,
               "executable": sys.executable, "numpy": numpy.__version__}, fh)
"""

PROTOCOL_KEYS = {
    "PWD",  # the sandbox's working directory, set by bubblewrap
    "PATH",
    "HOME",
    "LANG",
    "PYTHONUNBUFFERED",
    "TMPDIR",
    "COMPUTALOT_TASK_PAYLOAD",
    "COMPUTALOT_TASK_RESULT",
    "COMPUTALOT_ARTIFACT_DIR",
    "COMPUTALOT_JOB_ID",
    "COMPUTALOT_TASK_ID",
    "COMPUTALOT_TASK_INDEX",
    "COMPUTALOT_ATTEMPT",
    "COMPUTALOT_API_URL",
    # Scoped to this task's project KV and artifact uploads, dead once the task ends
    # (tests/integration/test_project_kv.py).
    "COMPUTALOT_TASK_TOKEN",
}


def _result(client: httpx.Client, project: str) -> dict[str, Any]:
    end = wait_job(client, submit_job(client, project))
    assert end["status"] == "completed", end
    results = client.get(f"{API}/results/{end['id']}").json()
    return dict(results["results"][0]["result"])


def test_runner_sees_only_the_protocol_and_the_runtime_python(
    admin: httpx.Client, make_project: Any, platform: Any
) -> None:
    seen = _result(admin, make_project(admin, {"runner.py": RUNNER}))
    env, initial = seen["env"], seen["initial"]
    assert set(env) == PROTOCOL_KEYS, sorted(set(env) ^ PROTOCOL_KEYS)
    assert set(initial) <= PROTOCOL_KEYS, sorted(set(initial) - PROTOCOL_KEYS)
    assert env["HOME"].endswith("/work")
    assert env["COMPUTALOT_TASK_TOKEN"].startswith("flt_")
    # No token of the platform or of Ray, under any name.
    for value in [*env.values(), *initial.values()]:
        assert platform.admin_key not in value
    assert not [key for key in [*env, *initial] if key.startswith("RAY_")]
    # `python3` is the interpreter the Ray worker runs (this test session's environment), with
    # its packages — not whatever the operator's PATH happened to list first.
    assert seen["prefix"] == sys.prefix
    if sys.prefix != sys.base_prefix:
        assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert seen["numpy"]


CLUTTER = r"""
import json, os
open("task_id", "w").write(os.environ["COMPUTALOT_TASK_ID"])
for place in (".", os.environ["TMPDIR"], os.environ["COMPUTALOT_ARTIFACT_DIR"]):
    os.makedirs(os.path.join(place, "deep", "er"), exist_ok=True)
    with open(os.path.join(place, "deep", "er", "junk.bin"), "wb") as fh:
        fh.write(b"x" * 4096)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"tmp": os.environ["TMPDIR"], "cwd": os.getcwd()}, fh)
"""


def _attempt_dirs(task_ids: list[str]) -> list[Path]:
    """The host's attempt directories of these tasks: ``<task>-<attempt>-<owner>…``, or a
    warm sandbox's slot (or the slot's emptied entries) holding the ``task_id`` file that the
    runners here write in their working directory."""

    def holds(place: Path) -> bool:
        if any(place.name.startswith(f"{t}-") for t in task_ids):
            return True
        try:
            return (place / "work" / "task_id").read_text() in task_ids
        except OSError:
            return False

    return [p for p in attempt_root().iterdir() if holds(p)]


def _task_ids(client: httpx.Client, job_id: str) -> list[str]:
    return [t["id"] for t in client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]]


def test_every_attempt_directory_is_removed_after_the_job(
    admin: httpx.Client, make_project: Any
) -> None:
    """The working copy, payload, result and artifact files of each attempt go once it ended
    (removed in the background by the worker, so this waits a little). Inside its sandbox each
    attempt sees its directory at the same place (``/task``)."""
    project = make_project(admin, {"runner.py": CLUTTER})
    fan_out = {"items": [{"i": i} for i in range(6)]}
    end = wait_job(admin, submit_job(admin, project, fan_out=fan_out))
    assert end["status"] == "completed", end
    results = admin.get(f"{API}/results/{end['id']}").json()["results"]
    assert {(r["result"]["tmp"], r["result"]["cwd"]) for r in results} == {
        ("/task/tmp", "/task/work")
    }
    task_ids = _task_ids(admin, end["id"])
    assert len(task_ids) == 6
    wait_for(lambda: not _attempt_dirs(task_ids), "the attempt directories to go", 15)


KILLED = r"""
import json, os, subprocess, sys, time
open("task_id", "w").write(os.environ["COMPUTALOT_TASK_ID"])
if int(os.environ["COMPUTALOT_ATTEMPT"]) == 1:
    shared = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))["dir"]
    marker = "computalot-killed-%s" % os.urandom(6).hex()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])
    tmp = os.path.join(shared, "attempt.tmp")
    with open(tmp, "w") as fh:
        json.dump({"marker": marker}, fh)
    os.rename(tmp, os.path.join(shared, "attempt.json"))
    time.sleep(120)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"ok": True}, fh)
"""


def _ray_worker_of(pid: int) -> int:
    """The Ray worker process above ``pid`` (its title starts with ``ray::``)."""
    while pid > 1:
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
            return pid
        pid = parent_pid(pid)
    raise AssertionError("no Ray worker above the runner")


def test_a_killed_workers_attempt_directory_is_swept_by_a_later_worker(
    admin: httpx.Client, make_project: Any, task_tmp: Path
) -> None:
    """The worker dies mid-attempt (SIGKILL: no ``finally`` runs), so its attempt directory
    stays until a worker process sweeps the attempt root: the one Ray starts for the retry, or
    at the latest the one another project's job starts."""
    killed = make_project(admin, {"runner.py": KILLED})
    job_id = submit_job(admin, killed, payload={"dir": str(task_tmp)}, timeout_s=300)
    report = task_tmp / "attempt.json"
    wait_for(report.exists, "the first attempt to report")
    (child,) = host_pids(json.loads(report.read_text())["marker"])
    (attempt_dir,) = _attempt_dirs(_task_ids(admin, job_id))
    os.kill(_ray_worker_of(child), signal.SIGKILL)
    wait_job(admin, job_id)
    wait_for(lambda: not pid_alive(child), "the sandbox to die with its worker", 15)
    later = make_project(admin, {"runner.py": CLUTTER})  # a new revision: a new worker process
    _result(admin, later)
    wait_for(lambda: not attempt_dir.exists(), "the orphaned attempt directory to go", 15)
