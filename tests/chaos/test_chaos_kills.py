"""Random SIGKILLs of runners and of Ray workers during a mixed workload (issue #19, item 6a;
docs/chaos.md).

A mixed workload (warm and fresh Python runners, tasks that complete and tasks that fail on
purpose, fan-outs and single tasks, several ``max_retries``) runs on the session's platform while
a killer SIGKILLs, at random, either a running runner (the user's process: the attempt fails as
``killed``, on the job's ``max_retries``) or the Ray worker process running it (infrastructure:
``worker_lost``, on the platform's ``worker_lost_retries``), per docs/llms-full.md "Timeouts,
retries and cancel". Each runner starts a child whose command line names its task and attempt,
so the killer knows its host pid and which attempt it killed; only descendants of this test
process (the platform it started) are ever signalled.

Afterwards: every job is terminal with task counts matching its tasks; each task's attempts,
its retry events' codes and its final status are exactly what the rules give for the kills it
got; no process of the platform's tree was left behind outside it (re-parented to init) and no
runner's child survived; Ray's available resources are back to the baseline. 60 tasks and 6
kills here, 500 tasks and 50 kills under ``CHAOS=long``; the figures are printed.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from tests.support import proctree
from tests.support.chaos import LONG, report, size
from tests.support.helpers import events_of

API = "/api/v1"
TASKS = size(60, 500)
KILLS = size(6, 50)
#: Seconds between kills: the workload keeps running well past the last one.
KILL_EVERY_S = size(1, 1) * 1.5
SETTLE_S = 90.0

pytestmark = pytest.mark.timeout(1800 if LONG else 300)

RUNNER = r"""
import json, os, subprocess, sys, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
task, attempt = os.environ["COMPUTALOT_TASK_ID"], os.environ["COMPUTALOT_ATTEMPT"]
marker = "chaos-%s-%s-%s" % (p["run"], task, attempt)
open(os.path.join(p["dir"], "run-%s-%s" % (task, attempt)), "w").close()
# The child's command line carries the marker: the killer finds this runner as its parent.
child = subprocess.Popen(["sh", "-c", "while :; do sleep 1; done", marker])
time.sleep(p["seconds"])
child.kill()
child.wait()
if p["mode"] == "fail":
    sys.exit(2)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"task": task, "attempt": int(attempt)}, fh)
"""

WARM = ["python3", "runner.py"]
FRESH = ["python3", "-u", "runner.py"]  # an interpreter flag: never warm


@dataclass
class Kill:
    task_id: str
    attempt: int
    kind: str  # "runner" | "worker"
    pid: int


@dataclass
class Killer:
    """Kills at random, every ``every_s``, until ``target`` kills or ``stop`` is set; meanwhile
    remembers every process seen in the platform's tree (runners, sandboxes, workers)."""

    run: str
    target: int
    every_s: float
    kills: list[Kill] = field(default_factory=list)
    seen: set[proctree.Proc] = field(default_factory=set)
    misses: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=lambda: random.Random(1906))

    def runners(self, tree: set[int]) -> list[tuple[int, str, int, proctree.Proc | None]]:
        """(runner pid, task id, attempt, its marked child) of every live runner of this run in
        the tree."""
        prefix = f"chaos-{self.run}-"
        found = []
        for pid in tree:
            line = proctree.cmdline(pid)
            if prefix in line:
                task_id, attempt = line.split(prefix, 1)[1].split()[0].rsplit("-", 1)
                parent = proctree.parent_of(pid)
                if parent in tree:
                    found.append((parent, task_id, int(attempt), proctree.identity(pid)))
        return found

    def ray_worker(self, pid: int, tree: set[int]) -> int | None:
        for up in proctree.ancestors(pid):
            if up not in tree:
                return None
            if proctree.cmdline(up).startswith("ray::"):
                return up
        return None

    def remember(self, tree: set[int]) -> None:
        for pid in tree:
            proc = proctree.identity(pid)
            if proc is not None:
                self.seen.add(proc)

    def kill_one(self) -> None:
        tree = proctree.session_tree()
        self.remember(tree)
        done = {(k.task_id, k.attempt) for k in self.kills}
        candidates = [r for r in self.runners(tree) if (r[1], r[2]) not in done]
        if not candidates:
            self.misses += 1
            return
        pid, task_id, attempt, child = self.rng.choice(candidates)
        kind = "worker" if len(self.kills) % 2 else "runner"
        victim = self.ray_worker(pid, tree) if kind == "worker" else pid
        if victim is None:
            self.misses += 1
            return
        proc = proctree.identity(victim)
        # The runner's child lives until the runner is about to write its result: alive now,
        # the attempt cannot have ended before the signal lands (microseconds later).
        running = child is not None and proctree.alive(child)
        if proc is not None and running and proctree.kill_proc(proc):
            self.kills.append(Kill(task_id, attempt, kind, victim))

    def loop(self) -> None:
        next_kill = time.monotonic() + self.every_s
        while not self.stop.is_set():
            if len(self.kills) < self.target and time.monotonic() >= next_kill:
                self.kill_one()
                next_kill = time.monotonic() + self.every_s * self.rng.uniform(0.5, 1.5)
            else:
                self.remember(proctree.session_tree())
            self.stop.wait(0.25)


