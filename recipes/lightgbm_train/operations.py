"""The ``lightgbm_train`` operations a recipe task runs (docs/recipes.md, "lightgbm_train").

:func:`run_train` trains one model on a hold-out split with the job's CPUs as LightGBM threads,
publishes ``model.txt`` and ``preprocessing.json`` and answers their ``art_…`` ids;
:func:`run_cross_validate` reads and bins the rows once and trains the folds in parallel tasks
(:mod:`recipes.lightgbm_train.folds`) that together use the job's CPUs.

Both report progress every few boosting rounds and stop boosting before the job's deadline
(keeping a tenth of the time, at least 5 s, to save and score), answering with the best round
so far. Bad data is refused as :class:`~recipes.context.RecipeFailure` naming the field at
fault, never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightgbm as lgb
import pyarrow as pa

from recipes.context import RecipeContext, RecipeFailure
from recipes.lightgbm_train.callbacks import RoundWatch
from recipes.lightgbm_train.dataset import load_dataset
from recipes.lightgbm_train.folds import binned_rows, plan_waves, run_fold, without_features
from recipes.lightgbm_train.schema import LightGBMTrainPayload
from recipes.lightgbm_train.train import (
    MODEL_FILE,
    PREPROCESSING_FILE,
    fold_of_rows,
    resolve_metric,
    summarise_folds,
    train,
)

DATASET_FIELD = "dataset_ref"
#: Share of the job's time kept after boosting stops (saving, scoring, storing artifacts).
MARGIN_SHARE = 0.1
MIN_MARGIN_S = 5.0


@contextmanager
def refusals() -> Iterator[None]:
    """Turn what LightGBM or Arrow refuse about the data into a ``dataset_ref`` failure (the
    kernels' own checks already raise ``RecipeFailure`` naming their field)."""
    try:
        yield
    except RecipeFailure:
        raise
    except lgb.basic.LightGBMError as exc:
        raise RecipeFailure(f"{DATASET_FIELD}: LightGBM refused the data: {exc}") from None
    except pa.ArrowException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RecipeFailure(f"{DATASET_FIELD}: the dataset could not be read: {first}") from None


def _margin(ctx: RecipeContext) -> float:
    return max(MIN_MARGIN_S, MARGIN_SHARE * ctx.time_left())


def _reporter(ctx: RecipeContext) -> Callable[[dict[str, Any]], None]:
    return lambda fields: ctx.progress(**fields)


def run_train(ctx: RecipeContext, payload: LightGBMTrainPayload) -> dict[str, Any]:
    """``train``: one model on a hold-out split; the model and its preprocessing published."""
    margin = _margin(ctx)
    watch = RoundWatch(
        payload.n_estimators,
        report=_reporter(ctx),
        time_up=lambda: ctx.time_left() < margin,
    )
    ctx.progress(final=True, fraction=0.0, message="reading the dataset")
    with refusals():
        result = train(
            payload,
            ctx.input_path(DATASET_FIELD),
            ctx.out_dir,
            num_threads=ctx.cpus,
            filename=ctx.input_filename(DATASET_FIELD),
            callbacks=[watch],
        )
    result["model_artifact"] = ctx.publish(MODEL_FILE)
    result["preprocessing_artifact"] = ctx.publish(PREPROCESSING_FILE)
    ctx.progress(
        final=True,
        fraction=1.0,
        message=_ending(watch, payload.n_estimators, result["best_iteration"]),
        best_score=result["metric_value"],
    )
    return result


def _ending(watch: RoundWatch, rounds: int, best: int) -> str:
    if watch.stopped_at is not None:
        return (
            f"stopped after round {watch.stopped_at} of {rounds} as the job's time ran out; "
            f"best round {best}"
        )
    return f"trained {rounds} rounds; best round {best}"


def run_cross_validate(ctx: RecipeContext, payload: LightGBMTrainPayload) -> dict[str, Any]:
    """``cross_validate``: ``folds`` models, each scored on the rows it did not see, trained in
    parallel tasks sharing the job's CPUs; their mean and standard deviation."""
    margin = _margin(ctx)
    k = payload.folds
    ctx.progress(final=True, fraction=0.0, message="reading the dataset")
    with refusals():
        ds = load_dataset(payload, ctx.input_path(DATASET_FIELD), ctx.input_filename(DATASET_FIELD))
        metric = resolve_metric(payload, ds.objective)
        fold_of_rows(ds, payload, k)  # more folds than rows: refused here, not in k tasks
        ctx.progress(final=True, fraction=0.02, message=f"binning {ds.rows} rows once")
        binned = binned_rows(payload, ds, ctx.cpus)
    shared_ds, shared_binned = ctx.share(without_features(ds)), ctx.share(binned)
    stop_at = time.time() + ctx.time_left() - margin
    results: list[dict[str, Any]] = []
    for wave, threads in plan_waves(k, ctx.cpus):
        ctx.progress(
            final=True,
            fraction=round(0.05 + 0.95 * len(results) / k, 4),
            message=f"training folds {wave[0]}-{wave[-1]} of 0-{k - 1}, {threads} thread(s) each",
        )
        calls = [(payload, shared_ds, shared_binned, fold, k, threads, stop_at) for fold in wave]
        with refusals():
            results.extend(ctx.parallel(run_fold, calls, num_cpus=threads))
    stopped = [r["fold"] for r in results if r.get("stopped_at") is not None]
    summary = summarise_folds(results, metric)
    message = f"{k} folds done"
    if stopped:
        message += f"; folds {stopped} stopped early as the job's time ran out"
    ctx.progress(final=True, fraction=1.0, message=message, best_score=summary["mean"])
    return summary
