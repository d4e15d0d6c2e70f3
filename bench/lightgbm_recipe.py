"""lightgbm_train through the platform against plain LightGBM on the same file.

A seeded binary-classification dataset (``--rows`` x 50 features, default 200,000) is written
as a CSV file. Each figure is the best of ``--runs`` (default 2), wall time in seconds:

(a) ``train``: the recipe job with ``requirements.cpu`` 2 (``POST
    /api/v1/recipes/lightgbm_train/jobs``, timed from the submit until the job's event stream
    sends its end) against ``lightgbm.train`` in this process with ``num_threads`` 2 on the
    same file: pyarrow reads the CSV, the same 20 % hold-out scored every round, the same
    parameters, the model saved. Goal: ≤ 1.15x.
(b) ``cross_validate``, 5 folds: the recipe job (the folds in parallel tasks on the job's 2
    CPUs) against ``lightgbm.cv`` with ``num_threads`` 2 on the same file (reading it
    included). Goal: ≤ 0.8x.

Each run through the platform follows a run of its anchor, in this process while the platform
is up (on a machine others use too the load drifts between minutes; a pair shares it): the
table gives the best of each and the median of the runs' own ratios. ``lightgbm.train`` once
before the platform starts shows what the idle platform costs the anchors.

LightGBM's OpenMP threads wait passively on both sides: the recipe's package sets
``OMP_WAIT_POLICY=PASSIVE`` (see ``recipes/lightgbm_train/__init__.py``), and this process
imports that package before LightGBM, and its platform's workers inherit its environment.

On the platform, the dataset is uploaded once with the SDK; one small job of each operation
warms the workers first (a running platform has LightGBM imported); a job whose target column
is missing must fail naming ``target_column``; one boosting round on 2,000 rows gives the
fixed cost of a job. Every run's time is kept in the JSON. ``--local`` measures no platform:
the operations in this process through ``LocalContext`` (folds one after another), and the
folds as Ray tasks through the engine's own context on a local 2-CPU Ray, with the reading
and the binning timed apart.

(Named ``lightgbm_recipe.py``: a ``bench/lightgbm.py`` would shadow the ``lightgbm`` package
for every script run from ``bench/``, and for the Ray workers of a platform they start.)

    .venv/bin/python bench/lightgbm_recipe.py            # 200,000 x 50 through the platform
    .venv/bin/python bench/lightgbm_recipe.py --rows 50000 --runs 1
    .venv/bin/python bench/lightgbm_recipe.py --local --rows 50000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
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
from _dispatch_support import follow

from recipes.lightgbm_train.schema import LightGBMTrainPayload

FEATURES = 50
THREADS = 2
FOLDS = 5
GOALS = {"train": 1.15, "cross_validate": 0.8}
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def make_dataset(path: Path, rows: int, seed: int = 7) -> None:
    """``rows`` x 50 features (six decimals) and a binary ``y`` from a noisy non-linear score."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(rows, FEATURES)), 6)
    score = x[:, 0] + 0.7 * x[:, 1] * x[:, 2] - 0.5 * x[:, 3] ** 2 + 0.3 * x[:, 4:10].sum(axis=1)
    y = (score + rng.normal(scale=1.0, size=rows) > 0).astype(np.int64)
    columns = {f"f{i}": x[:, i] for i in range(FEATURES)}
    columns["y"] = y
    pa_csv.write_csv(pa.table(columns), path)


def payload(operation: str, dataset_ref: str = "art_bench") -> dict[str, Any]:
    return {
        "operation": operation,
        "dataset_ref": dataset_ref,
        "target_column": "y",
        "objective": "binary",
        "folds": FOLDS,
    }


def params() -> dict[str, Any]:
    """What the recipe gives LightGBM for :func:`payload` (its defaults), on 2 threads."""
    p = LightGBMTrainPayload.model_validate(payload("train"))
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction,
        "bagging_freq": 0,
        "seed": p.seed,
        "num_threads": THREADS,
        "verbosity": -1,
    }


