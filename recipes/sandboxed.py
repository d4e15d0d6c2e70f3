"""A sealed recipe's child process in the platform's task sandbox (docs/sandbox.md).

prop_amm's strategy runners and echidna's fuzzer are separate processes started with the
operator's sandbox settings, as a runner task is: bubblewrap confinement without network, its
cgroup and rlimits. :func:`sealed_sandbox` reads the worker's settings and, when the operator
confines tasks, opens the sandbox over the attempt's work directory; it is closed on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from computalot.sandbox.policy import policy_for
from computalot.sandbox.task import SandboxUnavailable, TaskSandbox
from computalot.settings import ConfigError, Settings, get_settings

from .context import RecipeFailure


@contextmanager
def sealed_sandbox(work: Path) -> Iterator[tuple[Settings, TaskSandbox | None]]:
    """The worker's settings and the sandbox over ``work`` (``None`` when the operator runs
    tasks unconfined); :class:`RecipeFailure` when either cannot be had."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        raise RecipeFailure(
            f"the worker's settings cannot be read: {exc}", "recipe_error"
        ) from None
    sandbox: TaskSandbox | None = None
    if settings.sandbox == "bwrap":
        try:
            sandbox = TaskSandbox(policy_for(settings, {}, "none"), work, name=work.name)
        except SandboxUnavailable as exc:
            raise RecipeFailure(str(exc), code="sandbox_unavailable") from None
    try:
        yield settings, sandbox
    finally:
        if sandbox is not None:
            sandbox.close()
