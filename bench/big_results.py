"""Big results: a job of ``--tasks`` tasks each writing a ``--mb`` MB result (100 x 50 MB).

One platform (its own data dir, ``COMPUTALOT_MAX_JOB_RESULT_BYTES`` raised to fit the job)
runs the job while this process samples, every 0.1 s, the dispatcher's memory (RSS, and its
anonymous part: RSS also counts the pages of Ray's shared object store the process touched),
the Serve replica's, and the latency of ``GET /ready`` (which answers only while the
dispatcher's event loop does). Then it reads every ``GET /results`` page. Printed next to
their anchors:

* the dispatcher's memory: baseline (after a warm-up job), peak while the job ran and while
  its results were read (goal: peak within 100 MB of the baseline);
* database growth (SQLite file and WAL, after a checkpoint) over the results' total bytes
  (anchor 1.0x: each result stored once);
* ``/results`` pages: count, largest answer in bytes (goal: about ``results_page_bytes`` or
  one result, whichever is bigger), every element present once;
* wall time submit -> ``end`` and for reading all pages; ``/ready`` latency, max and p99.

    .venv/bin/python bench/big_results.py            # 100 x 50 MB (~5 GB written, deleted after)
    .venv/bin/python bench/big_results.py --quick    # 20 x 20 MB
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    REPO,
    fmt,
    isolated_env,
    log,
    machine_line,
    machine_state,
    run_on_platform,
    table,
    verdict,
    write_results,
)
from _dispatch_support import check, head_processes, run_job, tarball

MB = 1_000_000
RUNNER = r"""
import json, os

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
index = int(os.environ["COMPUTALOT_TASK_INDEX"])
pad = "abcdefghijklmnopqrstuvwxyz"[index % 26] * int(p["mb"] * 1_000_000)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    fh.write('{"index": %d, "pad": "%s"}' % (index, pad))
"""
GOALS = {"dispatcher_peak_over_baseline_mb": 100.0, "db_growth_ratio": 1.0}


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, anonymous RSS) of ``pid`` in MB, from /proc (0, 0 once it is gone)."""
    fields: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon"):
                fields[name] = float(value.split()[0]) / 1024  # kB
    except FileNotFoundError:
        return 0.0, 0.0
    return fields.get("VmRSS", 0.0), fields.get("RssAnon", 0.0)


