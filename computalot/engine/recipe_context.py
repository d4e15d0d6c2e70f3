"""The :class:`~recipes.context.RecipeContext` of a recipe task on the cluster (docs/recipes.md).

``parallel`` runs each call as a Ray task with ``num_cpus`` (no retries: a lost sub-task fails
the operation, and the job's own retry policy decides). While the recipe's task waits on them
Ray lends its CPUs to them, so a job's sub-tasks use the CPUs the job holds. Whatever ends the
operation early (a sub-task's exception, the job's cancel or timeout reaching this thread as
``KeyboardInterrupt``) force-stops the sub-tasks still running: :meth:`stop_children` kills
their workers, so nothing of a cancelled job keeps computing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayTaskError

from computalot.ids import new_id
from recipes.context import RecipeContext, RecipeFailure

log = logging.getLogger("computalot.recipes")

#: Sub-task functions wrapped once per (function, CPUs, custom resources) in this worker.
_REMOTES: dict[tuple[Callable[..., Any], float, str], Any] = {}


def _remote(fn: Callable[..., Any], num_cpus: float, resources: dict[str, float]) -> Any:
    key = (fn, num_cpus, repr(sorted(resources.items())))
    remote = _REMOTES.get(key)
    if remote is None:
        if len(_REMOTES) > 256:
            _REMOTES.clear()
        remote = _REMOTES[key] = ray.remote(fn).options(
            num_cpus=num_cpus,
            resources=resources or None,
            max_retries=0,
            name=f"computalot-recipe:{fn.__name__}",
        )
    return remote


class RayRecipeContext(RecipeContext):
    """One recipe attempt's context. ``inputs``: ``{field: (local path, filename)}``;
    ``report``: sends one progress event (the attempt's live reporter); ``resources``: the
    custom resources each sub-task asks for too (its operation's worker capability, so the
    sub-tasks land on nodes that have it: ``computalot.capabilities``)."""

    def __init__(
        self,
        *,
        out_dir: Path,
        cpus: int,
        deadline: float,
        inputs: dict[str, tuple[Path, str]],
        report: Callable[[dict[str, Any]], None],
        resources: dict[str, float] | None = None,
    ) -> None:
        self.resources = dict(resources or {})
        self.out_dir = out_dir
        self.cpus = max(1, cpus)
        self.deadline = deadline
        self.inputs = inputs
        self.report = report
        self.published: dict[str, str] = {}  # filename -> artifact id
        self.last_progress: dict[str, Any] | None = None
        self.children: set[Any] = set()

    def input_path(self, field: str) -> Path:
        if field not in self.inputs:
            raise RecipeFailure(f"{field}: no input artifact was given")
        return self.inputs[field][0]

    def input_filename(self, field: str) -> str | None:
        found = self.inputs.get(field)
        return found[1] or None if found is not None else None

    def emit_progress(self, fields: dict[str, Any]) -> None:
        self.last_progress = fields
        self.report(fields)

    def publish(self, filename: str) -> str:
        path = self.out_dir / filename
        if "/" in filename or not path.is_file():
            raise ValueError(f"publish: {filename!r} is not a file written in the output directory")
        if filename not in self.published:
            self.published[filename] = new_id("art")
        return self.published[filename]

    def share(self, value: Any) -> Any:
        return ray.put(value)

    def parallel(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        num_cpus: float = 1,
    ) -> list[Any]:
        if not calls:
            return []
        remote = _remote(fn, float(num_cpus), self.resources)
        refs = [remote.remote(*args) for args in calls]
        self.children.update(refs)
        try:
            return list(ray.get(refs))
        except RayTaskError as exc:
            self.stop_children()
            cause = exc.cause
            if isinstance(cause, RecipeFailure):
                raise RecipeFailure(cause.message, cause.code) from None
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except BaseException:
            self.stop_children()
            raise
        finally:
            self.children.difference_update(refs)

    def stop_children(self) -> None:
        """Force-stop every sub-task still running (their workers are killed)."""
        stopped = 0
        for ref in list(self.children):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True, recursive=True)
                stopped += 1
        self.children.clear()
        if stopped:
            log.info("stopped %d recipe sub-tasks", stopped)
