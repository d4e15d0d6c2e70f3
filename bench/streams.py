"""SSE at scale: 1,000 concurrent streams across 100 running jobs on one API replica.

One platform (one Serve replica, num_cpus = jobs + 2 so every job runs at once) runs ``--jobs``
jobs whose runners print ``COMPUTALOT_PROGRESS:{"t": <time.time()>}`` every ``--period``
seconds until the benchmark opens a gate file. A child process opens ``--clients`` streams
(raw HTTP/1.1 on asyncio sockets, client i on job i mod jobs); ``--revoke-clients`` of them use
a second API key. Printed next to their goals:

* streams opened of those asked for;
* the most database connections the replica had checked out while they were open
  (``computalot_db_connections_in_use`` from /metrics, sampled every 0.5 s);
* p99 of ``GET /api/v1/jobs/{id}`` (sequential, from this process) with no stream open and
  with all of them open (goal: within 2x);
* progress latency, receipt - ``t``, p50 and p99 over the events written once every stream was
  open (goal: p99 <= 250 ms);
* events lost, repeated or out of order against the stored events (``GET /jobs/{id}/events``),
  over every stream that reached its job's ``end`` (goal: 0);
* seconds from revoking the second key to the last of its streams closing (goal: a few).

    .venv/bin/python bench/streams.py               # 1,000 streams, 100 jobs (~5 min on 2 cores)
    .venv/bin/python bench/streams.py --quick       # 200 streams, 20 jobs
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import re
import sys
import tempfile
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
from _dispatch_support import check, cpu_delta, cpu_snapshot, machine_cpu, machine_delta, tarball
from _sse_fleet import OPEN_TIMEOUT_S, RAMP_S, run_fleet

RUNNER = r"""
import json, os, random, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
stop = time.time() + p["max_s"]
time.sleep(random.random() * p["period"])  # jobs do not all print at the same instant
while not os.path.exists(p["gate"]) and time.time() < stop:
    print("COMPUTALOT_PROGRESS:" + json.dumps({"t": time.time()}), flush=True)
    time.sleep(p["period"])
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"ok": True}, fh)
"""

GOALS = {
    "open_ratio": 1.0,
    "get_p99_ratio": 2.0,
    "latency_p99_ms": 250.0,
    "integrity_errors": 0,
    "revoke_close_s": 5.0,
}
GAUGE = re.compile(r"^computalot_db_connections_in_use (\S+)$", re.M)


def quantile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe(client: httpx.Client, job_ids: list[str], n: int) -> dict[str, float | None]:
    """``n`` sequential GET /jobs/{id} (cycling over the jobs): p50 and p99 in ms."""
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        answer = client.get(f"/api/v1/jobs/{job_ids[i % len(job_ids)]}")
        samples.append((time.perf_counter() - t0) * 1000)
        if answer.status_code != 200:
            samples[-1] = float("inf")
    return {
        "p50_ms": quantile(samples, 0.5),
        "p90_ms": quantile(samples, 0.9),
        "p99_ms": quantile(samples, 0.99),
    }


class GaugeSampler(threading.Thread):
    """Reads the replica's checked-out database connections every 0.5 s; keeps the highest.

    Paused while GET /jobs/{id} is timed: rendering /metrics holds the replica's loop for a few
    milliseconds, which the probe would count against the streams."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        self.values: list[float] = []
        self.stopping = threading.Event()
        self.paused = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            if self.paused.is_set():
                continue
            try:
                found = GAUGE.search(self.client.get("/metrics").text)
            except httpx.HTTPError:
                continue
            if found:
                self.values.append(float(found.group(1)))

    def stop(self) -> float | None:
        self.stopping.set()
        self.join(timeout=5)
        self.client.close()
        return max(self.values) if self.values else None


def first_answer(client: httpx.Client, path: str) -> dict[str, Any]:
    """GET ``path``, retried for up to 30 s while the admin key is not yet seen by the replica
    (a key written by another process could be unknown for a while: issue finding 9)."""
    stop = time.monotonic() + 30
    while True:
        answer = client.get(path)
        if answer.status_code != 401 or time.monotonic() > stop:
            return check(answer, 200)
        time.sleep(0.5)


def roles_cpu(fleet_pid: int | None) -> dict[Any, tuple[str, float]]:
    """CPU seconds so far per process of our cluster (bench/_dispatch_support.cpu_snapshot),
    with the client fleet named."""
    snapshot = cpu_snapshot()
    if fleet_pid in snapshot:
        snapshot[fleet_pid] = ("SSE client fleet (1 process)", snapshot[fleet_pid][1])
    return snapshot


