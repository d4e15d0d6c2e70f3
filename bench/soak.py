"""Soak: do the engine's long-lived processes hold memory flat over many jobs?

One platform (``computalot.platform.start``); small jobs (one trivial runner task each) are
submitted through ``POST /api/v1/jobs/batch`` in batches, keeping at most ``--window`` open at
once (the open-job quota), until ``--jobs`` have ended. The dispatcher's and the event hub's
RSS (median of three samples, psutil) is read after ``--warmup`` jobs and at the end; every
per-job cache the engine keeps is bounded or dropped when its job ends, so the growth between
the two should stay within ``--goal-mb``.

    .venv/bin/python bench/soak.py                    # 10,000 jobs
    .venv/bin/python bench/soak.py --jobs 2000        # a shorter run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
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


def engine_rss() -> dict[str, float]:
    pids = {pid: role for pid, role in head_processes().items() if role in ROLES}
    return rss_sample(pids)


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
            done = submit_until(client, args.warmup, args.window, 0)
            results["warm"] = engine_rss()
            log(f"after {done} jobs: {results['warm']}")
            done = submit_until(client, args.jobs, args.window, done)
            results["end"] = engine_rss()
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
    print(f"{'process':<12} {'after warm-up':>14} {'at the end':>11} {'growth':>8}")
    ok = True
    for role in ROLES:
        warm, end = results["warm"].get(role, 0.0), results["end"].get(role, 0.0)
        ok &= end - warm <= args.goal_mb
        print(f"{role:<12} {warm:>11.1f} MB {end:>8.1f} MB {end - warm:>+5.1f} MB")
    print(f"goal: growth within {args.goal_mb:g} MB per process: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
