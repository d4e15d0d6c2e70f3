"""Dispatch benchmarks: latency, fan-out, batched throughput and head memory, in one run.

One platform (``computalot.platform.start``, num_cpus = this machine's cores, Ray dashboard on
for the Ray Jobs anchor) serves every part:

(a) submit -> ``end`` latency of a trivial runner job (client: POST /api/v1/jobs, then read
    /api/v1/jobs/:id/stream until ``end``), median of 30 after 3 warm-ups, next to a bare
    ``python3 script.py`` spawn (median of 30) and Ray Jobs (``JobSubmissionClient``, same
    script, median of 10 after a warm-up). Goals: ours - spawn <= 50 ms; Ray Jobs/ours >= 15x.
(b) 2,000-task fan-out (``fan_out.items``) wall time versus the same 2,000 subprocesses through
    plain ``ray.remote(num_cpus=1)`` tasks. Plain and ours alternate, plain first and last
    (P O P O P: ``--fanout-rounds`` 2); the ratio is the mean of the plain runs over the mean
    of ours, so drift in the machine's speed does not favour either side. Goal:
    plain/ours >= 0.9.
(c) 100,000 tiny elements, ``batch_size`` 1,000, warm workers (as in (b)): items/s submit -> end
    (goal >= 20,000/s) next
    to the ceiling the runner processes alone allow (one bare spawn per task with a task's
    1,000-element payload, ``num_cpus`` at a time), and every result present
    (GET /api/v1/results/:id, all pages).
(d) head-process RSS before/after 1,000 jobs that stay queued behind a sleeping blocker
    (``depends_on``). Goal: < 1 MB per job. Also: a trivial job's latency while they wait, and
    how far one-by-one cancels get in ``--cancel-budget`` s; then the blocker is cancelled and
    the rest end as dependency_failed. Runs right after (a) so its baseline is clean.
(e) a 2,000-task fan-out of a runner that imports numpy: ours with warm Python runners
    (``runtime.preload: ["numpy"]``) and with ``warm_python: false`` versus plain
    ``ray.remote`` + subprocess (goal plain/warm >= 5x, bar 3x), and the trivial job's
    submit -> ``end`` with warm runners (goal <= 25 ms median); ``bench/_dispatch_warm.py``.
    Turns ``COMPUTALOT_WARM_PYTHON`` on for this run (the project of (a)-(d) opts out); with
    ``--sandbox bwrap`` (the default) warm tasks are forked inside their warm sandbox.
(f) a 10,000-task job submitted twice with ``"cache": true`` (``bench/_dispatch_cache.py``):
    the first's wall time, the second's POST -> ``end`` (goal < 1 s) and the processes the
    second ran (goal 0).

Ours and the bare spawn in (a) alternate run by run, and (b)/(c) print the CPU seconds each
process used, so a busy neighbour on the machine (the header line reports the load average and
other local Ray clusters) is visible rather than silently folded into a ratio.

    .venv/bin/python bench/dispatch.py                # full run (~20 min on 2 cores)
    .venv/bin/python bench/dispatch.py --quick        # smaller sizes (~4 min)
    .venv/bin/python bench/dispatch.py --parts ac     # only some parts
    .venv/bin/python bench/dispatch.py --parts e      # warm Python runners (sandboxed)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    REPO,
    isolated_env,
    log,
    machine_line,
    machine_state,
    median_ms,
    run_on_platform,
    write_results,
)
from _dispatch_cache import part_f, report_f
from _dispatch_report import (
    report,
)
from _dispatch_support import (
    COMMAND,
    GOALS,
    REQUIRED_ROLES,
    RUNNER,
    breakdown,
    cancel_all,
    check,
    cpu_delta,
    cpu_snapshot,
    fanout_timeline,
    free_agent_port,
    head_processes,
    machine_cpu,
    machine_delta,
    open_jobs,
    plain_ray_fanout,
    ray_job_once,
    ray_jobs_client,
    rss_sample,
    run_job,
    spawn_once,
    tarball,
    wait_status,
)
from _dispatch_warm import OPT_OUT, part_e, report_e


def part_a(
    client: httpx.Client, project: str, project_dir: Path, scratch: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Ours and the bare spawn alternate, so a busy neighbour on the machine slows both alike."""
    body = {"project": project, "runner_command": COMMAND, "payload": {"i": 0}}
    log(f"(a) ours and bare spawn, interleaved: {args.warmups} warm-ups + {args.runs} runs each")
    for _ in range(args.warmups):
        run_job(client, body, timeout_s=120)
        spawn_once(project_dir, scratch, {"i": 0})
    ours: list[float] = []
    spawn: list[float] = []
    parts: list[dict[str, float]] = []
    for _ in range(args.runs):
        run = run_job(client, body, timeout_s=120)
        ours.append(run["wall_s"])
        spawn.append(spawn_once(project_dir, scratch, {"i": 0}))
        parts.append(breakdown(client, run))
    ray_jobs: list[float] = []
    if args.ray_jobs_runs:
        log(f"(a) Ray Jobs: 1 warm-up + {args.ray_jobs_runs} runs")
        rj = ray_jobs_client()
        for attempt in range(30):  # the agent registers a little after the dashboard
            try:
                ray_job_once(rj, project_dir, scratch, -1)
                break
            except RuntimeError as exc:
                if "No available agent" not in str(exc) or attempt == 29:
                    raise
                time.sleep(1.0)
        ray_jobs = [ray_job_once(rj, project_dir, scratch, n) for n in range(args.ray_jobs_runs)]
    out: dict[str, Any] = {
        "ours_ms": median_ms(ours),
        "ours_p90_ms": sorted(ours)[int(0.9 * (len(ours) - 1))] * 1000,
        "spawn_ms": median_ms(spawn),
        "ray_jobs_ms": median_ms(ray_jobs) if ray_jobs else None,
        "runs": args.runs,
        "ray_jobs_runs": len(ray_jobs),
        "breakdown_ms": {k: median_ms([p[k] for p in parts]) for k in parts[0]},
    }
    out["overhead_ms"] = out["ours_ms"] - out["spawn_ms"]
    out["ray_jobs_ratio"] = out["ray_jobs_ms"] / out["ours_ms"] if ray_jobs else None
    return out