def wait_printing(client: httpx.Client, job_ids: list[str], timeout_s: float) -> None:
    """Until every job's runner has printed progress: "running" only means launched, and Ray
    starts the 100 workers two at a time (at full CPU) for a minute or more after that."""
    stop = time.monotonic() + timeout_s
    left = set(job_ids)
    while left:
        if time.monotonic() > stop:
            raise RuntimeError(f"{len(left)} of {len(job_ids)} jobs never printed progress")
        for job_id in list(left):
            (task,) = check(client.get(f"/api/v1/jobs/{job_id}/tasks"), 200)["tasks"]
            if task["latest_progress"] is not None:
                left.discard(job_id)
            elif task["status"] in ("completed", "failed", "cancelled"):
                raise RuntimeError(f"job {job_id} ended {task['status']} before the streams opened")
        time.sleep(1.0)


def stored_ids(client: httpx.Client, job_id: str) -> list[int]:
    ids: list[int] = []
    after = 0
    while True:
        page = check(
            client.get(f"/api/v1/jobs/{job_id}/events", params={"after": after, "limit": 1000}), 200
        )
        if not page["events"]:
            return ids
        ids += [e["id"] for e in page["events"]]
        after = page["events"][-1]["id"]


def integrity(client: httpx.Client, clients: list[dict[str, Any]]) -> dict[str, int]:
    """Lost, repeated and out-of-order events over the streams that reached ``end``."""
    stored: dict[str, list[int]] = {}
    lost = repeated = disorder = checked = 0
    for c in clients:
        if c["how"] != "end":
            continue
        want = stored.setdefault(c["job_id"], stored_ids(client, c["job_id"]))
        got = c["ids"]
        checked += 1
        lost += len(set(want) - set(got))
        repeated += len(got) - len(set(got))
        disorder += sum(1 for a, b in itertools.pairwise(got) if b <= a)
    return {
        "streams_checked": checked,
        "lost": lost,
        "repeated": repeated,
        "out_of_order": disorder,
    }


