"""The watchdog ``computalot up`` starts beside itself (docs/operating.md, "Stopping and
restarting").

SIGKILL cannot be caught, and Ray's agents outlive a killed driver (re-parented to init, their
ports open, for minutes). So ``up`` starts this process in a session of its own (a Ctrl-C at the
terminal does not reach it), holding the read end of a pipe whose write end only ``up`` has.
``up`` writes one JSON line first (what to look for: :func:`computalot.lifecycle.procs.sweep`'s
markers and known pids), and :data:`CLEAN` when it stopped cleanly. When the pipe closes without
:data:`CLEAN` (``up`` died), the watchdog stops everything of that platform, then exits. It holds
no port, no file of the data dir but its log, and nothing of Ray's.

Run as ``python -m computalot.lifecycle.watchdog``; it writes one line per sweep to stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any, BinaryIO

from computalot.lifecycle.procs import Proc, pids_text, sweep

CLEAN = b"stopped cleanly\n"


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} watchdog: {message}", file=sys.stderr, flush=True)


def watch(pipe: BinaryIO) -> list[Proc] | None:
    """Read the plan, wait for the pipe to close; sweep unless ``up`` said it stopped cleanly.
    Returns what was stopped (None after a clean stop)."""
    first = pipe.readline()
    try:
        plan: dict[str, Any] = json.loads(first) if first.strip() else {}
    except ValueError:
        plan = {}
    rest = b""
    while chunk := pipe.read(4096):
        rest += chunk
    if CLEAN in rest:
        return None
    markers = [str(m) for m in plan.get("markers", [])]
    known = [Proc(int(p), int(s), "") for p, s in plan.get("pids", [])]
    if not markers and not known:
        return []
    stopped = sweep(markers, known)
    _log(
        f"computalot up (pid {plan.get('up_pid', '?')}) ended without stopping; "
        f"stopped {len(stopped)} processes it left ({pids_text(stopped) or 'none'})"
    )
    return stopped


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    watch(sys.stdin.buffer)


if __name__ == "__main__":
    main()
