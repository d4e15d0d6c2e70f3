"""Helpers of bench/dispatch.py: the runner, clients, process accounting, Ray anchors."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    free_port,
    log,
)

from computalot.engine.runner import runtime_path

RUNNER = """\
import json, os, time
with open(os.environ["COMPUTALOT_TASK_PAYLOAD"]) as fh:
    p = json.load(fh)
if "sleep" in p:
    time.sleep(p["sleep"])
if "batch" in p:
    out = {"results": [{"y": e["x"] * 2} for e in p["batch"]]}
else:
    out = {"ok": True, "i": p.get("i")}
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump(out, fh)
"""
COMMAND = ["python3", "script.py"]
GOALS = {
    "overhead_ms": 50.0,
    "ray_jobs_ratio": 15.0,
    "fanout_ratio": 0.9,
    "items_per_s": 20_000.0,
    "mb_per_job": 1.0,
}
HEAD_ROLES = [  # (label, how the process names itself), matched as a prefix
    ("dispatcher", "ray::Dispatcher"),
    ("event hub", "ray::EventHub"),
    ("serve replica", "ray::ServeReplica"),
    ("gcs_server", "gcs_server"),
    ("raylet", "raylet"),
    ("serve controller", "ray::ServeController"),
    ("serve proxy", "ray::ProxyActor"),
    ("haproxy manager", "ray::HAProxyManager"),
    ("haproxy", "haproxy"),
]
REQUIRED_ROLES = {"dispatcher", "event hub", "serve replica", "gcs_server", "raylet"}


# ---- platform client helpers --------------------------------------------------------------------
def tarball(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def check(answer: httpx.Response, *codes: int) -> dict[str, Any]:
    if answer.status_code not in codes:
        raise RuntimeError(
            f"{answer.request.method} {answer.request.url.path}: {answer.status_code} "
            f"{answer.text[:500]}"
        )
    body: dict[str, Any] = answer.json()
    return body


def follow(client: httpx.Client, job_id: str, timeout_s: float) -> tuple[dict[str, Any], int]:
    """Read the job's SSE stream until ``end``; return (terminal job, events read)."""
    timeout = httpx.Timeout(timeout_s, read=timeout_s)
    events = 0
    with client.stream("GET", f"/api/v1/jobs/{job_id}/stream", timeout=timeout) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"stream {job_id}: {answer.status_code} {answer.read()[:300]!r}")
        event = None
        for line in answer.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
                events += 1
            elif line.startswith("data:") and event == "end":
                return dict(json.loads(line.split(":", 1)[1])), events
    raise RuntimeError(f"stream for {job_id} closed without an end event")


def run_job(client: httpx.Client, body: dict[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
    """POST the job, open its stream at once, read to ``end``. Times in seconds."""
    t0 = time.perf_counter()
    job = check(client.post("/api/v1/jobs", json=body), 201)
    t_submit = time.perf_counter()
    end, events = follow(client, job["id"], timeout_s)
    t_end = time.perf_counter()
    end_wall = time.time()
    if end.get("status") != "completed":
        raise RuntimeError(f"job {job['id']} ended {end.get('status')}: {end.get('error')}")
    return {
        "id": job["id"],
        "wall_s": t_end - t0,
        "submit_s": t_submit - t0,
        "events": events,
        "end": end,
        "end_wall": end_wall,
    }


# ---- anchors ----------------------------------------------------------------------------------
def child_env(payload: Path, result: Path, cwd: Path) -> dict[str, str]:
    """What the runner gives the command (computalot.engine.runner.base_env), minus ids: the
    same PATH, so ``python3`` is the same interpreter for ours and for every anchor."""
    return {
        "PATH": runtime_path(),
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "COMPUTALOT_TASK_PAYLOAD": str(payload),
        "COMPUTALOT_TASK_RESULT": str(result),
    }


def spawn_once(project: Path, scratch: Path, payload: dict[str, Any]) -> float:
    """Write the payload, run ``python3 script.py``, read the result: the runner's bare minimum."""
    t0 = time.perf_counter()
    pfile, rfile = scratch / "payload.json", scratch / "result.json"
    pfile.write_text(json.dumps(payload))
    subprocess.run(COMMAND, cwd=project, env=child_env(pfile, rfile, project), check=True)
    json.loads(rfile.read_text())
    rfile.unlink()
    return time.perf_counter() - t0


def free_agent_port() -> None:
    """Give the dashboard agent a free HTTP port instead of Ray's fixed 52365.

    ``ray.init`` has no argument for it, and on a machine where another local Ray cluster runs
    (a test session, ``computalot up``) the agent cannot bind 52365, keeps running without HTTP,
    and every Ray Jobs submission fails with "No available agent to submit job".
    """
    import ray._private.parameter as parameter

    original = parameter.RayParams.__init__
    port = free_port()

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("dashboard_agent_listen_port", port)
        original(self, *args, **kwargs)

    parameter.RayParams.__init__ = init  # type: ignore[method-assign]


def ray_jobs_client() -> Any:
    """A JobSubmissionClient for our dashboard, passing Ray's auth token when it is on."""
    import ray
    from ray.job_submission import JobSubmissionClient

    address = "http://" + ray._private.worker.get_dashboard_url()
    try:  # the SDK adds Ray's token itself when this process runs with token auth
        return JobSubmissionClient(address)
    except Exception as exc:
        token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
        token = os.environ.get("RAY_AUTH_TOKEN") or (
            token_file.read_text().strip() if token_file.exists() else ""
        )
        if not token:
            raise
        log(f"Ray Jobs client without explicit token failed ({exc}); passing it")
        return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})