def run(args: argparse.Namespace, url: str, admin_key: str, scratch: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120
    ) as client:
        account = first_answer(client, "/api/v1/account")
        account_id = account.get("id") or account["account"]["id"]
        second = check(client.post(f"/api/v1/admin/accounts/{account_id}/keys", json={}), 201)
        revoked_key = second["key"]["token"]
        revoked_key_id = second["key"]["id"]
        check(client.post("/api/v1/projects", json={"name": "streams"}), 201)
        check(client.post("/api/v1/projects/streams/push", content=tarball({"r.py": RUNNER})), 200)
        gate = scratch / "gate"
        payload = {"gate": str(gate), "period": args.period, "max_s": args.max_seconds}
        body = {"project": "streams", "runner_command": ["python3", "r.py"], "payload": payload}
        body["timeout_s"] = int(args.max_seconds) + 60
        job_ids: list[str] = []
        while len(job_ids) < args.jobs:
            size = min(200, args.jobs - len(job_ids))
            batch = check(client.post("/api/v1/jobs/batch", json={"jobs": [body] * size}), 201, 200)
            job_ids += [j["id"] for j in batch["jobs"]]
        log(f"{len(job_ids)} jobs submitted; waiting until every runner prints")
        wait_printing(client, job_ids, timeout_s=600)
        log("all printing; GET /jobs/{id} with no stream open")
        time.sleep(args.settle_s)
        probe(client, job_ids, 20)
        machine0, t0 = machine_cpu(), time.monotonic()
        out["get_idle"] = probe(client, job_ids, args.probes)
        out["machine_idle_phase_pct"] = {
            k: 100 * v / (time.monotonic() - t0)
            for k, v in machine_delta(machine0, machine_cpu()).items()
        }

        plan = [
            {
                "job_id": job_ids[i % len(job_ids)],
                "key": "revoked" if i < args.revoke_clients else "main",
            }
            for i in range(args.clients)
        ]
        fleet_out = scratch / "fleet.json"
        context = multiprocessing.get_context("spawn")
        ready, child_end = context.Pipe(duplex=False)
        fleet = context.Process(
            target=run_fleet,
            args=(
                url,
                plan,
                {"main": admin_key, "revoked": revoked_key},
                str(fleet_out),
                child_end,
            ),
        )
        sampler = GaugeSampler(url, admin_key)
        sampler.start()
        log(f"opening {args.clients} streams")
        t_open = time.time()
        fleet.start()
        waited = OPEN_TIMEOUT_S + args.clients * RAMP_S + 60
        if ready.poll(waited):
            opened = ready.recv()
        else:
            log(f"the client fleet did not report its streams open in {waited:.0f} s")
            opened = {"opened": 0, "failed": args.clients, "at": time.time()}
        out["open_s"] = opened["at"] - t_open
        out["opened"], out["open_failed"] = opened["opened"], opened["failed"]
        log(f"{opened['opened']} streams open, {opened['failed']} failed, in {out['open_s']:.1f} s")
        steady_from = time.time() + 2.0
        cpu0, machine0, t0 = roles_cpu(fleet.pid), machine_cpu(), time.monotonic()
        time.sleep(max(0.0, args.settle_s))
        sampler.paused.set()
        out["get_loaded"] = probe(client, job_ids, args.probes)
        sampler.paused.clear()
        window = time.monotonic() - t0
        out["cpu_under_load_pct"] = {
            role: 100 * seconds / window
            for role, seconds in cpu_delta(cpu0, roles_cpu(fleet.pid)).items()
        }
        out["machine_under_load_pct"] = {
            k: 100 * v / window for k, v in machine_delta(machine0, machine_cpu()).items()
        }
        log("revoking the second key")
        t_revoke = time.time()
        check(client.post(f"/api/v1/admin/keys/{revoked_key_id}/revoke"), 200)
        time.sleep(args.settle_s)
        steady_to = time.time()
        out["db_connections_max"] = sampler.stop()
        log("opening the gate: jobs end, streams get their end")
        gate.touch()
        fleet.join(timeout=180)
        if fleet.is_alive():
            fleet.kill()
            raise RuntimeError("the client fleet did not finish within 180 s of the gate")
        clients = json.loads(fleet_out.read_text())
        how: dict[str, int] = {}
        for c in clients:
            how[f"{c['key']}:{c['how']}"] = how.get(f"{c['key']}:{c['how']}", 0) + 1
        out["stream_outcomes"] = how
        latencies = [
            (received - t) * 1000
            for c in clients
            if c["key"] == "main"
            for t, received in c["progress"]
            if steady_from <= t <= steady_to
        ]
        out["latency"] = {
            "events": len(latencies),
            "p50_ms": quantile(latencies, 0.5),
            "p99_ms": quantile(latencies, 0.99),
            "max_ms": max(latencies) if latencies else None,
        }
        mains = [c for c in clients if c["key"] == "main"]
        out["integrity"] = integrity(client, mains)
        closes = [c["closed_at"] for c in clients if c["key"] == "revoked" and c["status"] == 200]
        revoked_ok = all(c["how"] == "error" for c in clients if c["key"] == "revoked")
        out["revoke"] = {
            "streams": len(closes),
            "all_closed_with_error_event": revoked_ok,
            "last_close_s": (max(closes) - t_revoke) if closes else None,
        }
    return out


