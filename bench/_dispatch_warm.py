"""Part (e) of bench/dispatch.py: warm Python runners (docs/llms-full.md, "Projects":
``runtime.preload``, ``runtime.warm_python``; ``computalot/engine/warm_python``).

A runner that imports numpy, ``N`` tasks (``fan_out.items``), three ways, in the same run:
- ours with warm runners: project ``warm-numpy``, manifest ``runtime.preload: ["numpy"]``;
- the same script through plain ``ray.remote(num_cpus=1)`` + ``subprocess.run`` (the anchor
  of (b), with this runner);
- ours with ``runtime.warm_python: false`` (project ``cold-numpy``): a fresh ``python3`` per task.
Plain, warm, cold, plain, warm, cold…: the ratios are the mean plain over the mean of each.
Goal plain/warm >= 5x (bar >= 3x). Each project's workers (and their warm interpreters) are
started by a warm-up job first, as the anchor's workers are.

Then the trivial runner's submit -> ``end`` latency (the job of (a)) with warm runners, next to
the same job with them off, interleaved run by run. Goal: warm median <= 25 ms.

With ``--sandbox bwrap`` (the default) warm tasks are forked inside their warm sandbox
(``computalot/sandbox/warm.py``) and cold ones start a fresh sandbox each; ``--sandbox none``
measures the engine without confinement.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import httpx
from _common import fmt, log, median_ms, table, verdict
from _dispatch_support import RUNNER, check, plain_ray_fanout, run_job, tarball

NUMPY_RUNNER = """\
import json, os
import numpy as np
with open(os.environ["COMPUTALOT_TASK_PAYLOAD"]) as fh:
    p = json.load(fh)
