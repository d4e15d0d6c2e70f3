"""What a recipe operation sees of the platform: :class:`RecipeContext` (docs/recipes.md).

An operation is a plain function ``run(ctx, payload) -> dict`` (the job's result). Through the
context it reads its ``*_ref`` input artifacts as local files, writes files that become the
task's artifacts (:meth:`RecipeContext.publish` answers the ``art_…`` id the result may quote),
reports progress events, watches its deadline, and fans work out with
:meth:`RecipeContext.parallel` (Ray tasks on the cluster; one after another in
:class:`LocalContext`). Nothing here imports Ray: the engine's implementation is
``computalot.engine.recipe_context.RayRecipeContext``.

A problem with the payload or its inputs that only the work can find (a missing column, a
candidates file that is not a list of 45-vectors) is raised as :class:`RecipeFailure`: the task
fails with that code and message, never a traceback.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Seconds between two progress events an operation's ``progress`` calls send (the latest call
#: in a quieter spell is sent when the next one comes, and every ``final`` call at once).
PROGRESS_INTERVAL_S = 0.5


class RecipeFailure(Exception):
    """The operation cannot do what the payload asks: the task fails with ``code`` and this
    message (which names the field or input at fault)."""

    def __init__(self, message: str, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RecipeContext(ABC):
    """One attempt of a recipe task. ``cpus``: the CPUs the job holds (fan out to about that
    many at a time); ``deadline``: ``time.monotonic()`` by which the operation must have
    answered (its ``timeout_s``, less a margin for storing artifacts); ``out_dir``: files the
    operation writes there and :meth:`publish` become artifacts of the task."""

    cpus: int
    deadline: float
    out_dir: Path

    def time_left(self) -> float:
        """Seconds until :attr:`deadline` (negative once past)."""
        return self.deadline - time.monotonic()

    @abstractmethod
    def input_path(self, field: str) -> Path:
        """The local copy of the artifact the payload's ``field`` (e.g. ``"dataset_ref"``)
        names, with its original filename's suffix."""

    @abstractmethod
    def input_filename(self, field: str) -> str | None:
        """The filename the artifact was uploaded under (None when unknown)."""

    @abstractmethod
    def emit_progress(self, fields: dict[str, Any]) -> None:
        """Send one progress event now (``progress`` throttles calls to this)."""

    @abstractmethod
    def publish(self, filename: str) -> str:
        """Mark ``out_dir/filename`` (written already) as an artifact of the task; answer the
        ``art_…`` id it will have once the task is recorded."""

    @abstractmethod
    def parallel(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        num_cpus: float = 1,
    ) -> list[Any]:
        """``[fn(*args) for args in calls]``, each call a separate task (a Ray task with
        ``num_cpus`` on the cluster), answers in the order of ``calls``. ``fn`` must be a
        module-level function (it is imported by name on the worker). An exception in one call
        is raised here after the others are stopped. A cancel or timeout of the job stops them
        all. NumPy arrays reach a call read-only (Ray hands them over from its object store
        without a copy): copy one before writing to it."""

    @abstractmethod
    def share(self, value: Any) -> Any:
        """A handle to pass ``value`` (e.g. a big NumPy array) to many :meth:`parallel` calls
        without copying it for each: pass the handle as a top-level argument and the call
        receives the value."""

    # ---- helpers shared by every implementation -------------------------------------------
    _last_progress_at: float = 0.0
    _pending_progress: dict[str, Any] | None = None

    def progress(self, final: bool = False, **fields: Any) -> None:
        """Report progress (``fraction`` 0-1, ``message``, ``best_score``, …): at most one event
        each :data:`PROGRESS_INTERVAL_S`; ``final=True`` sends at once."""
        now = time.monotonic()
        if not final and now - self._last_progress_at < PROGRESS_INTERVAL_S:
            self._pending_progress = fields
            return
        self._pending_progress = None
        self._last_progress_at = now
        self.emit_progress(fields)

    def flush_progress(self) -> None:
        """Send a progress report held back by the throttle (the engine calls this at the
        end)."""
        if self._pending_progress is not None:
            self.progress(final=True, **self._pending_progress)


class LocalContext(RecipeContext):
    """Runs an operation in this process, ``parallel`` calls one after another: for tests,
    benches and kernels used as a library. ``inputs`` maps a payload field to a local file."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        cpus: int = 1,
        timeout_s: float = 3600.0,
        inputs: dict[str, str | Path] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.cpus = cpus
        self.deadline = time.monotonic() + timeout_s
        self.inputs = {k: Path(v) for k, v in (inputs or {}).items()}
        self.events: list[dict[str, Any]] = []
        self.published: dict[str, str] = {}

    def input_path(self, field: str) -> Path:
        if field not in self.inputs:
            raise RecipeFailure(f"{field}: no input artifact given")
        return self.inputs[field]

    def input_filename(self, field: str) -> str | None:
        path = self.inputs.get(field)
        return path.name if path is not None else None

    def emit_progress(self, fields: dict[str, Any]) -> None:
        self.events.append(dict(fields))

    def publish(self, filename: str) -> str:
        if not (self.out_dir / filename).is_file():
            raise FileNotFoundError(f"{filename} was not written in {self.out_dir}")
        art_id = f"art_local{len(self.published)}"
        self.published[filename] = art_id
        return art_id

    def parallel(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        num_cpus: float = 1,
    ) -> list[Any]:
        return [fn(*args) for args in calls]

    def share(self, value: Any) -> Any:
        return value