def ray_job_once(client: Any, project: Path, scratch: Path, n: int) -> float:
    from ray.job_submission import JobStatus

    pfile, rfile = scratch / f"rj-payload-{n}.json", scratch / f"rj-result-{n}.json"
    pfile.write_text(json.dumps({"i": n}))
    env = child_env(pfile, rfile, project)
    runtime_env = {
        "working_dir": str(project),
        "env_vars": {
            k: env[k] for k in ("PATH", "COMPUTALOT_TASK_PAYLOAD", "COMPUTALOT_TASK_RESULT")
        },
    }
    t0 = time.perf_counter()
    sub = client.submit_job(entrypoint=" ".join(COMMAND), runtime_env=runtime_env)
    while True:
        status = client.get_job_status(sub)
        if status.is_terminal():
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    if status != JobStatus.SUCCEEDED or not rfile.exists():
        raise RuntimeError(f"Ray job {sub} ended {status}: {client.get_job_logs(sub)[-500:]}")
    return elapsed


def plain_ray_fanout(
    project: Path, scratch: Path, n: int
) -> tuple[float, dict[str, float], dict[str, float]]:
    """The same ``n`` subprocesses through plain ``ray.remote(num_cpus=1)`` tasks: wall seconds,
    CPU seconds by process and the machine's busy/idle seconds, all over the timed region only
    (not the warm-up, which starts Ray workers)."""
    import ray

    def one(project_dir: str, root: str, i: int) -> Any:
        import json as _json
        import subprocess as _sp
        import tempfile as _tf
        from pathlib import Path as _P

        d = _P(_tf.mkdtemp(dir=root))
        pfile, rfile = d / "payload.json", d / "result.json"
        pfile.write_text(_json.dumps({"i": i}))
        from computalot.engine.runner import runtime_path as _runtime_path

        env = {
            "PATH": _runtime_path(),
            "HOME": project_dir,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "COMPUTALOT_TASK_PAYLOAD": str(pfile),
            "COMPUTALOT_TASK_RESULT": str(rfile),
        }
        _sp.run(["python3", "script.py"], cwd=project_dir, env=env, check=True)
        return _json.loads(rfile.read_text())

    task = ray.remote(num_cpus=1)(one)
    root = scratch / "plain"
    root.mkdir(exist_ok=True)
    ray.get([task.remote(str(project), str(root), i) for i in range(4)])  # warm workers
    cpu0, machine0 = cpu_snapshot(), machine_cpu()
    t0 = time.perf_counter()
    out = ray.get([task.remote(str(project), str(root), i) for i in range(n)])
    elapsed = time.perf_counter() - t0
    cpu = cpu_delta(cpu0, cpu_snapshot())
    machine = machine_delta(machine0, machine_cpu())
    if sorted(r["i"] for r in out) != list(range(n)):
        raise RuntimeError("plain Ray fan-out lost results")
    shutil.rmtree(root, ignore_errors=True)
    return elapsed, cpu, machine


# ---- head processes ---------------------------------------------------------------------------
def head_processes() -> dict[int, str]:
    """Our cluster's head processes (descendants of this driver), by role."""
    import psutil

    out: dict[int, str] = {}
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            argv = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if not argv:
            continue
        first = argv[0] if argv[0].startswith("ray::") else os.path.basename(argv[0])
        for label, prefix in HEAD_ROLES:
            if first.startswith(prefix):
                out[proc.pid] = label
                break
    return out


#: CPU roles of the task workers: the Ray worker processes themselves (run_task, Ray's task
#: handling) and the runner subprocesses they reaped (the user's command).
WORKER_ROLE = "task workers (Ray worker processes)"
RUNNER_ROLE = "runner processes (the workers' children)"


def cpu_snapshot() -> dict[Any, tuple[str, float]]:
    """CPU seconds so far of this driver and every process of our cluster, with its role.

    Ray workers (``ray::...`` but no head role) count twice: their own CPU, and their reaped
    children's (where the runner subprocesses' CPU lands). Head processes count only their own.
    """
    import psutil

    out: dict[Any, tuple[str, float]] = {}
    me = psutil.Process(os.getpid())
    t = me.cpu_times()
    out[me.pid] = ("bench client + Ray driver", t.user + t.system)
    roles = head_processes()
    for proc in me.children(recursive=True):
        try:
            argv = proc.cmdline()
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        role = roles.get(proc.pid)
        if role is not None:
            out[proc.pid] = (role, t.user + t.system)
        elif argv and argv[0].startswith("ray::"):
            out[proc.pid] = (WORKER_ROLE, t.user + t.system)
            out[(proc.pid, "children")] = (RUNNER_ROLE, t.children_user + t.children_system)
        else:
            out[proc.pid] = ("other Ray processes", t.user + t.system)
    return out