x = np.arange(16, dtype=np.float64) * p.get("i", 0)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"ok": True, "i": p.get("i"), "sum": float(x.sum())}, fh)
"""
NUMPY_COMMAND = ["python3", "numpy_task.py"]
TRIVIAL_COMMAND = ["python3", "script.py"]
MANIFEST = "computalot.project.json"
#: The project of parts (a)-(d) opts out, so their figures stay those of fresh processes.
OPT_OUT = {MANIFEST: json.dumps({"runtime": {"warm_python": False}})}
GOALS_E = {"warm_ratio": 5.0, "warm_ratio_bar": 3.0, "warm_latency_ms": 25.0}
PROJECTS = {
    "warm-numpy": {"runtime": {"preload": ["numpy"]}},
    "cold-numpy": {"runtime": {"warm_python": False}},
}


def _push(client: httpx.Client) -> None:
    for name, manifest in PROJECTS.items():
        check(client.post("/api/v1/projects", json={"name": name}), 201)
        files = {
            "numpy_task.py": NUMPY_RUNNER,
            "script.py": RUNNER,
            MANIFEST: json.dumps(manifest),
        }
        check(client.post(f"/api/v1/projects/{name}/push", content=tarball(files)), 200)


def _fanout(client: httpx.Client, project: str, n: int) -> dict[str, Any]:
    body = {
        "project": project,
        "runner_command": NUMPY_COMMAND,
        "fan_out": {"items": [{"i": i} for i in range(n)]},
    }
    run = run_job(client, body, timeout_s=max(600.0, n * 1.0))
    counts = run["end"]["task_counts"]
    if counts["completed"] != n:
        raise RuntimeError(f"(e) {project}: completed {counts['completed']} of {n}")
    return run


def part_e(
    client: httpx.Client,
    scratch: Path,
    n: int,
    num_cpus: int,
    rounds: int,
    latency_runs: int,
    sandbox: str,
) -> dict[str, Any]:
    _push(client)
    plain_dir = scratch / "plain-numpy"
    plain_dir.mkdir(exist_ok=True)
    (plain_dir / "script.py").write_text(NUMPY_RUNNER)
    log(f"(e) warm-up: each project's workers and warm interpreters ({2 * num_cpus} tasks)")
    for project in PROJECTS:
        _fanout(client, project, 2 * num_cpus)
    plain: list[float] = []
    warm: list[float] = []
    cold: list[float] = []
    for k in range(1, rounds + 1):
        log(f"(e) round {k}: plain Ray, {n} numpy tasks")
        plain.append(plain_ray_fanout(plain_dir, scratch, n)[0])
        log(f"(e) round {k}: plain {plain[-1]:.1f} s; ours warm")
        warm.append(_fanout(client, "warm-numpy", n)["wall_s"])
        log(f"(e) round {k}: warm {warm[-1]:.1f} s; ours cold")
        cold.append(_fanout(client, "cold-numpy", n)["wall_s"])
        log(f"(e) round {k}: cold {cold[-1]:.1f} s")
    plain.append(plain_ray_fanout(plain_dir, scratch, n)[0])
    log(f"(e) plain (last) {plain[-1]:.1f} s; latency, warm and cold interleaved")
    lat_warm: list[float] = []
    lat_cold: list[float] = []
    for i in range(3 + latency_runs):
        for project, samples in (("warm-numpy", lat_warm), ("cold-numpy", lat_cold)):
            body = {"project": project, "runner_command": TRIVIAL_COMMAND, "payload": {"i": i}}
            seconds = run_job(client, body, timeout_s=120)["wall_s"]
            if i >= 3:  # the first three are warm-ups
                samples.append(seconds)
    plain_s = statistics.mean(plain)
    return {
        "tasks": n,
        "rounds": rounds,
        "sandbox": sandbox,
        "plain_s": plain_s,
        "plain_runs_s": plain,
        "warm_s": statistics.mean(warm),
        "warm_runs_s": warm,
        "cold_s": statistics.mean(cold),
        "cold_runs_s": cold,
        "warm_ratio": plain_s / statistics.mean(warm),
        "cold_ratio": plain_s / statistics.mean(cold),
        "latency_runs": latency_runs,
        "warm_latency_ms": median_ms(lat_warm),
        "warm_latency_p90_ms": sorted(lat_warm)[int(0.9 * (len(lat_warm) - 1))] * 1000,
        "cold_latency_ms": median_ms(lat_cold),
    }


def report_e(e: dict[str, Any]) -> bool:
    ratio_ok = e["warm_ratio"] >= GOALS_E["warm_ratio"]
    bar_ok = e["warm_ratio"] >= GOALS_E["warm_ratio_bar"]
    latency_ok = e["warm_latency_ms"] <= GOALS_E["warm_latency_ms"]
    note = " (unconfined)" if e["sandbox"] == "none" else " (in the task sandbox)"
    print(
        table(
            f"(e) {e['tasks']:,} tasks importing numpy, {e['rounds']} round(s){note}",
            ["measure", "value", "goal", "verdict"],
            [
                ["plain ray.remote + subprocess", f"{fmt(e['plain_s'], 2)} s", "", ""],
                ["ours, warm runners", f"{fmt(e['warm_s'], 2)} s", "", ""],
                ["ours, warm_python: false", f"{fmt(e['cold_s'], 2)} s", "", ""],
                [
                    "plain / ours warm",
                    f"{fmt(e['warm_ratio'], 2)}x",
                    ">= 5x (bar 3x)",
                    verdict(ratio_ok) if ratio_ok else f"{verdict(bar_ok)} (bar)",
                ],
                ["plain / ours cold", f"{fmt(e['cold_ratio'], 2)}x", "", ""],
                [
                    "trivial job submit -> end, warm (median)",
                    f"{fmt(e['warm_latency_ms'], 1)} ms",
                    "<= 25 ms",
                    verdict(latency_ok),
                ],
                ["  p90", f"{fmt(e['warm_latency_p90_ms'], 1)} ms", "", ""],
                ["  same job, warm_python: false", f"{fmt(e['cold_latency_ms'], 1)} ms", "", ""],
            ],
        )
    )
    return bar_ok and latency_ok
