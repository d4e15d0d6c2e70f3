"""``run_recipe``: one attempt of a recipe task, natively in a Ray worker (docs/recipes.md).

No subprocess and no project: the worker places the payload's ``*_ref`` artifacts in a private
attempt directory, imports the recipe operation's function (``recipes.registry``) and calls it
with a :class:`~computalot.engine.recipe_context.RayRecipeContext`. Its return value is the
task's result; the files it wrote in its output directory become the task's artifacts, those
it published under the ids the result quotes. Progress goes to the event hub as for a runner's
progress lines.

How an attempt ends, as an :class:`~computalot.engine.attempt.Outcome` status:
``ok``; ``invalid_input`` (or the code of a :class:`~recipes.context.RecipeFailure`) with its
message; ``recipe_error`` for any other exception (its type and message, the traceback only in
the worker's log); ``timeout`` when ``timeout_s`` passed (a watchdog interrupts the operation);
``cancelled`` when the dispatcher's Ray cancel arrived. Sub-tasks are force-stopped in every
case but ``ok``.
"""

from __future__ import annotations

import _thread
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
from numpy.typing import NDArray
from pydantic import BaseModel

from computalot.capabilities import task_resources
from computalot.engine.attempt import AttemptSpec, Outcome
from computalot.engine.cleanup import CLEANER, owner_tag
from computalot.engine.recipe_context import RayRecipeContext
from computalot.engine.result_file import text_bytes
from computalot.engine.run_task import (
    DEFAULT_MAX_RESULT_BYTES,
    INLINE_RESULT_BYTES,
    UPLOAD_SLACK_S,
    _LiveReporter,
    attempt_root,
    make_interruptible,
)
from computalot.engine.task_files import InputUnavailable, place_inputs, upload_artifacts
from recipes.context import RecipeFailure
from recipes.registry import Recipe, get_recipe

log = logging.getLogger("computalot.run_recipe")

#: The operation is told to answer this long before ``timeout_s`` (share of it, bounds in s),
#: leaving time to store its artifacts.
MARGIN_SHARE = 0.05
MARGIN_MIN_S = 1.0
MARGIN_MAX_S = 30.0
MAX_ERROR_CHARS = 2000


def _node_id() -> str | None:
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _failed(status: str, message: str, started: float, progress: Any = None) -> Outcome:
    return Outcome(
        status=status,
        error=message[:MAX_ERROR_CHARS],
        duration_s=time.monotonic() - started,
        last_progress=progress,
        node_id=_node_id(),
    )


class _Watchdog:
    """Interrupts the main thread at ``deadline`` (``time.monotonic()``) unless stopped."""

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(deadline,), name="recipe-watchdog", daemon=True
        )
        self._thread.start()

    def _run(self, deadline: float) -> None:
        if not self._stop.wait(max(0.0, deadline - time.monotonic())):
            self.fired = True
            _thread.interrupt_main()

    def stop(self) -> None:
        self._stop.set()


def _result_text(result: Any, limit: int) -> tuple[str | None, str | None]:
    """(the result's JSON text, None) or (None, why it cannot be stored)."""
    if not isinstance(result, dict):
        return None, f"the operation answered {type(result).__name__}, not an object"
    try:
        text = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        return None, f"the operation's result is not plain JSON: {exc}"
    size = text_bytes(text)
    if size > limit:
        return None, f"the result is {size} bytes; the limit is {limit}"
    return text, None


def _inputs(spec: AttemptSpec, root: Path) -> dict[str, tuple[Path, str]]:
    inputs = (spec.recipe or {}).get("inputs") or {}
    return {field: (root / rel, filename) for field, (rel, filename) in inputs.items()}


def _operation(spec: AttemptSpec) -> tuple[Recipe, Callable[..., Any], BaseModel]:
    """The recipe, its operation's function and the payload as its model; ``LookupError``
    naming what is missing (a deployment without the recipe or operation the job names)."""
    recipe_spec = spec.recipe or {}
    recipe = get_recipe(str(recipe_spec.get("recipe")))
    if recipe is None:
        raise LookupError(f"recipe {recipe_spec.get('recipe')!r} is not on this worker")
    try:
        run = recipe.operation(str(recipe_spec.get("operation"))).load()
        payload = recipe.payload_model.model_validate(spec.payload)
    except (KeyError, LookupError, ImportError, ValueError) as exc:
        raise LookupError(f"recipe {recipe.name!r}: {type(exc).__name__}: {exc}") from None
    return recipe, run, payload


