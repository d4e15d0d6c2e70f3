"""The host's process tree through ``/proc``: who descends from whom, who is still alive.

The chaos suites (docs/chaos.md) find the platform's processes as descendants of the process
that started it, so other Ray clusters on the same host are never touched. A process is named by
``(pid, start time)``: a pid the kernel hands out again is another process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/pid/stat`` after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def parents() -> dict[int, int]:
    """Every live (not zombie) process's parent pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] != "Z":
                found[int(entry)] = int(fields[1])
    return found


def descendants(root: int, table: dict[int, int] | None = None) -> set[int]:
    """The live pids below ``root`` (not ``root`` itself)."""
    table = parents() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def session_tree() -> set[int]:
    """The live pids below this pytest process, less the second pytest process that runs the
    own-platform tests beside it and everything below that (tests/support/beside.py): the
    platforms there are not this session's."""
    from tests.support.beside import beside_pid

    table = parents()
    tree = descendants(os.getpid(), table)
    other = beside_pid()
    if other is not None:
        tree -= descendants(other, table) | {other}
    return tree


def identity(pid: int) -> Proc | None:
    """``(pid, start time)`` of a live process, else None."""
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":
        return None
    return (pid, int(fields[19]))


def alive(proc: Proc) -> bool:
    return identity(proc[0]) == proc


def cmdline(pid: int) -> str:
    """The command line, NULs as spaces ('' when gone)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode("utf-8", "replace")
        )
    except OSError:
        return ""


def parent_of(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def ancestors(pid: int) -> list[int]:
    """``pid``'s parent, its parent, … up to init."""
    chain = []
    current = parent_of(pid)
    while current and current not in chain:
        chain.append(current)
        current = parent_of(current)
    return chain


def _signal(proc: Proc, sig: int) -> bool:
    """Send ``sig`` if the pid is still that process; True when it was sent."""
    try:
        os.kill(proc[0], sig)
    except ProcessLookupError:
        return False
    return True


def stop_proc(proc: Proc) -> bool:
    """SIGSTOP the process if it is still the same one and not stopped yet; True when the
    signal was sent."""
    fields = _stat(proc[0])
    if fields is None or fields[0] in ("T", "Z") or (proc[0], int(fields[19])) != proc:
        return False
    return _signal(proc, signal.SIGSTOP)


def kill_proc(proc: Proc) -> bool:
    """SIGKILL the process if it is still the same one; True when the signal was sent."""
    return alive(proc) and _signal(proc, signal.SIGKILL)
