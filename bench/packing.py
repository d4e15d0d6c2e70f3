"""The packing recipe: eval_batch throughput against the public scorer, and what each optimiser
reaches in a fixed time on 2 cores.

(a) ``eval_batch`` candidates/s on one core: the recipe's kernel in this process on
``--candidates`` jittered compact packings (some valid, most overlapping) in batches of 1,000,
against the public challenge's own scorer (``benedictbrady/shape-packing-challenge``, a checkout
given as ``--challenge-dir``; run with ``--challenge-python``, an interpreter with its
dependencies numpy and shapely) on the first ``--public-candidates`` of them, whose verdicts
must agree. Goal ≥ 1,000×, bar ≥ 100×.

(b) each optimiser's best valid radius within ``--budget-s`` (default 600) on 2 cores from its
default start, seed 0: through the platform (``POST /api/v1/recipes/packing/jobs`` with
``{"operation", "time_budget_s", "seed"}`` and ``requirements.cpu`` 2), or with
``--local`` in this process (islands in a pool of 2 worker processes). Each best candidate is
re-scored by the public scorer. Anchor: the best published radius, 2.948689; bar R ≤ 3.00.

    .venv/bin/python bench/packing.py --challenge-dir ../spc --challenge-python ../spc/.venv/bin/python
    .venv/bin/python bench/packing.py --local --budget-s 60 --skip-throughput
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    isolated_env,
    log,
    machine_line,
    machine_state,
    run_on_platform,
    table,
    verdict,
    write_results,
)

from recipes.context import LocalContext

RECORD = 2.948689
BAR_RADIUS = 3.00
GOAL_RATIO, BAR_RATIO = 1_000.0, 100.0
OPERATIONS = ("feasible_optimize", "basin_hopping", "differential_evolution")

#: Runs in the challenge's interpreter: scores the candidates on stdin with its own scorer.
PUBLIC_SCORER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from semicircle_packing.geometry import Semicircle
from semicircle_packing.scoring import validate_and_score
cands = json.load(sys.stdin)
out = []
t0 = time.perf_counter()
for c in cands:
    scs = [Semicircle(x=round(c[3*i], 6), y=round(c[3*i+1], 6), theta=round(c[3*i+2], 6))
           for i in range(15)]
    r = validate_and_score(scs)
    out.append({"valid": bool(r.valid), "score": r.score})
print(json.dumps({"seconds": time.perf_counter() - t0, "results": out}))
"""


