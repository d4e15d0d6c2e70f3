"""API throughput: the authenticated hot reads through Ray Serve, each against ``/live`` through
the same Serve deployment (the framework's ceiling: no auth, no store), plus the uvicorn anchor.

Issue #18 §3: ``GET /api/v1/account`` and ``GET /api/v1/jobs/:id`` (a finished job) through
Serve should reach at least 0.5x the ceiling's requests/s (bar 0.25x); ``/jobs/:id/tasks``,
``/results/:id`` and the ``/jobs`` list are measured beside them. Then, in the same run, wrk
reads ``/jobs/:id`` again while client threads submit small jobs (some keys twice at once)
and cancel some (``bench/_api_writes.py``); the read-back check's verdict is printed with the
figures. The anchor is the *same*
FastAPI app (``serve_app.app.create_app``) served by plain uvicorn (one worker, its own
process) against the same store. Load: ``wrk -t2 -c32 -d10s --latency`` with the admin key,
after a warm-up of each target; ``--rounds N`` alternates the targets and takes medians.

    .venv/bin/python bench/api_throughput.py            # full run (~2 min)
    .venv/bin/python bench/api_throughput.py --quick    # 3 s per measurement
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _api_writes import check, run_writes, summary
from _common import (
    REPO,
    DeadlineExceeded,
    deadline,
    fmt,
    free_port,
    isolated_env,
    log,
    machine_line,
    machine_state,
    table,
    verdict,
    write_results,
)

GOAL_RATIO = 0.5
BAR_RATIO = 0.25
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, p50/p99 (ms), requests, errors from ``wrk --latency`` output."""

    def latency(pct: str) -> float | None:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if rps is None:
        raise RuntimeError(f"could not parse wrk output:\n{text}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": int(total.group(1)) if total else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def run_wrk(
    wrk: str, url: str, token: str, *, threads: int, conns: int, seconds: float
) -> dict[str, Any]:
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out = parse_wrk(done.stdout)
    out["raw"] = done.stdout
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over rounds; counts are summed."""
    out: dict[str, Any] = {"rounds": len(runs)}
    for key in ("rps", "p50_ms", "p99_ms"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    for key in ("requests", "non_2xx", "socket_errors"):
        out[key] = sum(r[key] or 0 for r in runs)
    out["per_round_rps"] = [r["rps"] for r in runs]
    return out


def wait_http(url: str, token: str, timeout_s: float = 60.0) -> None:
    from computalot.platform import wait_for_200

    wait_for_200(url, headers={"Authorization": f"Bearer {token}"}, timeout_s=timeout_s)


def start_uvicorn(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "_uvicorn_app:make",
        "--app-dir",
        str(REPO / "bench"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    with log_path.open("wb") as fh:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


RUNNER = """
import json, os, time
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
time.sleep(p.get("sleep", 0))
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"echo": p}, fh)
"""


def make_jobs(url: str, token: str, n_jobs: int) -> str:
    """Push a tiny project, run ``n_jobs`` one-task jobs to the end; return the first job's id
    (the one the per-job routes read: a finished job, the common read)."""
    import httpx
    from _dispatch_support import check, tarball

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        check(client.post("/api/v1/projects", json={"name": "apibench"}), 201)
        push = client.post("/api/v1/projects/apibench/push", content=tarball({"r.py": RUNNER}))
        check(push, 200)
        body = {"project": "apibench", "runner_command": ["python3", "r.py"], "tags": ["bench"]}
        jobs = [{**body, "payload": {"i": i}} for i in range(n_jobs)]
        batch = check(client.post("/api/v1/jobs/batch", json={"jobs": jobs}), 201, 200)
        ids = [j["id"] for j in batch["jobs"]]
        stop = time.monotonic() + 120
        while time.monotonic() < stop:
            states = [check(client.get(f"/api/v1/jobs/{i}"), 200)["status"] for i in ids]
            if all(s == "completed" for s in states):
                return str(ids[0])
            if any(s in ("failed", "cancelled") for s in states):
                raise RuntimeError(f"a bench job ended {states}")
            time.sleep(0.2)
        raise RuntimeError("the bench jobs did not finish in 120 s")


def targets(serve: str, uvicorn: str, job_id: str) -> dict[str, str]:
    """What is measured, in order: the ceiling first (``/live``, no auth, no store, through
    the same Serve deployment), then the authenticated reads through Serve, then the
    uvicorn anchor of the same app."""
    return {
        "serve /live (ceiling)": f"{serve}/live",
        "serve GET /account": f"{serve}/api/v1/account",
        "serve GET /jobs/:id": f"{serve}/api/v1/jobs/{job_id}",
        "serve GET /jobs/:id/tasks": f"{serve}/api/v1/jobs/{job_id}/tasks",
        "serve GET /results/:id": f"{serve}/api/v1/results/{job_id}",
        "serve GET /jobs?limit=20": f"{serve}/api/v1/jobs?limit=20",
        "uvicorn GET /account": f"{uvicorn}/api/v1/account",
    }


def writes_under_load(
    wrk: str, serve: str, job_id: str, token: str, args: argparse.Namespace, seconds: float
) -> tuple[dict[str, Any], str, list[str]]:
    """wrk on ``GET /jobs/:id`` while client threads submit and cancel small jobs
    (``bench/_api_writes.py``); the reads' figures, what was written, and every problem the
    read-back found (none: the writes were correct)."""
    reads: dict[str, Any] = {}

    def hammer() -> None:
        reads.update(
            run_wrk(
                wrk,
                f"{serve}/api/v1/jobs/{job_id}",
                token,
                threads=args.threads,
                conns=args.connections,
                seconds=seconds,
            )
        )

    reader = threading.Thread(target=hammer, name="wrk")
    reader.start()
    time.sleep(0.5)  # wrk's connections are open before the first submit
    # Each job runs ~0.3 s, so most cancels land while it is queued or running.
    body = {"project": "apibench", "runner_command": ["python3", "r.py"], "payload": {"sleep": 0.3}}
    load = run_writes(serve, token, body, n_jobs=args.write_jobs, threads=args.write_threads)
    reader.join()
    if load.seconds > seconds:
        log(f"the writes took {load.seconds:.1f} s, longer than the {seconds:.0f} s of reads")
    problems = check(serve, token, load)
    return reads, summary(load), problems


CEILING = "serve /live (ceiling)"
UNDER_WRITES = "serve GET /jobs/:id under writes"
#: The routes the goal is judged on (issue #18 §3): each as a ratio to the ceiling.
JUDGED = ("serve GET /account", "serve GET /jobs/:id")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-ups")
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up (3)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=20, help="finished jobs in the store")
    parser.add_argument("--write-jobs", type=int, default=None, help="jobs submitted (100)")
    parser.add_argument("--write-threads", type=int, default=4, help="submitting threads")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-seconds", type=float, default=None, help="hard runtime budget")
    args = parser.parse_args(argv)
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = args.warmup or (1.0 if args.quick else 3.0)
    args.write_jobs = args.write_jobs or (20 if args.quick else 100)
    n_targets = 7
    budget = args.max_seconds or 500.0 + n_targets * (warmup + args.rounds * duration + 10)

    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (apt-get install -y wrk); cannot run this benchmark.")
        return 2

    data_dir = isolated_env()
    m_start = machine_state()
    m_end = m_start
    from computalot import platform
    from computalot.settings import load_settings

    settings = load_settings()
    uvicorn_port = free_port()
    uvicorn_proc: subprocess.Popen[bytes] | None = None
    started_platform = False
    measured: dict[str, dict[str, Any]] = {}
    try:
        with deadline(budget):
            log(f"starting the platform (num_cpus={args.num_cpus}, data dir {data_dir})")
            t0 = time.monotonic()
            started_platform = True
            running = platform.start(settings, num_cpus=args.num_cpus, include_dashboard=False)
            log(f"platform ready at {running.url} in {time.monotonic() - t0:.1f} s")
            uvicorn_proc = start_uvicorn(uvicorn_port, data_dir / "uvicorn.log")
            job_id = make_jobs(running.url, running.admin_key, args.jobs)
            log(f"{args.jobs} finished jobs in the store; per-job routes read {job_id}")
            servers = targets(running.url, f"http://127.0.0.1:{uvicorn_port}", job_id)
            for name, url in servers.items():
                if uvicorn_proc.poll() is not None:
                    log_text = (data_dir / "uvicorn.log").read_text()[-2000:]
                    raise RuntimeError(f"uvicorn exited ({uvicorn_proc.returncode}):\n{log_text}")
                wait_http(url, running.admin_key)
                log(f"warming up {name} for {warmup:.0f} s")
                run_wrk(
                    wrk,
                    url,
                    running.admin_key,
                    threads=args.threads,
                    conns=args.connections,
                    seconds=warmup,
                )
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for rnd in range(args.rounds):  # alternate, so a busy neighbour hits all alike
                for name, url in servers.items():
                    log(
                        f"round {rnd + 1}/{args.rounds}: measuring {name}: "
                        f"wrk -t{args.threads} -c{args.connections} -d{duration:.0f}s"
                    )
                    runs[name].append(
                        run_wrk(
                            wrk,
                            url,
                            running.admin_key,
                            threads=args.threads,
                            conns=args.connections,
                            seconds=duration,
                        )
                    )
            measured = {name: median_run(r) for name, r in runs.items()}
            log(
                f"writes under load: {args.write_jobs} jobs submitted and some cancelled while "
                f"wrk reads GET /jobs/:id for {duration:.0f} s"
            )
            reads, written, problems = writes_under_load(
                wrk, running.url, job_id, running.admin_key, args, duration
            )
            measured[UNDER_WRITES] = median_run([reads])
            m_end = machine_state()
    except DeadlineExceeded as exc:
        log(str(exc))
        return 3
    finally:
        stop_process(uvicorn_proc)
        if started_platform:
            log("stopping the platform")
            platform.stop(settings)
        shutil.rmtree(data_dir, ignore_errors=True)

    ceiling = measured[CEILING]
    ratios = {
        name: (m["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0) for name, m in measured.items()
    }
    rows = [
        [
            name,
            fmt(m["rps"], 0),
            f"{ratios[name]:.2f}x",
            fmt(m["p50_ms"], 2),
            fmt(m["p99_ms"], 2),
            f"{m['requests']:,}",
            str(m["non_2xx"] + m["socket_errors"]),
        ]
        for name, m in measured.items()
    ]
    title = (
        f"wrk -t{args.threads} -c{args.connections} -d{duration:.0f}s --latency, "
        f"{args.rounds} round(s), median; ratio = req/s over the ceiling's"
    )
    print(machine_line(m_start, m_end))
    header = ["route", "req/s", "x ceiling", "p50 ms", "p99 ms", "requests", "errors"]
    print(table(title, header, rows))
    judged = {name: ratios[name] for name in JUDGED}
    ok = all(r >= GOAL_RATIO for r in judged.values())
    bar = all(r >= BAR_RATIO for r in judged.values())
    for name, r in judged.items():
        print(f"goal: {name} >= {GOAL_RATIO}x /live (bar {BAR_RATIO}x) -> {r:.2f}x")
    print(f"goal {verdict(ok)}; bar {verdict(bar)}")
    serve_over_uvicorn = (
        measured["serve GET /account"]["rps"] / measured["uvicorn GET /account"]["rps"]
        if measured["uvicorn GET /account"]["rps"]
        else 0.0
    )
    print(f"Serve/uvicorn on GET /account: {serve_over_uvicorn:.2f}x")
    writes_ok = not problems
    print(f"writes under load: {written}; read back: {verdict(writes_ok)}")
    for problem in problems[:20]:
        print(f"  - {problem}")
    errors = sum(m["non_2xx"] + m["socket_errors"] for m in measured.values())
    if errors:
        print(f"WARNING: {errors} non-2xx responses or socket errors; figures are suspect")
    path = write_results(
        "api_throughput",
        {
            "quick": args.quick,
            "load": {"threads": args.threads, "connections": args.connections, "seconds": duration},
            "routes": measured,
            "ratio_over_ceiling": {k: round(v, 3) for k, v in ratios.items()},
            "ratio_serve_over_uvicorn_account": round(serve_over_uvicorn, 3),
            "goal_ratio": GOAL_RATIO,
            "bar_ratio": BAR_RATIO,
            "pass": ok,
            "bar_pass": bar,
            "writes_under_load": {"written": written, "pass": writes_ok, "problems": problems},
            "machine": {"start": m_start, "end": m_end},
        },
    )
    print(f"results: {path.relative_to(REPO)}")
    return 0 if errors == 0 and writes_ok else 1


if __name__ == "__main__":
    sys.exit(main())