def _run(spec: AttemptSpec, root: Path, started: float) -> tuple[Outcome, NDArray[np.uint8] | None]:
    recipe_spec = spec.recipe or {}
    try:
        recipe, run, payload = _operation(spec)
    except LookupError as exc:
        return _failed("recipe_error", str(exc), started), None
    deadline = started + spec.timeout_s
    try:
        place_inputs(root, list(spec.downloads), spec.store, deadline)
    except InputUnavailable as exc:
        return _failed("input_unavailable", str(exc), started), None
    out_dir = root / "out"
    out_dir.mkdir()
    margin = min(MARGIN_MAX_S, max(MARGIN_MIN_S, spec.timeout_s * MARGIN_SHARE))
    reporter = _LiveReporter(spec)
    ctx = RayRecipeContext(
        out_dir=out_dir,
        cpus=int(recipe_spec.get("cpus") or 1),
        deadline=deadline - margin,
        inputs=_inputs(spec, root),
        report=lambda fields: reporter("progress", {"progress": fields}),
        resources=task_resources(recipe.operation(str(recipe_spec.get("operation"))).capability),
    )
    watchdog = _Watchdog(deadline)
    failed: Outcome | None = None
    try:
        result = run(ctx, payload)
        ctx.flush_progress()
    except KeyboardInterrupt:
        ctx.stop_children()
        if not watchdog.fired:
            raise  # the dispatcher's cancel
        return _failed("timeout", f"timed out after {spec.timeout_s} s", started), None
    except RecipeFailure as exc:
        ctx.stop_children()
        failed = _failed(exc.code, exc.message, started, ctx.last_progress)
    except Exception as exc:
        ctx.stop_children()
        log.exception("recipe %s %s failed", recipe.name, recipe_spec.get("operation"))
        failed = _failed("recipe_error", f"{type(exc).__name__}: {exc}", started, ctx.last_progress)
    finally:
        watchdog.stop()
    reporter.drain()
    if failed is not None:
        return failed, None
    text, problem = _result_text(result, spec.max_result_bytes or DEFAULT_MAX_RESULT_BYTES)
    if text is None:
        invalid = Outcome(
            status="ok",
            duration_s=time.monotonic() - started,
            result_state="invalid",
            result_code="result_too_large" if "the limit is" in str(problem) else "invalid_result",
            result_error=problem,
            last_progress=ctx.last_progress,
            node_id=_node_id(),
        )
        return invalid, None
    until = deadline + spec.kill_grace_s + UPLOAD_SLACK_S
    files, warnings = upload_artifacts(out_dir, spec.store, spec.max_artifact_bytes, until)
    for item in files:
        if item.get("path") in ctx.published:
            item["id"] = ctx.published[item["path"]]
    missing = sorted(set(ctx.published) - {str(i.get("path")) for i in files})
    if missing:
        warnings.append(f"published files not stored: {', '.join(missing)}")
    size = text_bytes(text)
    big = size > INLINE_RESULT_BYTES
    outcome = Outcome(
        status="ok",
        exit_code=0,
        duration_s=time.monotonic() - started,
        last_progress=ctx.last_progress,
        result_state="ok",
        result_text=None if big else text,
        result_bytes=size,
        result_in_ref=big,
        artifacts=files,
        artifact_warnings=warnings,
        node_id=_node_id(),
    )
    return outcome, (np.frombuffer(text.encode("utf-8"), dtype=np.uint8) if big else None)


def execute_recipe(spec: AttemptSpec) -> tuple[Outcome, NDArray[np.uint8] | None]:
    """Run one recipe attempt in this process (see the module); a Ray cancel ends it with a
    ``cancelled`` outcome."""
    started = time.monotonic()
    make_interruptible()
    base = attempt_root()
    CLEANER.sweep(base)
    prefix = f"{spec.task_id}-{spec.attempt}-{owner_tag()}"
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        return _run(spec, root, started)
    except KeyboardInterrupt:
        log.info("recipe task %s attempt %s cancelled", spec.task_id, spec.attempt)
        return Outcome(
            status="cancelled",
            error="cancelled",
            node_id=_node_id(),
            duration_s=time.monotonic() - started,
        ), None
    finally:
        CLEANER.remove(root)


@ray.remote(max_retries=0, num_returns=2)
def run_recipe(spec: AttemptSpec) -> tuple[Outcome, NDArray[np.uint8] | None]:
    return execute_recipe(spec)