def workload(run: str, shared: Path, total: int) -> list[dict[str, Any]]:
    """Job bodies, ``total`` tasks in all: the mix the module docstring names."""
    rng = random.Random(total)
    bodies: list[dict[str, Any]] = []
    left, n = total, 0
    while left > 0:
        shape = n % 4
        count = 1 if shape == 3 else min(left, rng.randint(5, 20))
        items = []
        for i in range(count):
            fails = shape == 2 and i % 3 == 0
            seconds = round(rng.uniform(0.4, 1.6), 2)
            items.append(
                {
                    "run": run,
                    "dir": str(shared),
                    "seconds": seconds,
                    "mode": "fail" if fails else "ok",
                }
            )
        body: dict[str, Any] = {
            "runner_command": FRESH if shape == 1 else WARM,
            "timeout_s": 60,
            "max_retries": [3, 1, 1, 0][shape],
            "tags": [f"chaos-{run}"],
        }
        body["fan_out" if count > 1 else "payload"] = {"items": items} if count > 1 else items[0]
        bodies.append(body)
        left -= count
        n += 1
    return bodies


def expected_end(
    fails: bool, killed: dict[int, str], max_retries: int, lost_budget: int
) -> tuple[str, int, list[str]]:
    """(status, attempts, each failed attempt's code) the retry rules give a task whose attempts
    in ``killed`` got those codes (``engine.outcomes.should_retry``, docs/llms-full.md)."""
    attempt = lost = 0
    codes: list[str] = []
    while True:
        attempt += 1
        code = killed.get(attempt) or ("exit_nonzero" if fails else None)
        if code is None:
            return "completed", attempt, codes
        codes.append(code)
        if code == "worker_lost":
            lost += 1
            retry = lost <= lost_budget
        else:
            retry = attempt - lost <= max_retries
        if not retry:
            return "failed", attempt, codes


