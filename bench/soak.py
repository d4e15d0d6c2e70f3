"""Soak: do the engine's long-lived processes hold memory flat over many jobs?

One platform (``computalot.platform.start``); small jobs (one trivial runner task each) are
submitted through ``POST /api/v1/jobs/batch`` in batches, keeping at most ``--window`` open at
once (the open-job quota), until ``--jobs`` have ended. The dispatcher's and the event hub's
RSS (median of three samples, psutil) is read after ``--warmup`` jobs and at the end; every
per-job cache the engine keeps is bounded or dropped when its job ends, so the growth between
the two should stay within ``--goal-mb``.

Each sample is taken right after both actors ran a full garbage collection (``gc.collect()``
through Ray's ``__ray_call__``): between the collector's own full passes a process carries the
cyclic garbage of the jobs since the last one (Ray's per-``.options()`` wrapper classes, JSON
encoder closures), a saw-tooth whose phase would decide the figure. What is left after a full
collection is what the engine keeps. The highest RSS seen while the jobs ran (sampled every
2 s, no collection forced) is printed beside it.

    .venv/bin/python bench/soak.py                    # 10,000 jobs
    .venv/bin/python bench/soak.py --jobs 2000        # a shorter run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import ray
from _common import isolated_env, log, machine_line, machine_state, run_on_platform
from _dispatch_support import (
    COMMAND,
    RUNNER,
    check,
    head_processes,
    open_jobs,
    rss_sample,
    tarball,
)

ROLES = ("dispatcher", "event hub")
BATCH = 200  # the most jobs one POST /api/v1/jobs/batch takes


def submit_until(client: httpx.Client, total: int, window: int, done: int) -> int:
    """Submit jobs until ``total`` have been submitted and all have ended; return the count."""
    body = {"project": "soak", "runner_command": COMMAND, "payload": {"i": 0}}
    submitted = done
    last_report = time.monotonic()
    while True:
        open_now = open_jobs(client)
        if submitted >= total and open_now == 0:
            return submitted
        room = min(BATCH, window - open_now, total - submitted)
        if room <= 0:
            time.sleep(0.2)
            continue
        answer = check(client.post("/api/v1/jobs/batch", json={"jobs": [body] * room}), 201)
        refused = [j for j in answer["jobs"] if "id" not in j]
        if refused:
            raise RuntimeError(f"{len(refused)} jobs refused: {refused[0]}")
        submitted += room
        if time.monotonic() - last_report > 15:
            log(f"{submitted} jobs submitted, {open_now} open")
            last_report = time.monotonic()


def _collect(_actor: Any) -> int:
    import gc

    return gc.collect()


def engine_rss(namespace: str) -> dict[str, float]:
    """RSS (MB) by role, right after a full collection in each engine actor."""
    from computalot.engine.names import DISPATCHER_NAME, HUB_NAME

    for name in (DISPATCHER_NAME, HUB_NAME):
        actor = ray.get_actor(name, namespace=namespace)
        ray.get(actor.__ray_call__.remote(_collect), timeout=60)
    pids = {pid: role for pid, role in head_processes().items() if role in ROLES}
    return rss_sample(pids)


class PeakWatch:
    """The highest RSS (MB) of each role, sampled every ``every_s`` on a thread."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self.peak: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = {pid: role for pid, role in head_processes().items() if role in ROLES}
        while not self.stop.wait(self.every_s):
            for role, mb in rss_sample(pids, samples=1).items():
                self.peak[role] = max(self.peak.get(role, 0.0), mb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in all (10,000)")
    parser.add_argument("--warmup", type=int, default=500, help="jobs before the first sample")
    parser.add_argument("--window", type=int, default=400, help="open jobs at most")
    parser.add_argument("--goal-mb", type=float, default=20.0, help="allowed growth per process")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)

    data_dir = isolated_env({"COMPUTALOT_SANDBOX": args.sandbox})
    scratch = Path(tempfile.mkdtemp(prefix="computalot-soak-"))
    m_start = machine_state()

    def work(running: Any, results: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {running.admin_key}"}
        with httpx.Client(base_url=running.url, headers=headers, timeout=120) as client:
            check(client.post("/api/v1/projects", json={"name": "soak"}), 201)
            push = client.post("/api/v1/projects/soak/push", content=tarball({"script.py": RUNNER}))
            check(push, 200)
            started = time.monotonic()
            namespace = running.settings.ray_namespace
            done = submit_until(client, args.warmup, args.window, 0)
            results["warm"] = engine_rss(namespace)
            log(f"after {done} jobs: {results['warm']}")
            watch = PeakWatch()
            watch.thread.start()
            done = submit_until(client, args.jobs, args.window, done)
            watch.stop.set()
            results["peak"] = watch.peak
            results["end"] = engine_rss(namespace)
            results["jobs"] = done
            results["seconds"] = time.monotonic() - started
            log(f"after {done} jobs: {results['end']}")

    run = run_on_platform(
        work, num_cpus=args.num_cpus, max_seconds=args.max_seconds, cleanup=[data_dir, scratch]
    )
    results = run.results
    print(f"soak benchmark (num_cpus={args.num_cpus}, sandbox={args.sandbox})")
    print(machine_line(m_start, run.machine_end))
    if "end" not in results:
        print("the run did not finish")
        return run.status or 1
    print(f"{results['jobs']} jobs in {results['seconds']:.0f} s")
    print("RSS after a full collection; peak: the highest seen while the jobs ran")
    print(f"{'process':<12} {'after warm-up':>14} {'at the end':>11} {'growth':>8} {'peak':>10}")
    ok = True
    for role in ROLES:
        warm, end = results["warm"].get(role, 0.0), results["end"].get(role, 0.0)
        peak = results["peak"].get(role, 0.0)
        ok &= end - warm <= args.goal_mb
        print(f"{role:<12} {warm:>11.1f} MB {end:>8.1f} MB {end - warm:>+5.1f} MB {peak:>7.1f} MB")
    print(f"goal: growth within {args.goal_mb:g} MB per process: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