def warm_workers(client: httpx.Client, project: str) -> None:
    """Like the plain anchor's 4 warm-up tasks: the revision's Ray workers exist before the
    clock starts (a cold start is Ray's worker launch, ~1.5 s here, not dispatch)."""
    warm = {
        "project": project,
        "runner_command": COMMAND,
        "fan_out": {"items": [{"i": i} for i in range(4)]},
    }
    run_job(client, warm, timeout_s=120)


def part_b(
    client: httpx.Client,
    project: str,
    project_dir: Path,
    scratch: Path,
    n: int,
    num_cpus: int,
    rounds: int,
) -> dict[str, Any]:
    """Plain Ray and ours alternate, plain first and last (P O P O P for two rounds); the ratio
    is the mean of the plain runs over the mean of ours, so a machine that speeds up or slows
    down during the part (a noisy neighbour) does not favour either side."""

    def plain_run(k: int) -> tuple[float, dict[str, float], dict[str, float]]:
        log(f"(b) plain Ray run {k}: {n} tasks")
        seconds, cpu, machine = plain_ray_fanout(project_dir, scratch, n)
        log(f"(b) plain Ray run {k}: {seconds:.1f} s")
        return seconds, cpu, machine

    def ours_run(k: int) -> tuple[dict[str, Any], dict[str, float], dict[str, float]]:
        log(f"(b) ours run {k}: {n}-task fan-out")
        warm_workers(client, project)
        body = {
            "project": project,
            "runner_command": COMMAND,
            "fan_out": {"items": [{"i": i} for i in range(n)]},
        }
        cpu0, machine0 = cpu_snapshot(), machine_cpu()
        ours = run_job(client, body, timeout_s=max(600.0, n * 1.0))
        cpu_ours = cpu_delta(cpu0, cpu_snapshot())
        machine_ours = machine_delta(machine0, machine_cpu())
        counts = ours["end"]["task_counts"]
        if counts["completed"] != n:
            raise RuntimeError(f"(b) fan-out completed {counts['completed']} of {n}")
        log(f"(b) ours run {k}: {ours['wall_s']:.1f} s")
        return ours, cpu_ours, machine_ours

    plains = [plain_run(1)]
    ours_runs = []
    for k in range(1, rounds + 1):
        ours_runs.append(ours_run(k))
        plains.append(plain_run(k + 1))
    plain_s = statistics.mean(p[0] for p in plains)
    ours_s = statistics.mean(o[0]["wall_s"] for o in ours_runs)
    return {
        "tasks": n,
        "rounds": rounds,
        "plain_s": plain_s,
        "plain_runs_s": [p[0] for p in plains],
        "ours_s": ours_s,
        "ours_runs_s": [o[0]["wall_s"] for o in ours_runs],
        "ours_submit_s": statistics.mean(o[0]["submit_s"] for o in ours_runs),
        "stream_events": ours_runs[-1][0]["events"],
        "fanout_ratio": plain_s / ours_s,
        "cpu_s_plain": mean_of([p[1] for p in plains]),
        "cpu_s_ours": mean_of([o[1] for o in ours_runs]),
        "machine_s_plain": mean_of([p[2] for p in plains]),
        "machine_s_ours": mean_of([o[2] for o in ours_runs]),
        "timeline_s": fanout_timeline(client, ours_runs[-1][0], num_cpus),
    }


