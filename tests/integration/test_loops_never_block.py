"""No event loop is held by files, zips or uploads: a 300 MB project push (extracting, hashing
and zipping it into a Ray package happen in a child process, moving and uploading it on worker
threads) leaves ``/ready`` and another account's live stream answering promptly throughout."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import submit_job, wait_job

#: Its bounds are latencies: it runs on a quiet host (tests/support/beside.py).
pytestmark = pytest.mark.quiet_host

API = "/api/v1"
PUSH_MB = 300
#: The issue's bound: the API keeps answering within this while the push is processed (95% of
#: the polls; a held loop shows as seconds, the push's own length, so the slowest poll may take
#: at most SLOWEST_S: one scheduling hiccup of a loaded 2-core host).
PROMPT_S = 0.2
SLOWEST_S = 0.5

#: The push runs in a process of its own, so sending 300 MB never holds the watchers' GIL.
UPLOAD = r"""
import json, os, sys, httpx
url, path = sys.argv[1:3]
key = os.environ["PUSH_KEY"]  # not on the command line, which every process may read
with open(path, "rb") as body:
    answer = httpx.post(url, content=body, headers={"Authorization": "Bearer " + key}, timeout=600)
print(json.dumps({"status": answer.status_code, "body": answer.text}))
"""

TICKER = r"""
import json, os, time
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
stop = p["stop"]
deadline = time.time() + 300
while not os.path.exists(stop) and time.time() < deadline:
    print("COMPUTALOT_PROGRESS:" + json.dumps({"t": time.time()}), flush=True)
    time.sleep(0.05)
json.dump({"ok": True}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def _big_tarball(path: Path, megabytes: int) -> Path:
    """Incompressible files (a gzip level-1 tarball about ``megabytes`` large)."""
    chunk = 50 * 1024 * 1024
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i in range(megabytes * 1024 * 1024 // chunk):
            member = path.parent / f"blob{i}.bin"
            member.write_bytes(os.urandom(chunk))
            tar.add(member, arcname=f"data/blob{i}.bin")
            member.unlink()
        script = path.parent / "job.py"
        script.write_text("print('hi')\n")
        tar.add(script, arcname="job.py")
    return path


class _Watch(threading.Thread):
    """Polls ``/ready`` every 50 ms and records each answer's latency (seconds)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                answer = client.get("/ready")
                assert answer.status_code == 200, answer.text
                self.latencies.append((time.time(), time.monotonic() - start))
                time.sleep(0.05)


class _Stream(threading.Thread):
    """Follows a job's stream to its end; records (sent, lateness) of each progress event
    (sent: the runner's clock when it printed it, so an event held up during the push counts
    as sent then, whenever it arrives)."""

    def __init__(self, client: httpx.Client, job_id: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.job_id = job_id
        self.late: list[tuple[float, float]] = []

    def run(self) -> None:
        path = f"{API}/jobs/{self.job_id}/stream"
        with self.client.stream("GET", path, timeout=httpx.Timeout(300)) as answer:
            event = None
            for line in answer.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "progress":
                    now = time.time()
                    sent = json.loads(line[5:])["progress"]["t"]
                    self.late.append((sent, now - sent))
                elif line.startswith("data:") and event == "end":
                    return


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def _during(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [value for at, value in samples if start <= at <= end]


def _timeline(samples: list[tuple[float, float]], start: float, end: float) -> str:
    """``second: worst value`` of the samples taken in each second from ``start``."""
    worst: dict[int, float] = {}
    for at, value in samples:
        if start <= at <= end:
            second = int(at - start)
            worst[second] = max(worst.get(second, 0.0), value)
    return ", ".join(f"{second}: {value:.2f}" for second, value in sorted(worst.items()))


def test_a_300_mb_push_leaves_ready_and_streams_prompt(
    admin: httpx.Client,
    new_account: Any,
    make_project: Any,
    base_url: str,
    task_tmp: Path,
) -> None:
    watcher = new_account()
    ticking = make_project(watcher, {"runner.py": TICKER})
    stop = task_tmp / "stop"
    job_id = submit_job(watcher, ticking, payload={"stop": str(stop)})
    stream = _Stream(watcher, job_id)
    stream.start()
    tarball = _big_tarball(task_tmp / "big.tar.gz", PUSH_MB)
    name = "big-" + job_id[-8:].lower().replace("_", "-")
    assert admin.post(f"{API}/projects", json={"name": name}).status_code == 201
    ready = _Watch(base_url)
    deadline = time.monotonic() + 60
    while not stream.late and time.monotonic() < deadline:
        time.sleep(0.05)  # the ticking job runs and its stream delivers before the push starts
    assert stream.late, "the ticking job's stream delivered nothing"
    ready.start()
    start = time.time()
    upload = subprocess.run(
        [
            sys.executable,
            "-c",
            UPLOAD,
            f"{base_url}{API}/projects/{name}/push",
            str(tarball),
        ],
        env={**os.environ, "PUSH_KEY": admin.headers["Authorization"].removeprefix("Bearer ")},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    end = time.time()
    pushed = json.loads(upload.stdout)
    ready.stop.set()
    ready.join(timeout=30)
    stop.touch()
    stream.join(timeout=60)
    assert not stream.is_alive(), "the ticking job's stream did not reach its end"
    assert pushed["status"] == 200, pushed["body"]
    assert json.loads(pushed["body"])["revision"]["size_bytes"] > PUSH_MB * 1024 * 1024 * 0.9

    polls = _during(ready.latencies, start, end)
    late = _during(stream.late, start, end)
    # The events the runner printed during the push (those it delivered after count too).
    # An event's lateness includes its way from the runner through the worker, the event hub and
    # the store, whatever the API does: the push must add at most PROMPT_S to what it was before.
    usual = statistics.median(_during(stream.late, 0, start))
    summary = (
        f"push {end - start:.1f} s; /ready {len(polls)} polls, max {max(polls):.3f} s, "
        f"median {statistics.median(polls):.3f} s, p95 {_p95(polls):.3f} s; stream {len(late)} events, "
        f"lateness p95 {_p95(late):.3f} s, max {max(late):.3f} s (median {usual:.3f} s before the push)"
        f"; the stream's worst lateness per second of the push: {_timeline(stream.late, start, end)}"
    )
    print(summary)
    assert len(polls) >= 10 and len(late) >= 10, summary
    assert _p95(polls) <= PROMPT_S and max(polls) <= SLOWEST_S, summary
    assert _p95(late) - usual <= PROMPT_S and max(late) - usual <= SLOWEST_S, summary

    # The package the push uploaded (from a child process of its own) is what tasks run.
    big = submit_job(admin, name, runner_command=["python3", "job.py"])
    assert wait_job(admin, big, timeout_s=300)["status"] == "completed"
    assert "hi" in admin.get(f"{API}/jobs/{big}/output").json()["tasks"][0]["stdout"]


def test_a_package_ray_dropped_is_uploaded_again_before_the_launch(
    new_account: Any, make_project: Any
) -> None:
    """Ray drops a package no task holds; the dispatcher finds it gone and uploads it again."""
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_exists

    from computalot.engine.packages import package_uri

    client = new_account()
    name = make_project(client, {"job.py": "print('again')\n"})
    content_hash = client.get(f"{API}/projects/{name}").json()["active_revision"]["content_hash"]
    uri = package_uri(content_hash)
    assert _internal_kv_exists(uri), "the push uploads the package"
    _internal_kv_del(uri)
    job_id = submit_job(client, name, runner_command=["python3", "job.py"])
    assert wait_job(client, job_id)["status"] == "completed"
    assert _internal_kv_exists(uri)
