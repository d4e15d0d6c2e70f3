"""The size knob of the chaos and fuzz suites (docs/chaos.md).

``CHAOS=long`` (what ``make chaos`` sets) runs the long versions; the normal test command runs
the short ones. The variable has no ``COMPUTALOT_`` prefix: the test session's conftest drops
every such variable before the suites are imported.
"""

from __future__ import annotations

import os
import random
import socket

LONG = os.environ.get("CHAOS", "").strip().lower() == "long"


def size(short: int, long: int) -> int:
    """``long`` under ``CHAOS=long``, else ``short``."""
    return long if LONG else short


def report(title: str, figures: dict[str, object]) -> str:
    """One block of figures, printed by each suite (``pytest -s`` shows it; so does -rA)."""
    lines = [f"== {title} ({'long' if LONG else 'short'} run) =="]
    lines += [f"  {name}: {value}" for name, value in figures.items()]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def quiet_port() -> int:
    """A free port outside the kernel's ephemeral range: Ray's workers and Serve's replicas of
    every platform on the host pick theirs there (Serve with ``SO_REUSEPORT``), so a port from
    that range can be taken, or answered by another server, before a platform binds it."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-29999")