def mean_of(samples: list[dict[str, float]]) -> dict[str, float]:
    """Key by key mean of several runs' CPU tables (a key missing from a run counts as 0)."""
    keys = dict.fromkeys(k for sample in samples for k in sample)
    return {k: statistics.mean(sample.get(k, 0.0) for sample in samples) for k in keys}


def part_c(
    client: httpx.Client,
    project: str,
    project_dir: Path,
    scratch: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The ceiling is what the runner processes alone allow: one bare spawn per task, given the
    same payload a task gets (a batch of ``batch_size`` elements), ``num_cpus`` at a time."""
    n, batch = args.items, args.batch_size
    one_batch = {"batch": [{"x": i} for i in range(batch)]}
    spawn_once(project_dir, scratch, one_batch)
    batch_spawn_ms = median_ms([spawn_once(project_dir, scratch, one_batch) for _ in range(5)])
    tasks = -(-n // batch)
    ceiling = n / (tasks * batch_spawn_ms / 1000 / args.num_cpus)
    warm_workers(client, project)
    log(f"(c) {n:,} elements, batch_size {batch}")
    body = {
        "project": project,
        "runner_command": COMMAND,
        "payload": {"x": list(range(n))},
        "fan_out": {"by": "x"},
        "batch_size": batch,
    }
    cpu0 = cpu_snapshot()
    ours = run_job(client, body, timeout_s=600)
    cpu = cpu_delta(cpu0, cpu_snapshot())
    timeline = fanout_timeline(client, ours, args.num_cpus)
    log(f"(c) {ours['wall_s']:.1f} s; checking results")
    t0 = time.perf_counter()
    seen, pages, cursor = 0, 0, None
    first: list[dict[str, Any]] = []
    last: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = check(client.get(f"/api/v1/results/{ours['id']}", params=params), 200)
        results = page["results"]
        if pages == 0:
            first = results
        pages += 1
        for r in results:
            if r["index"] != seen or r["result"] != {"y": 2 * seen}:
                raise RuntimeError(f"(c) result {seen} is wrong: {r}")
            seen += 1
        last = results or last
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if seen != n or not first or first[0]["index"] != 0 or last[-1]["index"] != n - 1:
        raise RuntimeError(f"(c) {seen} of {n} results came back")
    return {
        "elements": n,
        "batch_size": batch,
        "wall_s": ours["wall_s"],
        "submit_s": ours["submit_s"],
        "items_per_s": n / ours["wall_s"],
        "batch_spawn_ms": batch_spawn_ms,
        "spawn_ceiling_items_per_s": ceiling,
        "cpu_s": cpu,
        "timeline_s": timeline,
        "results_checked": seen,
        "result_pages": pages,
        "results_read_s": time.perf_counter() - t0,
    }


def part_d(
    client: httpx.Client,
    url: str,
    key: str,
    project: str,
    n: int,
    probe_runs: int,
    cancel_budget_s: float,
) -> dict[str, Any]:
    log(f"(d) blocker + {n} dependent jobs")
    blocker = check(
        client.post(
            "/api/v1/jobs",
            json={
                "project": project,
                "runner_command": COMMAND,
                "payload": {"sleep": 3600},
                "timeout_s": 3600,
            },
        ),
        201,
    )
    wait_status(client, blocker["id"], {"running"})
    time.sleep(2.0)
    pids = head_processes()
    missing = REQUIRED_ROLES - set(pids.values())
    if missing:
        raise RuntimeError(f"(d) head processes not found: {sorted(missing)}")
    before = rss_sample(pids)
    body = {"project": project, "runner_command": COMMAND, "depends_on": [blocker["id"]]}
    ids: list[str] = []
    t0 = time.perf_counter()
    while len(ids) < n:
        size = min(200, n - len(ids))
        jobs = [dict(body, payload={"i": len(ids) + k}) for k in range(size)]
        answer = check(client.post("/api/v1/jobs/batch", json={"jobs": jobs}), 201, 200)
        for job in answer["jobs"]:
            if "id" not in job or job.get("status") in ("completed", "failed", "cancelled"):
                raise RuntimeError(f"(d) batch submit failed: {str(job)[:300]}")
            ids.append(job["id"])
    submit_s = time.perf_counter() - t0
    time.sleep(3.0)  # a few dispatcher cycles over the blocked jobs
    after = rss_sample(pids)
    probe = {"project": project, "runner_command": COMMAND, "payload": {"i": 0}}
    log(f"(d) probe latency with {n} blocked jobs: {probe_runs} runs")
    probes = [run_job(client, probe, timeout_s=120)["wall_s"] for _ in range(probe_runs)]
    log(f"(d) cancelling {n} jobs (at most {cancel_budget_s:.0f} s), then the blocker")
    t1 = time.perf_counter()
    cancelled, failures = asyncio.run(cancel_all(url, key, ids, cancel_budget_s))
    cancel_s = time.perf_counter() - t1
    check(client.put(f"/api/v1/jobs/{blocker['id']}/cancel"), 200)
    wait_status(client, blocker["id"], {"cancelled", "failed"})
    t2 = time.monotonic()
    left = open_jobs(client)
    while left and time.monotonic() - t2 < 120:  # the rest end as dependency_failed
        time.sleep(0.5)
        left = open_jobs(client)
    total_before = sum(before.values())
    total_after = sum(after.values())
    return {
        "jobs": n,
        "submit_s": submit_s,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "total_before_mb": total_before,
        "total_after_mb": total_after,
        "mb_per_job": (total_after - total_before) / n,
        "probe_ms": median_ms(probes),
        "cancel_s": cancel_s,
        "cancel_budget_s": cancel_budget_s,
        "cancelled": cancelled,
        "cancel_failures": failures,
        "open_jobs_at_end": left,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a quick run")
    parser.add_argument("--runs", type=int, default=None, help="(a) measured runs (30)")
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--ray-jobs-runs", type=int, default=None, help="(a) Ray Jobs runs (10)")
    parser.add_argument("--fanout", type=int, default=None, help="(b) tasks (2,000)")
    parser.add_argument(
        "--fanout-rounds", type=int, default=None, help="(b) runs of ours, each between two plain"
    )
    parser.add_argument("--items", type=int, default=None, help="(c) elements (100,000)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--queued", type=int, default=None, help="(d) queued jobs (1,000)")
    parser.add_argument("--cached", type=int, default=None, help="(f) cached tasks (10,000)")
    parser.add_argument(
        "--cancel-budget", type=float, default=60.0, help="(d) seconds for one-by-one cancels"
    )
    parser.add_argument("--parts", default="abcdf", help="which parts to run, e.g. 'ad'")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--sandbox",
        choices=["bwrap", "none"],
        default="bwrap",
        help="COMPUTALOT_SANDBOX for our tasks (none: the engine alone, docs/sandbox.md)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="(a)-(d), (f) with warm Python runners too (their history is without: fresh runners)",
    )
    parser.add_argument("--max-seconds", type=float, default=None, help="hard runtime budget")
    args = parser.parse_args(argv)
    q = args.quick
    args.runs = args.runs or (10 if q else 30)
    args.ray_jobs_runs = args.ray_jobs_runs if args.ray_jobs_runs is not None else (3 if q else 10)
    args.fanout = args.fanout or (200 if q else 2000)
    args.fanout_rounds = args.fanout_rounds or (1 if q else 2)
    args.items = args.items or (20_000 if q else 100_000)
    args.queued = args.queued or (200 if q else 1000)
    args.cached = args.cached or (2000 if q else 10_000)
    args.max_seconds = args.max_seconds or (600.0 if q else 1800.0)

    warm_env = {"COMPUTALOT_WARM_PYTHON": "true"} if "e" in args.parts else {}
    data_dir = isolated_env({"COMPUTALOT_SANDBOX": args.sandbox, **warm_env})
    m_start = machine_state()
    scratch = Path(tempfile.mkdtemp(prefix="computalot-bench-scratch-"))
    project_dir = scratch / "project"
    project_dir.mkdir()
    (project_dir / "script.py").write_text(RUNNER)
    free_agent_port()

    def work(running: Any, results: dict[str, Any]) -> None:
        with httpx.Client(
            base_url=running.url,
            headers={"Authorization": f"Bearer {running.admin_key}"},
            timeout=120,
        ) as client:
            check(client.post("/api/v1/projects", json={"name": "bench"}), 201)
            # (a)-(d) and (f) measure fresh runner processes, as their history does; warm
            # runners (on by default) are part (e)'s, or theirs too with --warm.
            files = {"script.py": RUNNER, **({} if args.warm else OPT_OUT)}
            check(client.post("/api/v1/projects/bench/push", content=tarball(files)), 200)
            # (d) runs second: its RSS baseline must not include what (b)/(c) leave in the
            # head processes' heaps. The report keeps the a-b-c-d order.
            if "a" in args.parts:
                results["a"] = part_a(client, "bench", project_dir, scratch, args)
            if "d" in args.parts:
                results["d"] = part_d(
                    client,
                    running.url,
                    running.admin_key,
                    "bench",
                    args.queued,
                    5,
                    args.cancel_budget,
                )
            if "b" in args.parts:
                results["b"] = part_b(
                    client,
                    "bench",
                    project_dir,
                    scratch,
                    args.fanout,
                    args.num_cpus,
                    args.fanout_rounds,
                )
            if "c" in args.parts:
                results["c"] = part_c(client, "bench", project_dir, scratch, args)
            if "e" in args.parts:
                results["e"] = part_e(
                    client,
                    scratch,
                    args.fanout,
                    args.num_cpus,
                    args.fanout_rounds,
                    args.runs,
                    args.sandbox,
                )
            if "f" in args.parts:
                results["f"] = part_f(client, "bench", args.cached)

    done = run_on_platform(
        work,
        num_cpus=args.num_cpus,
        max_seconds=args.max_seconds,
        include_dashboard=True,
        cleanup=[data_dir, scratch],
    )
    results, status, m_end = done.results, done.status, done.machine_end

    print(
        f"dispatch benchmark (num_cpus={args.num_cpus}, quick={q}, sandbox={args.sandbox}"
        f"{', warm runners in (a)-(d)' if args.warm else ''})"
    )
    print(machine_line(m_start, m_end))
    ok = report(results)
    if results.get("e"):
        ok = report_e(results["e"]) and ok
    if results.get("f"):
        ok = report_f(results["f"]) and ok
    path = write_results(
        "dispatch",
        {
            "quick": q,
            "num_cpus": args.num_cpus,
            "goals": GOALS,
            "pass": ok,
            "machine": {"start": m_start, "end": m_end},
            **results,
        },
    )
    print(f"results: {path.relative_to(REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