class Sampler(threading.Thread):
    """Peak memory of the dispatcher and the replica, and /ready latencies, every 0.1 s."""

    def __init__(self, url: str, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.pids = pids
        self.stop_flag = threading.Event()
        self.peaks: dict[str, float] = {}
        self.ready_ms: list[float] = []
        self.ready_errors = 0
        self.timeline: list[tuple[float, float]] = []  # (s, dispatcher anon MB)

    def run(self) -> None:
        start = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop_flag.is_set():
                for role, pid in self.pids.items():
                    rss, anon = memory_mb(pid)
                    if role == "dispatcher":
                        self.timeline.append((round(time.monotonic() - start, 2), round(anon, 1)))
                    self.peaks[f"{role} rss"] = max(self.peaks.get(f"{role} rss", 0.0), rss)
                    self.peaks[f"{role} anon"] = max(self.peaks.get(f"{role} anon", 0.0), anon)
                t = time.perf_counter()
                try:
                    ok = client.get("/ready").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.ready_ms.append((time.perf_counter() - t) * 1000)
                self.ready_errors += not ok
                self.stop_flag.wait(0.1)

    def finish(self) -> dict[str, Any]:
        self.stop_flag.set()
        self.join(timeout=35)
        ordered = sorted(self.ready_ms)
        p99 = ordered[int(0.99 * (len(ordered) - 1))] if ordered else None
        return {
            "peaks_mb": self.peaks,
            "ready_max_ms": max(ordered) if ordered else None,
            "ready_p99_ms": p99,
            "ready_samples": len(ordered),
            "ready_not_200": self.ready_errors,
            "dispatcher_anon_timeline": self.timeline,
        }


def database_bytes(data_dir: Path) -> int:
    """The SQLite store with its WAL checkpointed into it (each result counted once)."""
    path = data_dir / "computalot.db"
    conn = sqlite3.connect(path, timeout=60)
    try:
        for _ in range(100):
            if not conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                break
            time.sleep(0.1)
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def read_pages(client: httpx.Client, job_id: str) -> dict[str, Any]:
    sizes: list[int] = []
    indices: list[int] = []
    omitted = None
    cursor = None
    t = time.monotonic()
    while True:
        answer = client.get(
            f"/api/v1/results/{job_id}", params={"cursor": cursor} if cursor else {}
        )
        body = check(answer, 200)
        sizes.append(len(answer.content))
        if cursor is None:
            omitted = body.get("aggregate_omitted")
        indices += [e["index"] for e in body["results"] if e["result"] is not None]
        cursor = body["next_cursor"]
        del body, answer
        if cursor is None:
            break
    return {
        "pages": len(sizes),
        "largest_page_bytes": max(sizes),
        "total_bytes": sum(sizes),
        "elements_with_result": len(indices),
        "each_once": sorted(indices) == list(range(len(indices))),
        "read_s": time.monotonic() - t,
        "aggregate_omitted": (omitted or {}).get("reason"),
    }


def run(args: argparse.Namespace, url: str, admin_key: str, data_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=600
    ) as client:
        stop = time.monotonic() + 30  # a key another process wrote may be seen late (finding 9)
        while client.get("/api/v1/account").status_code == 401 and time.monotonic() < stop:
            time.sleep(0.5)
        check(client.post("/api/v1/projects", json={"name": "big"}), 201)
        check(client.post("/api/v1/projects/big/push", content=tarball({"r.py": RUNNER})), 200)
        body: dict[str, Any] = {"project": "big", "runner_command": ["python3", "r.py"]}
        log("warm-up: one small job")
        run_job(client, {**body, "payload": {"mb": 0.001}}, timeout_s=300)
        pids = head_processes()
        by_role = {
            role: pid for pid, role in pids.items() if role in ("dispatcher", "serve replica")
        }
        if "dispatcher" not in by_role:
            raise RuntimeError(f"dispatcher process not found among {sorted(pids.values())}")
        time.sleep(2.0)
        baseline = {role: memory_mb(pid) for role, pid in by_role.items()}
        out["baseline_mb"] = {
            f"{r} {k}": v[i] for r, v in baseline.items() for i, k in enumerate(("rss", "anon"))
        }
        db_before = database_bytes(data_dir)
        sampler = Sampler(url, by_role)
        sampler.start()
        log(f"job: {args.tasks} tasks x {args.mb} MB results")
        job = {
            **body,
            "payload": {"mb": args.mb},
            "fan_out": {"items": [{"k": i} for i in range(args.tasks)]},
        }
        run = run_job(client, job, timeout_s=args.max_seconds)
        out["job_s"] = run["wall_s"]
        out["job_status"] = run["end"]["status"]
        out["during_job"] = sampler.finish()
        out["db_growth_bytes"] = database_bytes(data_dir) - db_before
        log("reading every /results page")
        sampler = Sampler(url, by_role)
        sampler.start()
        out["pages"] = read_pages(client, run["id"])
        out["during_pages"] = sampler.finish()
        sizes = check(client.get(f"/api/v1/jobs/{run['id']}"), 200)
        out["task_counts"] = sizes["task_counts"]
    return out


def report(args: argparse.Namespace, r: dict[str, Any]) -> bool:
    total = args.tasks * (args.mb * MB + 30)
    base = r.get("baseline_mb", {})
    job_peaks = r.get("during_job", {}).get("peaks_mb", {})
    page_peaks = r.get("during_pages", {}).get("peaks_mb", {})
    rise = {k: max(job_peaks.get(k, 0.0), page_peaks.get(k, 0.0)) - base.get(k, 0.0) for k in base}
    growth = r.get("db_growth_bytes")
    ratio = growth / total if growth is not None else None
    pages = r.get("pages", {})
    checks = {
        "memory": "dispatcher anon" in rise
        and rise["dispatcher anon"] <= GOALS["dispatcher_peak_over_baseline_mb"],
        "db": ratio is not None and ratio <= 1.1,
        "pages": pages.get("each_once", False) and pages.get("elements_with_result") == args.tasks,
    }
    rows = [
        [
            "dispatcher memory: baseline -> peak (anon)",
            f"{fmt(base.get('dispatcher anon'))} -> "
            f"{fmt(base.get('dispatcher anon', 0) + rise.get('dispatcher anon', 0))} MB",
            "peak <= baseline + 100 MB",
            verdict(checks["memory"]),
        ],
        [
            "dispatcher memory: baseline -> peak (RSS)",
            f"{fmt(base.get('dispatcher rss'))} -> "
            f"{fmt(base.get('dispatcher rss', 0) + rise.get('dispatcher rss', 0))} MB",
            "(RSS counts touched object-store pages)",
            "",
        ],
        [
            "replica memory: baseline -> peak (RSS)",
            f"{fmt(base.get('serve replica rss'))} -> "
            f"{fmt(base.get('serve replica rss', 0) + rise.get('serve replica rss', 0))} MB",
            "",
            "",
        ],
        [
            "database growth / result bytes",
            f"{fmt(ratio, 3)}x ({fmt((growth or 0) / MB)} MB for {fmt(total / MB)} MB)",
            "1.0x",
            verdict(checks["db"]),
        ],
        [
            "/results pages; largest answer",
            f"{pages.get('pages', '-')}; {fmt(pages.get('largest_page_bytes', 0) / MB)} MB",
            "16 MiB a page, or one result",
            "",
        ],
        [
            "elements with a result, each once",
            f"{pages.get('elements_with_result', '-')} ({pages.get('each_once')})",
            str(args.tasks),
            verdict(checks["pages"]),
        ],
        ["first page aggregate", str(pages.get("aggregate_omitted")), "omitted: too_large", ""],
        ["job: submit -> end", f"{fmt(r.get('job_s'))} s ({r.get('job_status')})", "", ""],
        ["reading every page", f"{fmt(pages.get('read_s'))} s", "", ""],
        [
            "/ready during the job: max, p99",
            f"{fmt(r.get('during_job', {}).get('ready_max_ms'))}, "
            f"{fmt(r.get('during_job', {}).get('ready_p99_ms'))} ms",
            "",
            "",
        ],
    ]
    print(
        table(
            f"Big results: {args.tasks} tasks x {args.mb} MB",
            ["measure", "value", "anchor / goal", "verdict"],
            rows,
        )
    )
    r["dispatcher_rise_mb"] = rise
    r["db_growth_ratio"] = ratio
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 tasks x 20 MB")
    parser.add_argument("--tasks", type=int, default=None, help="tasks (100)")
    parser.add_argument("--mb", type=float, default=None, help="MB of result per task (50)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="hard runtime budget")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (20 if args.quick else 100)
    args.mb = args.mb or (20.0 if args.quick else 50.0)
    job_cap = int(args.tasks * (args.mb * MB + 1000) * 1.1)
    data_dir = isolated_env({"COMPUTALOT_MAX_JOB_RESULT_BYTES": str(job_cap)})
    m_start = machine_state()
    done = run_on_platform(
        lambda running, results: results.update(
            run(args, running.url, running.admin_key, data_dir)
        ),
        num_cpus=args.num_cpus,
        max_seconds=args.max_seconds,
        cleanup=[data_dir],
    )
    results, status, m_end = done.results, done.status, done.machine_end
    print(machine_line(m_start, m_end))
    ok = report(args, results)
    path = write_results(
        "big_results",
        {"tasks": args.tasks, "mb": args.mb, "goals": GOALS, "pass": ok, **results},
    )
    print(f"results: {path.relative_to(REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
