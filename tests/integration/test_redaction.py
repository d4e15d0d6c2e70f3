"""No answer shows the host's internals, however a runner fails (docs/llms-full.md, "Results").

Runners fail in several ways (a missing executable, a crash with a traceback, a result file that
is a link or unreadable, a timeout, a runner that prints its working directory, environment,
interpreter paths and mounts); every answer about them (the job, its tasks, output, events,
results, a job list, the SSE stream) is searched for the platform's data dir, the attempt
root, Ray's session directory and this checkout's paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import computalot
from tests.support.helpers import wait_job

API = "/api/v1"

RUNNER = r"""
import json, os, sys, time

mode = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))["mode"]
result = os.environ["COMPUTALOT_TASK_RESULT"]
if mode == "crash":
    print("about to crash in", os.getcwd(), flush=True)
    def deep():
        raise RuntimeError("crashed in " + os.getcwd() + " result " + result)
    deep()
if mode == "symlink":
    os.symlink("/etc/hostname", result)
if mode == "unreadable":
    with open(result, "w") as fh:
        fh.write("{}")
    os.chmod(result, 0)
if mode == "sleep":
    time.sleep(60)
if mode == "paths":
    print("cwd", os.getcwd())
    print("exe", sys.executable, "path", sys.path)
    print("env", dict(os.environ))
    try:
        print(open("/proc/self/mountinfo").read())
    except OSError as exc:
        print("no mountinfo", exc)
    sys.stderr.write("stderr cwd %s payload %s\n" % (os.getcwd(), os.environ["COMPUTALOT_TASK_PAYLOAD"]))
    with open(result, "w") as fh:
        json.dump({"ok": True}, fh)
if mode == "bad_json":
    with open(result, "w") as fh:
        fh.write("{not json")
"""

FAILURES: dict[str, dict[str, Any]] = {
    "missing_executable": {"runner_command": ["./no-such-program"], "payload": {"mode": "x"}},
    "crash": {"payload": {"mode": "crash"}},
    "symlink_result": {"payload": {"mode": "symlink"}},
    "unreadable_result": {"payload": {"mode": "unreadable"}},
    "timeout": {"payload": {"mode": "sleep"}, "timeout_s": 2},
    "prints_paths": {"payload": {"mode": "paths"}},
    "bad_json_result": {"payload": {"mode": "bad_json"}},
    "fan_out_crash": {
        "payload": {"mode": "crash"},
        "fan_out": {"items": [{"n": 1}, {"n": 2}, {"n": 3}]},
        "batch_size": 2,
    },
}


def host_internals() -> list[str]:
    """What no answer may contain: the data dir, the attempt root, Ray's session directory,
    this checkout and its interpreter's prefix."""
    checkout = Path(computalot.__file__).resolve().parents[1]
    found = [
        str(Path(os.environ["COMPUTALOT_DATA_DIR"]).resolve()),
        "computalot-attempts",
        "/tmp/ray",
        "/session_",
        "runtime_resources",
        str(checkout),
    ]
    if sys.prefix != sys.base_prefix:
        found.append(str(Path(sys.prefix).resolve()))
    return found


@pytest.fixture(scope="module")
def project(admin: httpx.Client, make_project: Any) -> str:
    return str(make_project(admin, {"runner.py": RUNNER}))


def read_stream(client: httpx.Client, path: str) -> str:
    """A stream's whole text, up to its ``end`` (the jobs have ended: it closes at once)."""
    lines: list[str] = []
    with client.stream("GET", path, timeout=httpx.Timeout(60, read=60)) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            lines.append(line)
            if line.startswith("data:") and "event: end" in lines[-2:-1]:
                break
    return "\n".join(lines)


def answers(client: httpx.Client, job_id: str) -> dict[str, str]:
    texts = {}
    for name, path in {
        "job": f"{API}/jobs/{job_id}",
        "tasks": f"{API}/jobs/{job_id}/tasks",
        "output": f"{API}/jobs/{job_id}/output",
        "events": f"{API}/jobs/{job_id}/events?limit=1000",
        "results": f"{API}/results/{job_id}",
    }.items():
        answer = client.get(path)
        assert answer.status_code == 200, (name, answer.text)
        texts[name] = answer.text
    texts["stream"] = read_stream(client, f"{API}/jobs/{job_id}/stream")
    texts["watch"] = read_stream(client, f"{API}/jobs/watch?ids={job_id}")
    return texts


def test_no_answer_shows_host_internals(admin: httpx.Client, project: str) -> None:
    jobs = {}
    for name, fields in FAILURES.items():
        body = {"project": project, "runner_command": ["python3", "runner.py"], "timeout_s": 60}
        answer = admin.post(f"{API}/jobs", json={**body, "max_retries": 0, **fields})
        assert answer.status_code == 201, answer.text
        jobs[name] = answer.json()["id"]
    ended = {name: wait_job(admin, job_id) for name, job_id in jobs.items()}
    statuses = {name: job["status"] for name, job in ended.items()}
    # The worker reads the result file as the runner's owner's peer: a mode of 0 may not stop it.
    expected = {name: "failed" for name in jobs} | {"prints_paths": "completed"}
    expected["unreadable_result"] = statuses["unreadable_result"]
    assert statuses == expected
    listing = admin.get(f"{API}/jobs", params={"limit": 100})
    leaks = []
    forbidden = host_internals()
    for name, job_id in jobs.items():
        for answer, text in {**answers(admin, job_id), "list": listing.text}.items():
            leaks += [f"{name}: {answer} shows {bad!r}" for bad in forbidden if bad in text]
    assert leaks == []
    # The runner saw its own paths: they reached the answer, neutral.
    output = admin.get(f"{API}/jobs/{jobs['prints_paths']}/output").json()["tasks"][0]
    assert "cwd " in output["stdout"] and "stderr cwd" in output["stderr"]
    crash = admin.get(f"{API}/jobs/{jobs['crash']}/tasks").json()["tasks"][0]
    assert "RuntimeError: crashed in" in crash["output"]