def machine_cpu() -> dict[str, float]:
    """Whole-machine CPU seconds so far (all processes, kernel included), from /proc/stat:
    busy, idle, and steal (time the host ran other VMs on our vCPUs: a noisy neighbour)."""
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    steal = getattr(t, "steal", 0.0)
    busy = sum(t) - idle - steal - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return {"busy": busy, "idle": idle, "steal": steal}


def machine_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def cpu_delta(
    before: dict[Any, tuple[str, float]], after: dict[Any, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per role between two snapshots (processes that came and went are missed)."""
    out: dict[str, float] = {}
    for pid, (role, cpu) in after.items():
        start = before.get(pid, (role, 0.0))[1]
        out[role] = out.get(role, 0.0) + max(0.0, cpu - start)
    return out


def rss_by_role(pids: dict[int, str]) -> dict[str, float]:
    """RSS in MB per role (a role with several processes is summed)."""
    import psutil

    out: dict[str, float] = {}
    for pid, label in pids.items():
        try:
            out[label] = out.get(label, 0.0) + psutil.Process(pid).memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return out


def rss_sample(pids: dict[int, str], samples: int = 3) -> dict[str, float]:
    runs = []
    for _ in range(samples):
        runs.append(rss_by_role(pids))
        time.sleep(0.3)
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}


def wait_status(
    client: httpx.Client, job_id: str, statuses: set[str], timeout_s: float = 120.0
) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        job = check(client.get(f"/api/v1/jobs/{job_id}"), 200)
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise RuntimeError(f"job {job_id} never reached {statuses}")


async def cancel_all(
    url: str, key: str, ids: list[str], budget_s: float, concurrency: int = 16
) -> tuple[int, int]:
    """PUT /cancel for every job, ``concurrency`` at a time, for at most ``budget_s``.

    Returns (answered 200, failed); jobs not reached in time are neither.
    """
    sem = asyncio.Semaphore(concurrency)
    done = [0, 0]
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:

        async def one(job_id: str) -> None:
            async with sem:
                answer = await client.put(f"/api/v1/jobs/{job_id}/cancel")
                done[0 if answer.status_code == 200 else 1] += 1

        try:
            await asyncio.wait_for(asyncio.gather(*(one(j) for j in ids)), budget_s)
        except TimeoutError:
            pass
    return done[0], done[1]


def open_jobs(client: httpx.Client) -> int:
    total = 0
    for status in ("queued", "running"):
        page = check(client.get("/api/v1/jobs", params={"status": status, "limit": 500}), 200)
        total += len(page["jobs"])
    return total


# ---- the parts --------------------------------------------------------------------------------
def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def fanout_timeline(client: httpx.Client, run: dict[str, Any], cores: int) -> dict[str, float]:
    """Where a fan-out's wall time went (seconds), from the server's timestamps: the run phase
    (first claim -> last task recorded) next to its floor, the runner processes' total time
    spread over the cores."""
    job = check(client.get(f"/api/v1/jobs/{run['id']}"), 200)
    starts: list[float] = []
    ends: list[float] = []
    busy = 0.0
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = check(client.get(f"/api/v1/jobs/{run['id']}/tasks", params=params), 200)
        for task in page["tasks"]:
            starts.append(parse_ts(task["started_at"]))
            ends.append(parse_ts(task["finished_at"]))
            busy += float(task["duration_s"] or 0.0)
        cursor = page.get("next_cursor")
        if not cursor:
            break
    created, finished = parse_ts(job["created_at"]), parse_ts(job["finished_at"])
    return {
        "POST /jobs (client)": run["submit_s"],
        "created -> first task claimed": min(starts) - created,
        "first claim -> last task recorded": max(ends) - min(starts),
        "  floor: runner processes' time / cores": busy / cores,
        "last task recorded -> job finalised": finished - max(ends),
        "finalised -> client read end (SSE)": run["end_wall"] - finished,
    }


def breakdown(client: httpx.Client, run: dict[str, Any]) -> dict[str, float]:
    """Where one trivial job's time went, from the server's own timestamps (seconds)."""
    job = check(client.get(f"/api/v1/jobs/{run['id']}"), 200)
    task = check(client.get(f"/api/v1/jobs/{run['id']}/tasks"), 200)["tasks"][0]
    claimed, created = parse_ts(job["started_at"]), parse_ts(job["created_at"])
    recorded = parse_ts(task["finished_at"])
    finished = parse_ts(job["finished_at"])
    proc = float(task["duration_s"] or 0.0)
    return {
        "POST /jobs (client)": run["submit_s"],
        "created -> claimed by dispatcher": claimed - created,
        "claimed -> recorded, minus runner process": recorded - parse_ts(task["started_at"]) - proc,
        "runner process (python3 script.py)": proc,
        "recorded -> job finalised": finished - recorded,
        "finalised -> client read end (SSE)": run["end_wall"] - finished,
    }
