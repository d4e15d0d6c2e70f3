"""Blocking work too heavy for a server's process, run in a short-lived child instead.

Inflating, hashing and zipping a project of hundreds of megabytes, or handing its package to
Ray's GCS, would hold the GIL of the process doing it for tens to hundreds of milliseconds at a
time (bench/README.md) even on a worker thread, and each such slice delays every request, stream and scheduling decision of that process.
A child (``python -m computalot.offload``) at a lower CPU priority does it instead; it answers
one JSON object on stdout, and a :class:`~computalot.errors.ComputalotError` it raises is raised
again in the caller.

Commands are named functions taking JSON arguments and returning a JSON object
(:data:`COMMANDS`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from typing import Any

from computalot import errors

#: Work at least this large (bytes read or written) goes to a child; smaller work stays on a
#: worker thread, where it holds the GIL for a few milliseconds at most.
CHILD_BYTES = 16 * 1024 * 1024
#: The child's niceness: the API, the engine and running tasks come first.
CHILD_NICENESS = 10
#: command -> "module:function"; the function takes the command's arguments.
COMMANDS = {
    "unpack": "computalot.projects.unpack:unpack_command",
    "package": "computalot.engine.packages:package_command",
}


async def run_in_child(command: str, *args: Any) -> dict[str, Any]:
    """Run ``command`` in ``python -m computalot.offload``; its answer, or the
    :class:`~computalot.errors.ComputalotError` it raised, raised here."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "computalot.offload",
        json.dumps([command, *args]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:
        raise RuntimeError(
            f"{command} child exited {child.returncode}: {err.decode(errors='replace')[-500:]}"
        ) from None
    if "error" in answer:
        raise _rebuild(answer["error"])
    return answer


def _rebuild(error: dict[str, Any]) -> errors.ComputalotError:
    cls = getattr(errors, str(error.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ComputalotError)):
        cls = errors.ComputalotError
    return cls(
        str(error.get("message")),
        details=error.get("details") or [],
        recommended_action=error.get("recommended_action"),
    )


def _main(argv: list[str]) -> int:
    os.nice(CHILD_NICENESS)
    command, *args = json.loads(argv[0])
    module, _, name = COMMANDS[command].partition(":")
    try:
        answer = getattr(importlib.import_module(module), name)(*args)
    except errors.ComputalotError as exc:
        answer = {"error": {"class": type(exc).__name__, **exc.to_dict()["error"]}}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
