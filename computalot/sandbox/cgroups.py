"""One cgroup per task attempt: a memory cap, a process cap, and a way to kill all it holds.

Two layouts, found once per process:
- **v1** (separate ``memory`` and ``pids`` hierarchies, as on hosts booted with the hybrid
  layout): the task's cgroups live under the worker's own, in ``computalot-tasks/<name>``. The
  runner joins them race-free without an extra exec: the *spawning thread* moves itself in
  (cgroup v1 places single threads), spawns, and moves back; a child is born in the cgroups of
  the thread that forked it, so the sandbox and everything it starts are counted from their
  first instruction.
- **v2** (the unified hierarchy): ``computalot-tasks/<name>`` under the cgroup root (a cgroup
  with processes may not host domain controllers). v2 moves whole processes only, so the
  command is prefixed by a shell that writes its own pid into ``cgroup.procs`` and then execs
  the rest (:meth:`TaskCgroup.join_prefix`).

Without write access to a cgroup hierarchy (not root, a locked-down container) there is no
cgroup: the runner falls back to per-process rlimits and says so (``status``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "computalot-tasks"
V1_CONTROLLERS = ("memory", "pids")


@dataclass(frozen=True)
class Layout:
    version: int  # 1 or 2
    bases: dict[str, Path]  # controller (v1) or "unified" (v2) -> the directory holding tasks


def _own_paths() -> dict[str, str]:
    """Controller name ("" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(","):
                out[name] = path
    return out


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def detect() -> Layout | None:
    """The layout this process can create task cgroups in, or None."""
    try:
        own = _own_paths()
    except OSError:
        return None
    if all((ROOT / c / "tasks").exists() for c in V1_CONTROLLERS):
        bases = {c: ROOT / c / own.get(c, "/").lstrip("/") / PARENT for c in V1_CONTROLLERS}
        if all(_writable_dir(base) for base in bases.values()):
            return Layout(1, bases)
        return None
    if (ROOT / "cgroup.controllers").exists():
        wanted = {"memory", "pids"}
        if not wanted <= set((ROOT / "cgroup.controllers").read_text().split()):
            return None
        base = ROOT / PARENT
        try:
            _write(ROOT / "cgroup.subtree_control", "+memory +pids")
            if not _writable_dir(base):
                return None
            _write(base / "cgroup.subtree_control", "+memory +pids")
        except OSError:
            return None
        return Layout(2, {"unified": base})
    return None


_LAYOUT: list[Layout | None] = []
_LAYOUT_LOCK = threading.Lock()


def layout() -> Layout | None:
    """:func:`detect`, once per process."""
    with _LAYOUT_LOCK:
        if not _LAYOUT:
            _LAYOUT.append(detect())
        return _LAYOUT[0]


def _write(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _counter(text: str, name: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value or 0)
    return 0


class TaskCgroup:
    """The cgroup(s) of one attempt. ``close`` kills whatever is left in them and removes them."""

    def __init__(self, layout: Layout, name: str, *, memory_mb: int, processes: int) -> None:
        self.layout = layout
        self.dirs = {key: base / name for key, base in layout.bases.items()}
        for path in self.dirs.values():
            path.mkdir()
        try:
            self._limit(memory_mb, processes)
        except BaseException:
            self.close()
            raise

    def _limit(self, memory_mb: int, processes: int) -> None:
        memory = str(memory_mb << 20) if memory_mb else None
        if self.layout.version == 1:
            if memory is not None:
                _write(self.dirs["memory"] / "memory.limit_in_bytes", memory)
                with contextlib.suppress(OSError):  # no swap accounting: nothing to cap there
                    _write(self.dirs["memory"] / "memory.memsw.limit_in_bytes", memory)
            if processes:
                _write(self.dirs["pids"] / "pids.max", str(processes))
            return
        unified = self.dirs["unified"]
        if memory is not None:
            _write(unified / "memory.max", memory)
            with contextlib.suppress(OSError):
                _write(unified / "memory.swap.max", "0")
        _write(unified / "memory.oom.group", "1")  # one process over the cap ends them all
        if processes:
            _write(unified / "pids.max", str(processes))

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """v1: the calling thread sits in the task's cgroups while it spawns the sandbox."""
        if self.layout.version != 1:
            yield
            return
        tid = str(threading.get_native_id())
        own = _thread_paths()
        moved = []
        try:
            for controller, path in self.dirs.items():
                _write(path / "tasks", tid)
                moved.append(controller)
            yield
        finally:
            for controller in moved:
                back = ROOT / controller / own.get(controller, "/").lstrip("/") / "tasks"
                with contextlib.suppress(OSError):
                    _write(back, tid)

    def join_prefix(self) -> list[str]:
        """v2: argv that moves itself into the task's cgroup, then execs the rest."""
        if self.layout.version != 2:
            return []
        procs = str(self.dirs["unified"] / "cgroup.procs")
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs]

    def oom_kills(self) -> int:
        if self.layout.version == 1:
            return _counter(_read(self.dirs["memory"] / "memory.oom_control"), "oom_kill")
        return _counter(_read(self.dirs["unified"] / "memory.events"), "oom_kill")

    def hit_process_limit(self) -> bool:
        path = self.dirs["pids" if self.layout.version == 1 else "unified"] / "pids.events"
        return _counter(_read(path), "max") > 0

    def pids(self) -> list[int]:
        out: set[int] = set()
        for path in self.dirs.values():
            for line in _read(path / "cgroup.procs").split():
                out.add(int(line))
        return sorted(out)

    def close(self, timeout_s: float = 2.0) -> None:
        """SIGKILL every process left in the cgroup(s), then remove them."""
        deadline = time.monotonic() + timeout_s
        for path in self.dirs.values():
            while path.exists():
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    path.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # still busy (a process stuck in the kernel): left for the sweep
                    time.sleep(0.005)


def _thread_paths() -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/self/task/{threading.get_native_id()}/cgroup") as fh:
        for line in fh:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(","):
                out[name] = path
    return out


_SWEPT = [0.0]
SWEEP_INTERVAL_S = 60.0


def sweep(layout: Layout, older_than_s: float = 60.0) -> None:
    """Remove task cgroups left by killed workers, at most once a minute per process.

    Only empty cgroups can be removed (the kernel refuses the rest), and a task's cgroup holds
    its processes from the moment it is made: so any cgroup older than a minute that can be
    removed is left over.
    """
    now = time.time()
    if now - _SWEPT[0] < SWEEP_INTERVAL_S:
        return
    _SWEPT[0] = now
    for base in layout.bases.values():
        with contextlib.suppress(OSError), os.scandir(base) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir() and now - entry.stat().st_mtime > older_than_s:
                        os.rmdir(entry.path)