def read_plain(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table_ = pa_csv.read_csv(path)
    y = table_.column("y").to_numpy().astype(np.float64)
    x = np.column_stack([table_.column(f"f{i}").to_numpy() for i in range(FEATURES)])
    return x, y


def plain_train(path: Path, out: Path, rounds: int | None = None) -> float:
    """Read, hold 20 % out, train 200 rounds scored on it every round, save the model."""
    import lightgbm as lgb

    rounds = rounds or LightGBMTrainPayload.model_validate(payload("train")).n_estimators
    t0 = time.perf_counter()
    x, y = read_plain(path)
    valid = np.random.default_rng(42).random(len(y)) < 0.2
    train_set = lgb.Dataset(x[~valid], label=y[~valid])
    valid_set = lgb.Dataset(x[valid], label=y[valid], reference=train_set)
    booster = lgb.train(params(), train_set, rounds, valid_sets=[valid_set])
    booster.save_model(str(out / "plain-model.txt"))
    return time.perf_counter() - t0


def plain_cv(path: Path) -> float:
    """Read, then ``lightgbm.cv`` of 5 stratified folds, 200 rounds (the folds in lockstep)."""
    import lightgbm as lgb

    rounds = LightGBMTrainPayload.model_validate(payload("train")).n_estimators
    t0 = time.perf_counter()
    x, y = read_plain(path)
    lgb.cv(params(), lgb.Dataset(x, label=y), rounds, folds=stratified_folds(y))
    return time.perf_counter() - t0


def stratified_folds(y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """5 folds keeping the class shares (``lightgbm.cv``'s own needs scikit-learn)."""
    rng = np.random.default_rng(42)
    fold = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        fold[rows] = np.arange(len(rows)) % FOLDS
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(FOLDS)]


def measure_anchors(anchors: dict[str, Any], data: Path, work: Path, runs: int) -> None:
    """Add ``runs`` runs of each anchor to ``anchors`` (``*_runs_s``) and keep the best."""
    for name, fn in (("train", lambda: plain_train(data, work)), ("cv", lambda: plain_cv(data))):
        times = anchors.setdefault(f"{name}_runs_s", [])
        times.extend(fn() for _ in range(runs))
        anchors[f"{name}_s"] = min(times)


def best_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    times = [fn() for _ in range(runs)]
    return min(times), times


# ---- through the platform ------------------------------------------------------------------
def run_recipe_job(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Submit, poll the job until it ends; (seconds from submit to the end, its result)."""
    elapsed, job = finish_job(client, body)
    if job["status"] != "completed":
        raise RuntimeError(f"job {job['id']} ended {job['status']}: {job.get('error')}")
    return elapsed, client.get(f"/api/v1/results/{job['id']}").json()


def finish_job(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Submit, wait for the job's end on its event stream; (seconds from submit to the end,
    the job). Not polling ``GET /api/v1/jobs/:id``: at 20 requests a second (for a 50 ms
    resolution) the ingress, the API and the database would share the job's 2 cores (the
    effect was not isolated from the other load on the machine)."""
    t0 = time.perf_counter()
    answer = client.post(
        "/api/v1/recipes/lightgbm_train/jobs",
        json={"payload": body, "requirements": {"cpu": THREADS}, "timeout_s": 1800},
    )
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"submit: {answer.status_code} {answer.text[:500]}")
    job_id = answer.json()["id"]
    follow(client, job_id, timeout_s=1800)
    elapsed = time.perf_counter() - t0
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    if job.get("status") not in TERMINAL:
        raise RuntimeError(f"job {job_id} streamed its end but is {job.get('status')}")
    return elapsed, job


def platform_figures(
    url: str, admin_key: str, data: Path, small: Path, runs: int, out: dict[str, Any]
) -> None:
    from computalot.sdk.client import ComputalotClient

    with ComputalotClient(url, admin_key, timeout=600) as sdk:
        small_id = sdk.upload_artifact(small)["id"]
        t0 = time.perf_counter()
        data_id = sdk.upload_artifact(data)["id"]
        out["upload_s"] = time.perf_counter() - t0
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        for operation in ("train", "cross_validate"):
            log(f"warm-up: {operation} on 2,000 rows")
            run_recipe_job(client, payload(operation, small_id))
        # A dataset without the target column: the job fails naming the field.
        _, refused = finish_job(client, {**payload("train", small_id), "target_column": "nope"})
        out["refused"] = {"status": refused["status"], "error": refused.get("error")}
        if refused["status"] != "failed" or "target_column" not in str(refused.get("error")):
            raise RuntimeError(f"a missing target column ended as {out['refused']}")
        # The fixed cost of a job (submit, dispatch, inputs, result, polling): one round on
        # 2,000 rows, next to the same in this process.
        tiny = {**payload("train", small_id), "n_estimators": 1}
        out["tiny_train_s"] = min(run_recipe_job(client, tiny)[0] for _ in range(3))
        out["tiny_train_plain_s"] = min(plain_train(small, data.parent, 1) for _ in range(3))
        # Each run of the platform right after a run of its anchor: on a machine others use
        # too, the load drifts between minutes, and a pair shares it.
        anchors = {
            "train": lambda: plain_train(data, data.parent),
            "cross_validate": lambda: plain_cv(data),
        }
        for operation in ("train", "cross_validate"):
            times, anchor_times = [], []
            for run in range(runs):
                log(f"{operation}: its anchor, then through the platform, run {run + 1} of {runs}")
                anchor_times.append(anchors[operation]())
                elapsed, results = run_recipe_job(client, payload(operation, data_id))
                times.append(elapsed)
                out[f"{operation}_result"] = _brief(results.get("aggregate_result") or {})
            out[f"{operation}_s"] = min(times)
            out[f"{operation}_runs_s"] = times
            out[f"{operation}_anchor_s"] = min(anchor_times)
            out[f"{operation}_anchor_runs_s"] = anchor_times
            out[f"{operation}_pair_ratios"] = [
                ours / theirs for ours, theirs in zip(times, anchor_times, strict=True)
            ]
            out[f"{operation}_timeline"] = timeline(client, str(results.get("job_id")))


def timeline(client: httpx.Client, job_id: str) -> list[list[Any]]:
    """The job's events as ``[seconds after the first, event, what it says]``: where the time
    of a job goes (queued, dispatched, reading, boosting, stored)."""
    from datetime import datetime

    events = client.get(f"/api/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["events"]
    if not events:
        return []
    start = datetime.fromisoformat(events[0]["created_at"])
    rows = []
    for event in events:
        data = event.get("data") or {}
        shown = data.get("progress", data) if isinstance(data, dict) else data
        if isinstance(shown, dict):
            keep = ("status", "fraction", "message")
            shown = {k: shown[k] for k in keep if k in shown}
        at = (datetime.fromisoformat(event["created_at"]) - start).total_seconds()
        rows.append([round(at, 3), event["event"], shown])
    return rows


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of a job's result (not the feature importances)."""
    keep = ("metric", "metric_value", "best_iteration", "n_train", "model_artifact", "mean", "std")
    return {k: result[k] for k in keep if k in result}


# ---- in this process -------------------------------------------------------------------------
def local_figures(data: Path, work: Path, runs: int) -> dict[str, Any]:
    """The operations through LocalContext, then the folds as Ray tasks on a local 2-CPU Ray,
    with the parent's own steps timed apart."""
    import ray

    from computalot.engine.recipe_context import RayRecipeContext
    from recipes.context import LocalContext
    from recipes.lightgbm_train.dataset import load_dataset
    from recipes.lightgbm_train.folds import binned_rows
    from recipes.lightgbm_train.operations import run_cross_validate, run_train

    out: dict[str, Any] = {}
    train_p = LightGBMTrainPayload.model_validate(payload("train"))
    cv_p = LightGBMTrainPayload.model_validate(payload("cross_validate"))
    inputs = {"dataset_ref": data}

    def timed(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    out["load_s"] = timed(lambda: load_dataset(cv_p, data))
    ds = load_dataset(cv_p, data)
    out["bin_s"] = timed(lambda: binned_rows(cv_p, ds, THREADS))
    out["train_s"], _ = best_of(
        runs,
        lambda: timed(
            lambda: run_train(LocalContext(work / "t", cpus=THREADS, inputs=inputs), train_p)
        ),
    )
    out["cv_sequential_s"], _ = best_of(
        runs,
        lambda: timed(
            lambda: run_cross_validate(LocalContext(work / "c", cpus=THREADS, inputs=inputs), cv_p)
        ),
    )
    ray.init(address="local", num_cpus=THREADS, include_dashboard=False, log_to_driver=False)
    try:

        def ray_context() -> RayRecipeContext:
            return RayRecipeContext(
                out_dir=work / "r",
                cpus=THREADS,
                deadline=time.monotonic() + 3600,
                inputs={"dataset_ref": (data, data.name)},
                report=lambda _fields: None,
            )

        (work / "r").mkdir(exist_ok=True)
        out["cv_ray_first_s"] = timed(lambda: run_cross_validate(ray_context(), cv_p))
        out["cv_ray_s"], _ = best_of(
            runs, lambda: timed(lambda: run_cross_validate(ray_context(), cv_p))
        )
    finally:
        ray.shutdown()
    return out


def report(args: argparse.Namespace, anchors: dict[str, Any], ours: dict[str, Any]) -> dict:
    rows, ratios = [], {}
    label = "local Ray" if args.local else "platform"
    pairs = (
        ("train", ours.get("train_s"), anchors.get("train_s"), "lightgbm.train"),
        (
            "cross_validate",
            ours.get("cv_ray_s" if args.local else "cross_validate_s"),
            anchors.get("cv_s"),
            "lightgbm.cv",
        ),
    )
    for operation, figure, anchor, anchor_name in pairs:
        ratio = figure / anchor if figure is not None and anchor else None
        ratios[operation] = ratio
        own = ours.get(f"{operation}_pair_ratios")
        ratios[f"{operation}_median_pair"] = statistics.median(own) if own else None
        rows.append(
            [
                operation,
                fmt(figure, 2),
                f"{anchor_name} {fmt(anchor, 2)}",
                "-" if ratio is None else f"{ratio:.2f}x",
                "-" if not own else f"{statistics.median(own):.2f}x",
                verdict(None if ratio is None else ratio <= GOALS[operation]),
                f"<= {GOALS[operation]}x",
            ]
        )
    print(
        table(
            f"lightgbm_train: {args.rows:,} x {FEATURES} CSV, {THREADS} CPUs, best of {args.runs}"
            + (" (in this process: operations, no API)" if args.local else ""),
            ["operation", f"{label} s", "anchor s", "ratio", "median of pairs", "verdict", "goal"],
            rows,
        )
    )
    if "tiny_train_s" in ours:
        print(
            f"fixed cost of a job: train 1 round on 2,000 rows {fmt(ours['tiny_train_s'], 2)} s "
            f"submit to end, {fmt(ours['tiny_train_plain_s'], 2)} s plain; upload of the "
            f"{args.rows:,}-row CSV {fmt(ours.get('upload_s'), 2)} s (not in the figures)"
        )
        print(
            f"lightgbm.train before the platform started: "
            f"{fmt(anchors.get('train_no_platform_s'), 2)} s (with the platform up: "
            f"{fmt(anchors.get('train_s'), 2)} s)"
        )
    for operation in ("train", "cross_validate"):
        steps = ours.get(f"{operation}_timeline") or []
        if steps:
            shown = [row for row in steps if row[1] != "progress"]
            progress = [row for row in steps if row[1] == "progress"]
            if progress:
                shown += [progress[0], progress[-1]]
            shown.sort(key=lambda row: row[0])
            print(f"last {operation} job's events (s after the first): ")
            for at, event, data in shown:
                print(f"  {at:7.3f}  {event}  {data}")
    if args.local:
        print(
            f"in this process: read+prepare {fmt(ours['load_s'], 2)} s, bin once "
            f"{fmt(ours['bin_s'], 2)} s; cross_validate with folds one after another "
            f"{fmt(ours['cv_sequential_s'], 2)} s; as Ray tasks {fmt(ours['cv_ray_s'], 2)} s "
            f"(first {fmt(ours['cv_ray_first_s'], 2)} s)"
        )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--local", action="store_true", help="no platform (see the docstring)")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    data_dir = isolated_env()
    work = Path(tempfile.mkdtemp(prefix="computalot-bench-lightgbm-"))
    start = machine_state()
    status = 0
    try:
        data, small = work / "data.csv", work / "small.csv"
        log(f"writing {args.rows:,} x {FEATURES} rows")
        make_dataset(data, args.rows)
        make_dataset(small, 2_000, seed=8)
        anchors: dict[str, Any] = {}
        if args.local:
            log("anchors: lightgbm.train and lightgbm.cv in this process")
            measure_anchors(anchors, data, work, args.runs)
            ours = local_figures(data, work, args.runs)
            end = machine_state()
        else:
            log("lightgbm.train before the platform starts (what its idle background costs)")
            anchors["train_no_platform_s"] = min(plain_train(data, work) for _ in range(args.runs))
            done = run_on_platform(
                lambda running, out: platform_figures(
                    running.url, running.admin_key, data, small, args.runs, out
                ),
                num_cpus=THREADS,
                max_seconds=args.max_seconds,
                cleanup=[data_dir],
            )
            ours, status, end = done.results, done.status, done.machine_end
            for name, operation in (("train", "train"), ("cv", "cross_validate")):
                anchors[f"{name}_s"] = ours.get(f"{operation}_anchor_s")
                anchors[f"{name}_runs_s"] = ours.get(f"{operation}_anchor_runs_s")
        size_mb = data.stat().st_size / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(machine_line(start, end))
    ratios = report(args, anchors, ours)
    name = "lightgbm_local" if args.local else "lightgbm"
    path = write_results(
        name,
        {
            "rows": args.rows,
            "features": FEATURES,
            "csv_mb": size_mb,
            "runs": args.runs,
            "goals": GOALS,
            "anchors": anchors,
            "figures": ours,
            "ratios": ratios,
        },
    )
    print(f"results: {path.relative_to(REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
