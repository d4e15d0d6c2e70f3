"""The ``computalot`` process entry: ``--debug`` and the last line of defence for errors
(docs/python-sdk.md, "Exit codes").

Commands turn API errors into one line and their exit code themselves; whatever escapes them
(an API error raised outside a client block, a bug) is caught here: one line on stderr and its
exit code, the traceback only with ``--debug`` (anywhere before a ``--``) or
``COMPUTALOT_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from computalot.cli.exits import Exit, exit_code
from computalot.sdk.errors import ApiError

DEBUG_FLAG = "--debug"
_debug = False


def debug_enabled() -> bool:
    """Whether this run shows tracebacks (``--debug`` or ``COMPUTALOT_DEBUG=1``)."""
    return _debug or _debug_env()


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (only before a ``--``), and whether it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:end], argv[end:]
    found = DEBUG_FLAG in head
    return [a for a in head if a != DEBUG_FLAG] + tail, found


def _debug_env() -> bool:
    return os.environ.get("COMPUTALOT_DEBUG", "").strip().lower() in ("1", "true", "yes")


def _line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(app: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Run the typer ``app`` on ``argv`` (default ``sys.argv[1:]``) and exit with its code."""
    global _debug
    args, debug = split_debug(list(sys.argv[1:] if argv is None else argv))
    debug = _debug = debug or _debug_env()
    try:
        app(args=args, prog_name="computalot")
    except SystemExit:
        raise
    except ApiError as exc:
        if debug:
            traceback.print_exc()
        _line(f"error: {exc.code}: {exc.message}")
        _line(f"hint: {exc.recommended_action}")
        sys.exit(int(exit_code(exc)))
    except Exception as exc:
        if debug:
            traceback.print_exc()
            sys.exit(int(Exit.INTERNAL))
        _line(f"error: internal: {type(exc).__name__}: {exc}")
        _line("hint: run the command again with --debug for the traceback, and report it")
        sys.exit(int(Exit.INTERNAL))
    finally:
        _debug = False  # for a caller that runs several commands in one process (tests)
