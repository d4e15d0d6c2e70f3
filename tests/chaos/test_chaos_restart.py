"""The whole platform SIGKILLed with jobs in flight, then started again on the same data
directory (issue #19, item 6b; docs/chaos.md).

A platform of its own (``computalot up --data-dir … --port … --num-cpus 2`` in a subprocess)
gets jobs of a few short tasks each; every attempt leaves a marker file in a directory shared
with the sandbox. While some tasks are done and many are running or queued, a ``/jobs/watch``
client is reading the jobs' events, and every process of that platform (``up``, Ray's GCS,
raylet, workers, agents, Serve's proxy and HAProxy, the runners: everything below ``up`` or
carrying this run's tag in its environment) is stopped, then SIGKILLed, until none is left. Then
``up`` starts again on the same data directory and port.

Afterwards every job finished, each task completed; no task recorded completed before the kill
ran again (no marker file of it appeared after the kill); no task ran more often than its
attempts (an attempt cut short before its runner started was retried as ``worker_lost``); and the
watch client, resumed with ``Last-Event-ID``, got every stored event of the jobs exactly once,
ids increasing (docs/llms-full.md, "Streams"). 8 jobs here, 100 under ``CHAOS=long``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import proctree
from tests.support.chaos import LONG, quiet_port, report, size
from tests.support.helpers import events_of, make_tarball

TERMINAL = ("completed", "failed", "partial", "cancelled")
API = "/api/v1"
JOBS = size(8, 100)
TAG_VAR = "CHAOS_PLATFORM_TAG"
#: How long one `up` may take to answer /ready (a busy shared host can take minutes).
READY_S = 480.0

pytestmark = [pytest.mark.own_platform, pytest.mark.timeout(1800 if LONG else 600)]

RUNNER = r"""
import json, os, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
task, attempt = os.environ["COMPUTALOT_TASK_ID"], os.environ["COMPUTALOT_ATTEMPT"]
open(os.path.join(p["dir"], "run-%s-%s" % (task, attempt)), "w").close()
time.sleep(p["seconds"])
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"task": task, "attempt": int(attempt)}, fh)
"""


@dataclass
class Platform:
    """A ``computalot up`` of this test: its data dir, port, environment and process."""

    data_dir: Path
    port: int
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        command = [str(Path(sys.executable).parent / "computalot"), "up"]
        command += ["--data-dir", str(self.data_dir), "--port", str(self.port), "--num-cpus", "2"]
        out = (self.logs / f"up-{self.starts}.out").open("wb")
        err = (self.logs / f"up-{self.starts}.err").open("wb")
        self.process = subprocess.Popen(
            command, env=self.env, stdout=out, stderr=err, start_new_session=True
        )
        # Ready once `up` says so (its "API:" line comes after Serve's ingress has the replica:
        # before, HAProxy is still being reloaded) and the server on the port knows this data
        # dir's admin key (/ready alone could be another platform of the host that took the
        # port between its choice and up's bind).
        deadline = time.monotonic() + READY_S
        last = "no answer"
        printed = self.logs / f"up-{self.starts}.out"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.tail()
            key_file = self.data_dir / "admin_key"
            if "API: http" not in printed.read_text(errors="replace"):
                last = "up has not printed its API line"
                time.sleep(0.5)
                continue
            try:
                if key_file.exists() and httpx.get(f"{self.url}/ready", timeout=5).is_success:
                    key = key_file.read_text().strip()
                    headers = {"Authorization": f"Bearer {key}"}
                    mine = httpx.get(f"{self.url}{API}/account", headers=headers, timeout=30)
                    if mine.status_code == 200:
                        return
                    last = f"/account: {mine.status_code} (another server on port {self.port}?)"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise AssertionError(f"up did not get ready ({last}): {self.tail()}")

    def tail(self) -> str:
        return (self.logs / f"up-{self.starts}.err").read_text(errors="replace")[-3000:]

    def processes(self, seen: set[proctree.Proc]) -> set[proctree.Proc]:
        """Every live process of this platform: below ``up``, tagged in its environment, or
        seen below it before (a runner re-parented to init keeps none of the two)."""
        tag = f"{TAG_VAR}={self.env[TAG_VAR]}".encode()
        found = {p for p in seen if proctree.alive(p)}
        assert self.process is not None
        pids = proctree.descendants(self.process.pid) | {self.process.pid}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    environ = Path(f"/proc/{entry}/environ").read_bytes()
                except OSError:
                    continue
                if tag in environ.split(b"\0"):
                    pids.add(int(entry))
        found |= {p for p in map(proctree.identity, pids) if p is not None}
        return found

    def kill_everything(self, seen: set[proctree.Proc]) -> int:
        """SIGKILL every process of the platform until none is left; how many were killed.

        All of them are stopped (SIGSTOP) first, until a round finds none running, and only then
        killed: signalled one by one, a Ray worker outlived its runner by a few milliseconds,
        long enough to record the attempt as the user's ``killed`` failure, which no machine
        that loses power all at once does."""
        for _ in range(50):
            if not [proc for proc in self.processes(seen) if proctree.stop_proc(proc)]:
                break
        killed: set[proctree.Proc] = set()
        for _ in range(50):
            left = self.processes(seen)
            if not left:
                break
            for proc in left:
                if proctree.kill_proc(proc):
                    killed.add(proc)
            time.sleep(0.2)
        assert self.process is not None
        self.process.wait(timeout=30)
        assert not self.processes(seen), "processes of the killed platform are still alive"
        return len(killed)


@dataclass
class Watcher:
    """A ``/jobs/watch`` client that keeps reading, resuming with ``Last-Event-ID``."""

    url: str
    token: str
    ids: list[str]
    events: list[tuple[int, str]] = field(default_factory=list)  # (id, event name)
    connects: int = 0
    ended: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def read_once(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.events:
            headers["Last-Event-ID"] = str(self.events[-1][0])
        params = {"ids": ",".join(self.ids)}
        timeout = httpx.Timeout(10.0, read=30.0)
        with httpx.stream(
            "GET", f"{self.url}{API}/jobs/watch", params=params, headers=headers, timeout=timeout
        ) as answer:
            if answer.status_code != 200:
                return
            self.connects += 1
            event_id, name = None, None
            for line in answer.iter_lines():
                if line.startswith("id:"):
                    event_id = int(line.split(":", 1)[1])
                elif line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event_id is not None and name:
                    self.events.append((event_id, name))
                    if name == "end":
                        self.ended.add(json.loads(line.split(":", 1)[1])["id"])
                elif not line:
                    event_id, name = None, None

    def loop(self) -> None:
        while not self.stop.is_set() and self.ended != set(self.ids):
            try:
                self.read_once()
            except (httpx.HTTPError, ValueError):
                pass
            self.stop.wait(0.5)


def platform_env(shared: Path, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPUTALOT_", "RAY_"))}
    env.update(
        {
            TAG_VAR: tag,
            "COMPUTALOT_SANDBOX_SHARED_DIRS": json.dumps([str(shared)]),
            "COMPUTALOT_KILL_GRACE_S": "1.0",
            "COMPUTALOT_DISPATCH_INTERVAL_S": "0.2",
            "COMPUTALOT_RATE_LIMIT_PER_MINUTE": "100000",
            "COMPUTALOT_MAX_OPEN_JOBS_PER_ACCOUNT": "1000",
            # HAProxy's stats/metrics ports, else picked where other Ray workers may take them.
            "RAY_SERVE_HAPROXY_STATS_PORT": str(quiet_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(quiet_port()),
        }
    )
    return env


@pytest.fixture
def own_platform(tmp_path: Path, task_tmp: Path) -> Iterator[Platform]:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = platform_env(task_tmp, uuid.uuid4().hex)
    plat = Platform(tmp_path / "data", quiet_port(), env, logs)
    yield plat
    if plat.process is not None and plat.process.poll() is None:
        plat.process.send_signal(signal.SIGINT)
        try:
            plat.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
    plat.kill_everything(set())


def test_platform_sigkilled_and_restarted_with_jobs_in_flight(
    own_platform: Platform, task_tmp: Path
) -> None:
    plat = own_platform
    plat.start()
    token = (plat.data_dir / "admin_key").read_text().strip()
    client = httpx.Client(
        base_url=plat.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    project = "chaos-restart"
    created = client.post(f"{API}/projects", json={"name": project})
    assert created.status_code == 201, created.text
    pushed = client.post(
        f"{API}/projects/{project}/push", content=make_tarball({"runner.py": RUNNER})
    )
    assert pushed.status_code == 200, pushed.text

    rng = random.Random(JOBS)
    ids: list[str] = []
    for _ in range(JOBS):
        items = [
            {"dir": str(task_tmp), "seconds": round(rng.uniform(0.5, 2.0), 2)}
            for _ in range(rng.randint(2, 4))
        ]
        body = {
            "project": project,
            "runner_command": ["python3", "runner.py"],
            "timeout_s": 60,
            "fan_out": {"items": items},
        }
        answer = client.post(f"{API}/jobs", json=body)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    tasks_total = sum(len(client.get(f"{API}/jobs/{i}/tasks").json()["tasks"]) for i in ids)

    watcher = Watcher(plat.url, token, ids)
    thread = threading.Thread(target=watcher.loop, daemon=True)
    thread.start()

    # Wait until a part of the work is done, remembering the platform's processes meanwhile.
    seen: set[proctree.Proc] = set()
    deadline = time.monotonic() + 240
    while len(list(task_tmp.glob("run-*"))) < max(4, tasks_total // 20):
        seen |= plat.processes(set())
        assert time.monotonic() < deadline, "the workload never got going"
        time.sleep(0.3)
    completed_before = {
        t["id"]: t["attempt"]
        for i in ids
        for t in client.get(f"{API}/jobs/{i}/tasks").json()["tasks"]
        if t["status"] == "completed"
    }
    seen |= plat.processes(set())
    statuses_at_kill = Counter(client.get(f"{API}/jobs/{i}").json()["status"] for i in ids)
    runs_at_kill = {p.name for p in task_tmp.glob("run-*")}
    events_before_kill = len(watcher.events)
    killed = plat.kill_everything(seen)
    down_at = time.monotonic()

    plat.start()
    restart_s = time.monotonic() - down_at
    deadline = time.monotonic() + size(240, 1200)
    while True:
        # Right after the restart an answer may still be an error envelope (the new platform
        # settling); only answers that persist past the deadline fail the test, with their text.
        answers = [client.get(f"{API}/jobs/{i}") for i in ids]
        jobs = [a.json() for a in answers if a.status_code == 200]
        refused = [f"{a.status_code} {a.text[:300]}" for a in answers if a.status_code != 200]
        if not refused and all(j["status"] in TERMINAL for j in jobs):
            break
        assert time.monotonic() < deadline, (Counter(j["status"] for j in jobs), refused[:3])
        time.sleep(1.0)
    thread.join(timeout=60)
    watcher.stop.set()

    tasks = [t for i in ids for t in client.get(f"{API}/jobs/{i}/tasks").json()["tasks"]]
    runs = Counter(p.name.rsplit("-", 1)[0][len("run-") :] for p in task_tmp.glob("run-*"))
    new_runs = {p.name for p in task_tmp.glob("run-*")} - runs_at_kill
    reran = sorted(t for t in completed_before if any(r.startswith(f"run-{t}-") for r in new_runs))
    # An attempt the kill cut short before its runner started left no marker: fewer runs than
    # attempts, never more; each lost attempt was retried as infrastructure loss.
    runs_over = [t["id"] for t in tasks if runs[t["id"]] > t["attempt"]]
    lost = {
        e["data"]["task_id"]
        for i in ids
        for e in events_of(client, i)
        if e["event"] == "retry" and e["data"]["error"]["code"] == "worker_lost"
    }
    unstarted_not_lost = [
        t["id"] for t in tasks if runs[t["id"]] < t["attempt"] and t["id"] not in lost
    ]
    want = sorted((e["id"], e["event"]) for i in ids for e in events_of(client, i))
    got = watcher.events
    numbered = [n for n, _ in got]
    report(
        "the whole platform SIGKILLed and restarted",
        {
            "jobs": len(ids),
            "tasks": len(tasks),
            "job statuses at the kill": dict(statuses_at_kill),
            "tasks completed before the kill": len(completed_before),
            "processes SIGKILLed": killed,
            "restart to ready (s)": round(restart_s, 1),
            "job statuses after": dict(Counter(j["status"] for j in jobs)),
            "task attempts": dict(Counter(t["attempt"] for t in tasks)),
            "completed tasks that ran again": len(reran),
            "tasks with more runs than attempts": len(runs_over),
            "tasks retried as worker_lost": len(lost),
            "attempts lost before their runner started": sum(
                t["attempt"] - runs[t["id"]] for t in tasks
            ),
            "watch connections": watcher.connects,
            "events before the kill / in all / stored": (
                f"{events_before_kill} / {len(got)} / {len(want)}"
            ),
        },
    )
    assert all(j["status"] == "completed" for j in jobs), Counter(j["status"] for j in jobs)
    assert all(t["status"] == "completed" for t in tasks)
    assert not reran, reran
    assert not runs_over, runs_over
    assert not unstarted_not_lost, unstarted_not_lost
    assert watcher.connects >= 2, "the watch client was never cut off and resumed"
    assert numbered == sorted(set(numbered)), "event ids increase, none twice"
    assert got == want, "the resumed client got exactly the stored events"
    client.close()
