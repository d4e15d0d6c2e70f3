"""Which runner commands a warm interpreter can run (issue #18 §1, docs/llms-full.md "Warm
Python runners").

Only ``python`` / ``python3`` / ``python3.N`` (a name on ``PATH`` or a path) followed by a
script (``script.py args…``) or ``-m module args…``: exactly what ``runpy`` can reproduce in a
forked child. Any interpreter flag (``-u``, ``-X``, ``-c``, ``-O``…), a shell wrapper or
another program runs as a fresh process, as before.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

INTERPRETER_NAME = re.compile(r"^python(3(\.\d+)?)?$")
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
NOT_WARM = (
    "warm Python runners are off for this job: its runner_command is not "
    "'python3 script.py …' or 'python3 -m module …' (no interpreter flags), so every task "
    "starts a fresh interpreter"
)


@dataclass(frozen=True)
class WarmCommand:
    """A command a zygote can run: ``interpreter`` as found on ``PATH`` (the key of its
    zygote), and either ``script`` or ``module``; ``argv`` is what ``sys.argv`` starts as."""

    interpreter: str
    interpreter_arg: str  # argv[0] as written (error messages name it)
    script: str | None
    module: str | None
    argv: tuple[str, ...]


def why_not(argv: list[str]) -> str | None:
    """None when ``argv`` has the shape a warm interpreter runs, else the job's warning."""
    if len(argv) < 2 or not INTERPRETER_NAME.match(os.path.basename(argv[0])):
        return NOT_WARM
    if argv[1] == "-m":
        return None if len(argv) >= 3 and MODULE_NAME.match(argv[2]) else NOT_WARM
    return NOT_WARM if argv[1].startswith("-") else None


def warm_command(argv: list[str], path: str) -> WarmCommand | None:
    """``argv`` as a :class:`WarmCommand`, its interpreter looked up on ``path`` (the task's
    ``PATH``); None when it cannot run warm."""
    if why_not(argv) is not None:
        return None
    first = argv[0]
    if "/" in first and not first.startswith("/"):
        return None  # relative to the task's directory: each attempt has its own
    found = first if "/" in first else shutil.which(first, path=path)
    if found is None or not os.access(found, os.X_OK):
        return None
    if argv[1] == "-m":
        return WarmCommand(found, first, None, argv[2], ("-m", *argv[3:]))
    return WarmCommand(found, first, argv[1], None, tuple(argv[1:]))


WARM_CACHE_MOUNTS = (
    "warm Python runners are not used for sandboxed tasks of a project with cache_mounts (each "
    "attempt binds them into a fresh sandbox): every task starts a fresh interpreter"
)


def job_warning(
    enabled: bool, sandbox: str, manifest: dict[str, Any] | None, argv: list[str]
) -> str | None:
    """The warning a project job gets when the platform's ``warm_python`` is on but its Python
    tasks will start fresh interpreters all the same (interpreter flags, cache mounts); None
    when they start warm, when the command is another program, or when the revision opted out
    (``runtime.warm_python: false``: what it asked for, no warning)."""
    runtime = (manifest or {}).get("runtime") or {}
    if not enabled or runtime.get("warm_python") is False:
        return None
    cold = why_not(argv)
    if cold is None and sandbox == "bwrap" and (manifest or {}).get("cache_mounts"):
        return WARM_CACHE_MOUNTS
    if cold is not None and not (argv and INTERPRETER_NAME.match(os.path.basename(argv[0]))):
        return None  # another program: there is no interpreter to keep warm, nothing to say
    return cold
