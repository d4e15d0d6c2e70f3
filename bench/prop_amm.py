"""prop_amm: simulations through the platform against the same evaluator in one process.

The strategy is the challenge's starter shape (a 5 % fee constant product,
``tests/integration/prop_amm_strategies/constant_product_5pct.rs``), compiled once into its
runner (``recipes/prop_amm/build.py``, the node's cache). Each figure is the best of ``--runs``
(default 1), wall time in seconds, for ``--sims`` simulations (default 1,000) of ``--steps``
steps (default 10,000), seeds 0 ..:

(a) direct: the runner executable's ``eval`` in one process on one core, no platform, no
    sandbox: what the evaluator itself costs.
(b) platform: an ``eval`` job with ``requirements.cpu`` ``--cpus`` (default 2), timed from the
    submit until its event stream ends: the seeds split into ``eval_chunk`` Ray tasks, each a
    sandboxed runner process, merged. A small job first warms the workers (its build is
    cached, so no compile is timed).

Both must print the same average edge (the challenge's native simulator prints 210.50 for the
default run). Simulations/s per core = sims / wall / cores used. The challenge's authors quote
about 5 s for 1,000 x 10,000 natively on an 8-core laptop (about 25 simulations/s per core).

    .venv/bin/python bench/prop_amm.py
    .venv/bin/python bench/prop_amm.py --sims 200 --steps 10000
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import tempfile
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
    write_results,
)
from _dispatch_support import follow

from recipes.prop_amm import build as builds
from recipes.prop_amm.source_check import check_source

STRATEGY = REPO / "tests" / "integration" / "prop_amm_strategies" / "constant_product_5pct.rs"
CHALLENGE_AVG_1000 = "210.50"  # its native simulator, seeds 0..999 at 10,000 steps


def direct(binary: Path, sims: int, steps: int) -> tuple[float, float]:
    """(wall seconds, average edge) of the runner's eval in this machine's one process."""
    with tempfile.TemporaryDirectory(prefix="computalot-bench-prop-amm-") as tmp:
        out = Path(tmp) / "out.json"
        t0 = time.perf_counter()
        subprocess.run([str(binary), "eval", str(out), "0", "0", str(sims), str(steps)], check=True)
        wall = time.perf_counter() - t0
        edges = json.loads(out.read_text())["edges"]
    total = 0.0
    for edge in edges:
        total += edge
    return wall, total / len(edges)


def platform_figures(
    url: str, key: str, source: str, args: argparse.Namespace, out: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    encoded = base64.b64encode(source.encode()).decode()
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:

        def run(count: int) -> tuple[float, dict[str, Any]]:
            payload = {"operation": "eval", "rs_source_b64": encoded, "count": count}
            payload["steps"] = args.steps
            body = {"payload": payload, "requirements": {"cpu": args.cpus}, "timeout_s": 3600}
            t0 = time.perf_counter()
            answer = client.post("/api/v1/recipes/prop_amm/jobs", json=body)
            answer.raise_for_status()
            job, _events = follow(client, answer.json()["id"], 3600)
            wall = time.perf_counter() - t0
            if job["status"] != "completed":
                raise RuntimeError(f"job {job['id']} ended {job['status']}")
            result = client.get(f"/api/v1/results/{job['id']}").json()["aggregate_result"]
            return wall, result

        log("warming the workers with a 4-simulation job")
        out["warmup_s"], _ = run(4)
        walls = []
        for i in range(args.runs):
            log(f"platform run {i + 1}: {args.sims} simulations on {args.cpus} CPUs")
            wall, result = run(args.sims)
            walls.append(wall)
            out["platform_avg_edge"] = result["avg_edge"]
            out["chunks"] = result["chunks"]
            out["build_cached"] = result["build_cached"]
        out["platform_runs_s"] = walls
        out["platform_s"] = min(walls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    source = STRATEGY.read_text()
    _problems, summary = check_source(source)
    log("compiling the strategy (or taking it from the node's cache)")
    built = builds.compile_strategy(source, summary.has_after_swap, 1800)
    start = machine_state()
    figures: dict[str, Any] = {"build_seconds": built.seconds, "build_cached": built.cached}
    walls = []
    for i in range(args.runs):
        log(f"direct run {i + 1}: {args.sims} simulations in one process")
        wall, avg = direct(built.binary, args.sims, args.steps)
        walls.append(wall)
        figures["direct_avg_edge"] = avg
    figures["direct_runs_s"] = walls
    figures["direct_s"] = min(walls)
    data_dir = isolated_env()
    done = run_on_platform(
        lambda running, out: platform_figures(running.url, running.admin_key, source, args, out),
        num_cpus=args.cpus,
        max_seconds=args.max_seconds,
        cleanup=[data_dir],
    )
    figures.update(done.results)
    print(machine_line(start, done.machine_end))
    sims = args.sims
    rows = [
        [
            "direct, 1 process",
            "1",
            fmt(figures["direct_s"], 2),
            fmt(sims / figures["direct_s"], 1),
            fmt(sims / figures["direct_s"], 1),
            f"{figures['direct_avg_edge']:.2f}",
        ]
    ]
    if "platform_s" in figures:
        wall = figures["platform_s"]
        rows.append(
            [
                f"platform, {figures.get('chunks')} chunks",
                str(args.cpus),
                fmt(wall, 2),
                fmt(sims / wall, 1),
                fmt(sims / wall / args.cpus, 1),
                f"{figures['platform_avg_edge']:.2f}",
            ]
        )
        figures["same_avg_edge"] = figures["platform_avg_edge"] == figures["direct_avg_edge"]
    title = f"prop_amm: {sims} simulations x {args.steps} steps (starter shape, seeds 0..)"
    header = ["run", "cores", "wall s", "sims/s", "sims/s/core", "avg edge"]
    print(table(title, header, rows))
    if sims == 1000 and args.steps == 10_000:
        print(f"the challenge's native simulator prints Avg edge {CHALLENGE_AVG_1000}")
    path = write_results(
        "prop_amm", {"sims": sims, "steps": args.steps, "cpus": args.cpus, "figures": figures}
    )
    print(f"results: {path.relative_to(REPO)}")
    return done.status


if __name__ == "__main__":
    raise SystemExit(main())
