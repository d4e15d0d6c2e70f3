"""API throughput: ``GET /api/v1/account`` through Ray Serve versus the same app under uvicorn.

Anchor: the *same* FastAPI app (``serve_app.app.create_app``), against the same data dir and
SQLite store, served by plain uvicorn (one worker, its own process, another free port). Load:
``wrk -t2 -c32 -d10s --latency`` with the admin key, after a warm-up of each server. Goal:
Serve (the platform's default config, as ``computalot.platform.start`` deploys it) reaches at
least 0.5x uvicorn's requests/s.

    .venv/bin/python bench/api_throughput.py            # full run (~1 min)
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
import time
from pathlib import Path
from typing import Any

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-ups")
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up (3)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternating uvicorn/Serve rounds (median)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-seconds", type=float, default=None, help="hard runtime budget")
    args = parser.parse_args(argv)
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = args.warmup or (1.0 if args.quick else 3.0)
    budget = args.max_seconds or 240.0 + 2 * (warmup + args.rounds * duration + 10 * args.rounds)

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
            uvicorn_url = f"http://127.0.0.1:{uvicorn_port}"
            servers = {
                "uvicorn": f"{uvicorn_url}/api/v1/account",
                "serve": f"{running.url}/api/v1/account",
            }
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
            for rnd in range(args.rounds):  # alternate, so a busy neighbour hits both alike
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

    uv, sv = measured["uvicorn"], measured["serve"]
    ratio = sv["rps"] / uv["rps"] if uv["rps"] else 0.0
    rows = []
    for label, m in (("uvicorn (anchor)", uv), ("Ray Serve (platform default)", sv)):
        rows.append(
            [
                label,
                fmt(m["rps"], 0),
                fmt(m["p50_ms"], 2),
                fmt(m["p99_ms"], 2),
                f"{m['requests']:,}",
                str(m["non_2xx"] + m["socket_errors"]),
            ]
        )
    rows.append(
        [
            "ratio Serve/uvicorn",
            f"{ratio:.2f}x",
            f"{sv['p50_ms'] / uv['p50_ms']:.2f}x" if uv["p50_ms"] else "-",
            f"{sv['p99_ms'] / uv['p99_ms']:.2f}x" if uv["p99_ms"] else "-",
            "",
            "",
        ]
    )
    title = (
        f"GET /api/v1/account, wrk -t{args.threads} -c{args.connections} -d{duration:.0f}s "
        f"--latency, {args.rounds} round(s), median"
    )
    print(machine_line(m_start, m_end))
    print(table(title, ["server", "req/s", "p50 ms", "p99 ms", "requests", "errors"], rows))
    ok = ratio >= GOAL_RATIO
    print(f"goal: Serve >= {GOAL_RATIO}x uvicorn req/s -> {ratio:.2f}x {verdict(ok)}")
    errors = sum(m["non_2xx"] + m["socket_errors"] for m in (uv, sv))
    if errors:
        print(f"WARNING: {errors} non-2xx responses or socket errors; figures are suspect")
    path = write_results(
        "api_throughput",
        {
            "quick": args.quick,
            "load": {"threads": args.threads, "connections": args.connections, "seconds": duration},
            "uvicorn": uv,
            "serve": sv,
            "ratio_serve_over_uvicorn": round(ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "pass": ok,
            "machine": {"start": m_start, "end": m_end},
        },
    )
    print(f"results: {path.relative_to(REPO)}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