def settled_resources(baseline: dict[str, float] | None, timeout_s: float) -> dict[str, float]:
    """Ray's available resources (the object store's left out: it is a cache, not a claim),
    once unchanged for a second, or equal to ``baseline``; the last reading after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, float] = {}
    stable_since = time.monotonic()
    while True:
        now = {
            k: round(v, 3)
            for k, v in ray.available_resources().items()
            if k != "object_store_memory"
        }
        if baseline is not None and now == baseline:
            return now
        if now != last:
            last, stable_since = now, time.monotonic()
        elif baseline is None and time.monotonic() - stable_since >= 1.0:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def tasks_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/jobs/{job_id}/tasks", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["tasks"])


def wait_terminal(client: httpx.Client, ids: list[str], timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = [client.get(f"{API}/jobs/{job_id}").json() for job_id in ids]
        if all(j["status"] in ("completed", "failed", "partial", "cancelled") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, Counter(j["status"] for j in jobs)
        time.sleep(1.0)


def test_random_sigkills_of_runners_and_ray_workers(
    platform: Any, new_account: Any, make_project: Any, task_tmp: Path
) -> None:
    member = new_account("member")
    project = make_project(member, {"runner.py": RUNNER})
    run = uuid.uuid4().hex[:8]
    lost_budget = platform.settings.worker_lost_retries
    baseline = settled_resources(None, 30.0)

    killer = Killer(run, KILLS, KILL_EVERY_S)
    thread = threading.Thread(target=killer.loop, daemon=True)
    thread.start()
    started = time.monotonic()
    bodies = workload(run, task_tmp, TASKS)
    ids = []
    for body in bodies:
        answer = member.post(f"{API}/jobs", json={"project": project, **body})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    try:
        jobs = wait_terminal(member, ids, timeout_s=size(240, 1500))
    finally:
        killer.stop.set()
        thread.join(timeout=30)
    elapsed = time.monotonic() - started

    # Exact retries: each task's attempts and codes are what the rules give for its kills.
    by_attempt = {(k.task_id, k.attempt): k for k in killer.kills}
    codes = {"runner": "killed", "worker": "worker_lost"}
    tasks_total = retries_total = 0
    statuses: Counter[str] = Counter()
    wrong: list[str] = []
    for body, job in zip(bodies, jobs, strict=True):
        tasks = tasks_of(member, job["id"])
        events = events_of(member, job["id"])
        items = body["fan_out"]["items"] if "fan_out" in body else [body["payload"]]
        assert len(tasks) == len(items), job
        assert Counter(t["status"] for t in tasks) == Counter(
            {k: v for k, v in job["task_counts"].items() if v and k != "total"}
        ), job
        for task, item in zip(tasks, items, strict=True):
            killed = {a: codes[k.kind] for (t, a), k in by_attempt.items() if t == task["id"]}
            want = expected_end(item["mode"] == "fail", killed, body["max_retries"], lost_budget)
            retried = [
                e["data"]["error"]["code"]
                for e in events
                if e["event"] == "retry" and e["data"]["task_id"] == task["id"]
            ]
            final = [task["error"]["code"]] if task["status"] == "failed" else []
            got = (task["status"], task["attempt"], retried + final)
            if got != want:
                wrong.append(f"{task['id']} ({item['mode']}, kills {killed}): {got} != {want}")
            ran = len(list(task_tmp.glob(f"run-{task['id']}-*")))
            if ran != task["attempt"]:
                wrong.append(f"{task['id']}: {ran} runs for {task['attempt']} attempts")
            tasks_total += 1
            retries_total += len(retried)
            statuses[task["status"]] += 1
        assert [e["event"] for e in events].count("end") == 1, job["id"]

    # No orphan: every process seen in the platform's tree is gone or still inside it.
    time.sleep(2.0)
    tree = proctree.session_tree()
    orphans = [
        (pid, proctree.cmdline(pid)[:120])
        for pid, start in killer.seen
        if proctree.alive((pid, start)) and pid not in tree
    ]
    # Anywhere on the host: a runner's marked child, inside the platform's tree or not.
    leftover_children = [
        (pid, proctree.cmdline(pid))
        for pid in proctree.parents()
        if f"chaos-{run}-" in proctree.cmdline(pid)
    ]
    after = settled_resources(baseline, SETTLE_S)
    report(
        "random SIGKILLs of runners and Ray workers",
        {
            "jobs": len(jobs),
            "job statuses": dict(Counter(j["status"] for j in jobs)),
            "tasks": tasks_total,
            "task statuses": dict(statuses),
            "kills done": f"{len(killer.kills)} ({Counter(k.kind for k in killer.kills)})",
            "kill rounds with nothing to kill": killer.misses,
            "retries (retry events)": retries_total,
            "tasks whose attempts differ from the rules": len(wrong),
            "processes seen in the platform's tree": len(killer.seen),
            "orphans": len(orphans),
            "runner children left": len(leftover_children),
            "resources before": baseline,
            "resources after": after,
            "seconds": round(elapsed, 1),
        },
    )
    assert len(killer.kills) == KILLS, killer.kills
    assert not wrong, "\n".join(wrong[:20])
    assert not orphans, orphans
    assert not leftover_children, leftover_children
    assert after == baseline, (baseline, after)
    assert json.dumps(after)  # the figures are plain numbers