def public_scores(
    args: argparse.Namespace, candidates: Sequence[Sequence[float]]
) -> dict[str, Any] | None:
    """The public scorer's verdicts and its time on ``candidates``; None (said loudly) when
    no checkout was given."""
    src = Path(args.challenge_dir or "") / "src" / "semicircle_packing"
    if not args.challenge_dir or not src.is_dir():
        log(
            "PUBLIC SCORER MISSING: no --challenge-dir checkout of "
            "benedictbrady/shape-packing-challenge (src/semicircle_packing); its anchors are "
            "SKIPPED"
        )
        return None
    done = subprocess.run(
        [args.challenge_python, "-c", PUBLIC_SCORER, str(src.parent)],
        input=json.dumps([list(map(float, c)) for c in candidates]),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the public scorer failed: {done.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def jittered_batch(n: int, seed: int = 0) -> np.ndarray:
    """``n`` compact packings: the default start spread by 0-15 % and jittered."""
    from recipes.packing.optimizers.starts import default_start

    rng = np.random.default_rng(seed)
    base = np.repeat(default_start()[None, :], n, axis=0)
    spread = rng.uniform(1.0, 1.15, n)[:, None]
    base[:, 0::3] *= spread
    base[:, 1::3] *= spread
    return base + rng.normal(0.0, 0.02, base.shape) * (rng.uniform(size=(n, 1)) < 0.8)


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """(a): kernel candidates/s, public scorer candidates/s, verdict agreement."""
    from recipes.packing.scoring import evaluate_batch

    batch = jittered_batch(args.candidates)
    evaluate_batch(batch[:200])  # warm up
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for lo in range(0, len(batch), 1_000):
        results += evaluate_batch(batch[lo : lo + 1_000])["results"]
    ours_s = time.perf_counter() - started
    out: dict[str, Any] = {
        "candidates": len(batch),
        "ours_cands_per_s": len(batch) / ours_s,
        "n_valid": sum(r["valid"] for r in results),
    }
    log(f"kernel: {out['ours_cands_per_s']:,.0f} candidates/s, {out['n_valid']} valid")
    subset = batch[: args.public_candidates].tolist()
    public = public_scores(args, subset)
    if public is not None:
        out["public_candidates"] = len(subset)
        out["public_cands_per_s"] = len(subset) / public["seconds"]
        out["ratio"] = out["ours_cands_per_s"] / out["public_cands_per_s"]
        agree = 0
        for ours, theirs in zip(results, public["results"], strict=False):
            same = ours["valid"] == theirs["valid"]
            if same and ours["valid"]:
                same = abs(ours["score"] - theirs["score"]) < 1e-6
            agree += same
        out["verdicts_agree"] = agree
        log(f"public scorer: {out['public_cands_per_s']:.2f} candidates/s, agree {agree}")
    return out


class PoolContext(LocalContext):
    """LocalContext whose ``parallel`` calls run in a pool of worker processes (the cores a
    job would hold)."""

    def __init__(self, out_dir: Path, pool: ProcessPoolExecutor, cpus: int, timeout_s: float):
        super().__init__(out_dir, cpus=cpus, timeout_s=timeout_s)
        self.pool = pool

    def parallel(
        self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, num_cpus: float = 1
    ) -> list[Any]:
        return list(self.pool.map(fn, *zip(*calls, strict=True))) if calls else []


def optimise_local(args: argparse.Namespace, op: str, work: Path) -> dict[str, Any]:
    """(b) in this process: the operation with a 2-process pool as its cores."""
    from recipes.packing import operations
    from recipes.packing.schema import PackingPayload

    payload = PackingPayload.model_validate(
        {"operation": op, "time_budget_s": args.budget_s, "seed": args.seed}
    )
    with ProcessPoolExecutor(args.cpus) as pool:
        ctx = PoolContext(work / op, pool, args.cpus, args.budget_s + 120)
        started = time.monotonic()
        result: dict[str, Any] = getattr(operations, f"run_{op}")(ctx, payload)
    result["wall_s"] = time.monotonic() - started
    return result


def _find_result(value: Any) -> dict[str, Any] | None:
    """The optimiser's result in ``GET /results/:id``: ``results[0].result`` (the job's one
    task), else wherever a dict with ``best_candidate`` is."""
    if isinstance(value, dict) and isinstance(value.get("results"), list) and value["results"]:
        first = value["results"][0]
        if isinstance(first, dict) and isinstance(first.get("result"), dict):
            inner = first["result"]
            if "best_candidate" in inner:
                return inner
    if isinstance(value, dict):
        if "best_candidate" in value:
            return value
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _find_result(child)
        if found is not None:
            return found
    return None


def optimise_platform(
    args: argparse.Namespace, url: str, admin_key: str, op: str
) -> dict[str, Any]:
    """(b) through the platform: submit the recipe job, poll it, read its result."""
    import httpx

    headers = {"Authorization": f"Bearer {admin_key}"}
    body = {
        "payload": {"operation": op, "time_budget_s": args.budget_s, "seed": args.seed},
        "requirements": {"cpu": float(args.cpus)},
        "timeout_s": int(args.budget_s) + 120,
    }
    with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60) as client:
        started = time.monotonic()
        answer = client.post("/recipes/packing/jobs", json=body)
        if answer.status_code >= 300:
            raise RuntimeError(f"submit {op}: {answer.status_code} {answer.text[:500]}")
        job_id = answer.json()["id"]
        log(f"{op}: job {job_id}")
        while True:
            job = client.get(f"/jobs/{job_id}").json()
            if job.get("status") in {"completed", "partial", "failed", "cancelled"}:
                break
            time.sleep(2.0)
        wall = time.monotonic() - started
        raw = client.get(f"/results/{job_id}").json()
    result = _find_result(raw)
    if result is None:
        raise RuntimeError(f"{op}: no optimiser result in {json.dumps(raw)[:1000]}")
    return {**result, "wall_s": wall, "job_status": job.get("status"), "job_id": job_id}


def optimisers(
    args: argparse.Namespace, run_one: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """(b): every optimiser, each best candidate re-scored by the public scorer."""
    out: dict[str, Any] = {}
    for op in args.operations:
        log(f"{op}: {args.budget_s:.0f} s on {args.cpus} cores")
        result = run_one(op)
        public = public_scores(args, [result["best_candidate"]])
        theirs = public["results"][0] if public is not None else None
        out[op] = {
            "best_score": result["best_score"],
            "valid": result["valid"],
            "public_valid": theirs["valid"] if theirs else None,
            "public_score": theirs["score"] if theirs else None,
            "evaluations": result["evaluations"],
            "iterations": result.get("iterations"),
            "stopped": result.get("stopped"),
            "wall_s": result["wall_s"],
            "best_candidate": result["best_candidate"],
        }
        log(f"{op}: radius {result['best_score']:.6f} valid {result['valid']}")
    return out


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    if "throughput" in r:
        t = r["throughput"]
        ratio = t.get("ratio")
        rows = [
            [
                "eval_batch candidates/s (1 core)",
                f"{t['ours_cands_per_s']:,.0f}",
                f"public {t['public_cands_per_s']:,.2f}" if ratio else "public: SKIPPED",
                f"{ratio:,.0f}x" if ratio else "-",
                verdict(ratio >= GOAL_RATIO if ratio else None)
                + (f" (bar {verdict(ratio >= BAR_RATIO)})" if ratio else ""),
            ]
        ]
        if ratio:
            rows.append(
                [
                    "verdicts agreeing",
                    f"{t['verdicts_agree']}/{t['public_candidates']}",
                    "all",
                    "-",
                    verdict(t["verdicts_agree"] == t["public_candidates"]),
                ]
            )
        print(
            table(
                f"Packing (a): {t['candidates']:,} candidates, {t['n_valid']:,} valid",
                ["measure", "ours", "anchor", "ratio", f"goal >= {GOAL_RATIO:,.0f}x"],
                rows,
            )
        )
    if "optimisers" in r:
        rows = []
        for op, o in r["optimisers"].items():
            public = "-" if o["public_valid"] is None else str(o["public_valid"])
            rows.append(
                [
                    op,
                    f"{o['best_score']:.6f}",
                    f"{o['valid']} / {public}",
                    f"record {RECORD}",
                    f"{o['best_score'] - RECORD:+.6f}",
                    f"{o['evaluations']:,}",
                    verdict(o["valid"] and o["best_score"] <= BAR_RADIUS),
                ]
            )
        where = "in process (--local)" if args.local else "through the platform"
        print(
            table(
                f"Packing (b): best radius in {args.budget_s:.0f} s on {args.cpus} cores, {where}",
                ["operation", "radius", "valid ours/public", "anchor", "gap", "evals", "R<=3.00"],
                rows,
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--challenge-dir", default=os.environ.get("PACKING_CHALLENGE_DIR"))
    parser.add_argument(
        "--challenge-python",
        default=os.environ.get("PACKING_CHALLENGE_PYTHON", sys.executable),
        help="interpreter with the challenge's dependencies (numpy, shapely)",
    )
    parser.add_argument("--candidates", type=int, default=20_000)
    parser.add_argument("--public-candidates", type=int, default=30)
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--operations", nargs="+", default=list(OPERATIONS), choices=OPERATIONS)
    parser.add_argument("--local", action="store_true", help="(b) in process, not the platform")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-optimisers", action="store_true")
    args = parser.parse_args(argv)
    start = machine_state()
    results: dict[str, Any] = {}
    status = 0
    if not args.skip_throughput:
        results["throughput"] = throughput(args)
    if not args.skip_optimisers:
        if args.local:
            work = Path(tempfile.mkdtemp(prefix="computalot-bench-packing-"))
            results["optimisers"] = optimisers(args, lambda op: optimise_local(args, op, work))
        else:
            data_dir = isolated_env()
            budget = len(args.operations) * (args.budget_s + 180) + 300
            done = run_on_platform(
                lambda running, out: out.update(
                    optimisers(
                        args,
                        lambda op: optimise_platform(args, running.url, running.admin_key, op),
                    )
                ),
                num_cpus=args.cpus,
                max_seconds=budget,
                cleanup=[data_dir],
            )
            results["optimisers"], status = done.results, done.status
    print(machine_line(start, machine_state()))
    report(args, results)
    path = write_results(
        "packing",
        {"budget_s": args.budget_s, "cpus": args.cpus, "local": args.local, **results},
    )
    log(f"results in {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
