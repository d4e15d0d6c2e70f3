"""Can this node confine tasks? Said by ``GET /ready`` and ``computalot up`` (docs/sandbox.md).

:func:`sandbox_check` answers ``(check, warnings)``: ``check`` is ``"ok"`` or why tasks cannot
run here (``/ready`` then answers 503), ``warnings`` are what works but less well than it
should. The answer comes from really starting a sandbox (``/bin/true`` in it), cached for a
minute, so a bubblewrap that is installed but cannot create namespaces here is caught too.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from typing import Any

from computalot.sandbox import bwrap, cgroups, firewall

UNCONFINED = (
    "COMPUTALOT_SANDBOX=none: tasks run unconfined, as the worker's own user: they can read the "
    "platform's files and keys and other tenants' tasks; use only with code you trust"
)
MISSING = (
    "bubblewrap (bwrap) is not installed: no task can run; install it (apt-get install "
    "bubblewrap) or set COMPUTALOT_SANDBOX=none to run tasks unconfined"
)
CACHE_S = 60.0

_LOCK = threading.Lock()
_CACHE: dict[str, tuple[float, tuple[str, list[str]]]] = {}


def _probe() -> str | None:
    """Start ``/bin/true`` in a sandbox like a task's; None when it ran, else why not."""
    path = bwrap.bwrap_path()
    if path is None:
        return MISSING
    root = os.geteuid() == 0
    with tempfile.TemporaryDirectory(prefix="computalot-probe-") as task_dir:
        args = bwrap.bwrap_args(
            task_dir=task_dir, inner_cwd=bwrap.INNER_TASK, network="host", privileged=root
        )
        try:
            done = subprocess.run([path, *args, "--", "/bin/true"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap could not start a sandbox: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[:300]
        return f"bubblewrap could not start a sandbox here: {why or done.returncode}"
    return None


def _check(settings: Any) -> tuple[str, list[str]]:
    if settings.sandbox == "none":
        return "ok", [UNCONFINED]
    why = _probe()
    if why is not None:
        return f"unavailable: {why}", []
    warnings = []
    if os.geteuid() == 0 and bwrap.setpriv_path() is None:
        return "unavailable: setpriv (util-linux) is missing: tasks would run as root", []
    if os.geteuid() != 0:
        warnings.append(
            "workers are not root: tasks run as the workers' own user (in a user namespace), "
            "and host-network tasks are refused (no firewall without root): use "
            '"runtime": {"network": "none"}'
        )
    elif firewall.nft_path() is None:
        warnings.append(
            "nft (nftables) is not installed: host-network tasks are refused; install nftables"
        )
    if cgroups.layout() is None:
        warnings.append(
            "no writable cgroup hierarchy: memory is capped per process (RLIMIT_AS) and the "
            "number of processes is not capped"
        )
    return "ok", warnings


def sandbox_check(settings: Any) -> tuple[str, list[str]]:
    """``(check, warnings)`` for this node; see the module doc."""
    key = str(settings.sandbox)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
    answer = _check(settings)
    with _LOCK:
        _CACHE[key] = (time.monotonic(), answer)
    return answer