def report(args: argparse.Namespace, r: dict[str, Any]) -> bool:
    idle, loaded = r.get("get_idle", {}), r.get("get_loaded", {})
    ratio = (
        loaded["p99_ms"] / idle["p99_ms"]
        if idle.get("p99_ms") and loaded.get("p99_ms") is not None
        else None
    )
    r["get_p99_ratio"] = ratio
    integ = r.get("integrity", {})
    errors = sum(integ.get(k, 0) for k in ("lost", "repeated", "out_of_order"))
    lat = r.get("latency", {})
    rev = r.get("revoke", {})
    checks = {
        "opened": r.get("opened", 0) >= args.clients,
        "ratio": ratio is not None and ratio <= GOALS["get_p99_ratio"],
        "latency": lat.get("p99_ms") is not None and lat["p99_ms"] <= GOALS["latency_p99_ms"],
        "integrity": integ.get("streams_checked", 0) > 0 and errors == 0,
        "revoke": rev.get("last_close_s") is not None
        and rev["last_close_s"] <= GOALS["revoke_close_s"]
        and rev.get("all_closed_with_error_event", False),
    }
    rows = [
        [
            "streams open",
            f"{r.get('opened', 0)} of {args.clients}",
            f"{args.clients}",
            verdict(checks["opened"]),
        ],
        ["  time to open them all", f"{fmt(r.get('open_s'))} s", "", ""],
        ["DB connections in use (max)", fmt(r.get("db_connections_max"), 0), "bounded", ""],
        [
            "GET /jobs/{id} p50 / p90 / p99, no stream",
            " / ".join(fmt(idle.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms")) + " ms",
            "",
            "",
        ],
        [
            "GET /jobs/{id} p50 / p90 / p99, all streams",
            " / ".join(fmt(loaded.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms")) + " ms",
            "",
            "",
        ],
        ["  ratio", f"{fmt(ratio, 2)}x", "<= 2x", verdict(checks["ratio"])],
        ["event latency p50", f"{fmt(lat.get('p50_ms'))} ms", "", ""],
        [
            "event latency p99",
            f"{fmt(lat.get('p99_ms'))} ms",
            "<= 250 ms",
            verdict(checks["latency"]),
        ],
        [
            "lost / repeated / out of order",
            f"{integ.get('lost', '-')} / {integ.get('repeated', '-')} / {integ.get('out_of_order', '-')}",
            "0",
            verdict(checks["integrity"]),
        ],
        ["  streams checked (reached end)", str(integ.get("streams_checked", 0)), "", ""],
        [
            "revoked key: last stream closed",
            f"{fmt(rev.get('last_close_s'))} s"
            + ("" if rev.get("all_closed_with_error_event") else " (not by the revocation)"),
            "<= 5 s",
            verdict(checks["revoke"]),
        ],
    ]
    print(
        table(
            f"SSE streams: {args.clients} clients, {args.jobs} jobs, one replica",
            ["measure", "value", "goal", "verdict"],
            rows,
        )
    )
    print(f"latency samples: {lat.get('events', 0)}; stream outcomes: {r.get('stream_outcomes')}")
    cpu = r.get("cpu_under_load_pct") or {}
    machine = r.get("machine_under_load_pct") or {}
    if cpu:
        rows = [[role, f"{pct:.1f} %"] for role, pct in sorted(cpu.items(), key=lambda x: -x[1])]
        rows += [[f"machine {k} (all processes)", f"{v:.1f} %"] for k, v in machine.items()]
        idle_phase = r.get("machine_idle_phase_pct") or {}
        rows += [
            [f"  with no stream open: machine {k}", f"{v:.1f} %"] for k, v in idle_phase.items()
        ]
        print(table("CPU while every stream was open (% of one core)", ["process", "CPU"], rows))
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 streams on 20 jobs")
    parser.add_argument("--clients", type=int, default=None, help="streams (1,000)")
    parser.add_argument("--jobs", type=int, default=None, help="running jobs (100)")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between progress lines")
    parser.add_argument("--revoke-clients", type=int, default=10)
    parser.add_argument("--probes", type=int, default=600, help="GET /jobs/{id} per phase")
    parser.add_argument("--settle-s", type=float, default=8.0, help="seconds under load per phase")
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="hard runtime budget")
    args = parser.parse_args(argv)
    args.clients = args.clients or (200 if args.quick else 1000)
    args.jobs = args.jobs or (20 if args.quick else 100)

    # The runners wait for a gate file in ``scratch``: the one host directory their sandbox
    # shows them (``COMPUTALOT_SANDBOX_SHARED_DIRS``, docs/sandbox.md), readable by the sandbox's user.
    scratch = Path(tempfile.mkdtemp(prefix="computalot-bench-streams-"))
    scratch.chmod(0o755)
    shared = {"COMPUTALOT_SANDBOX_SHARED_DIRS": json.dumps([str(scratch)])}
    data_dir = isolated_env({"COMPUTALOT_SERVE_REPLICAS": "1", **shared})
    m_start = machine_state()
    done = run_on_platform(
        lambda running, results: results.update(run(args, running.url, running.admin_key, scratch)),
        num_cpus=args.jobs + 2,  # every job runs at once
        max_seconds=args.max_seconds,
        cleanup=[data_dir, scratch],
    )
    results, status, m_end = done.results, done.status, done.machine_end
    print(machine_line(m_start, m_end))
    ok = report(args, results)
    path = write_results(
        "streams",
        {"clients": args.clients, "jobs": args.jobs, "goals": GOALS, "pass": ok, **results},
    )
    print(f"results: {path.relative_to(REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
