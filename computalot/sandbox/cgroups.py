"""Memory and process caps for task attempts, and a way to kill all an attempt holds.

Two layouts, found once per process:
- **v1** (separate ``memory`` and ``pids`` hierarchies, as on hosts booted with the hybrid
  layout): one cgroup pair per worker process (:class:`WorkerCgroup`), under the worker's own
  cgroups, reused by its attempts one at a time; a thread of the worker that lives in it starts
  every sandbox, so nothing is migrated per attempt.
- **v2** (the unified hierarchy): one cgroup per attempt (:class:`TaskCgroup`) in
  ``computalot-tasks/`` under the cgroup root (a cgroup with processes may not host domain
  controllers). v2 moves whole processes only, so the command is prefixed by a shell that
  writes its own pid into ``cgroup.procs`` and then execs the rest.

Without write access to a cgroup hierarchy (not root, a locked-down container) there is no
cgroup: the runner falls back to per-process rlimits and ``GET /ready`` says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

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


def kill_until_gone(find: Callable[[], list[int]], timeout_s: float) -> bool:
    """SIGKILL the processes ``find`` lists until it lists none (a process may fork while it is
    killed); False if some were still there after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = find()
        if not left:
            return True
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)


class _Group:
    """Cgroup directories (one per v1 controller, or one v2 directory) and what a task did in
    them since ``baseline`` was taken."""

    def __init__(self, layout: Layout, name: str) -> None:
        self.layout = layout
        self.dirs = {key: base / name for key, base in layout.bases.items()}
        self.oom_base = 0
        self.max_base = 0

    def limit(self, memory_mb: int, processes: int) -> None:
        memory = str(memory_mb << 20) if memory_mb else "-1"
        if self.layout.version == 1:
            memsw = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
            swap_accounting = memsw.exists()
            if swap_accounting:  # memsw may never be below the limit: lift it first
                _write(memsw, "-1")
            _write(self.dirs["memory"] / "memory.limit_in_bytes", memory)
            if swap_accounting:
                _write(memsw, memory)
            _write(self.dirs["pids"] / "pids.max", str(processes) if processes else "max")
        else:
            unified = self.dirs["unified"]
            _write(unified / "memory.max", memory if memory_mb else "max")
            with contextlib.suppress(OSError):
                _write(unified / "memory.swap.max", "0")
            _write(unified / "memory.oom.group", "1")  # one process over the cap ends them all
            _write(unified / "pids.max", str(processes) if processes else "max")
        self.oom_base, self.max_base = self._oom_count(), self._max_count()

    def _oom_count(self) -> int:
        if self.layout.version == 1:
            return _counter(_read(self.dirs["memory"] / "memory.oom_control"), "oom_kill")
        return _counter(_read(self.dirs["unified"] / "memory.events"), "oom_kill")

    def _max_count(self) -> int:
        path = self.dirs["pids" if self.layout.version == 1 else "unified"] / "pids.events"
        return _counter(_read(path), "max")

    def oom_kills(self) -> int:
        """Processes the kernel killed for the memory limit since the task started."""
        return self._oom_count() - self.oom_base

    def hit_process_limit(self) -> bool:
        return self._max_count() > self.max_base

    def pids(self) -> list[int]:
        """The processes in the cgroup(s) but this one (a worker's spawner thread is there)."""
        out: set[int] = set()
        for path in self.dirs.values():
            for line in _read(path / "cgroup.procs").split():
                out.add(int(line))
        out.discard(os.getpid())
        return sorted(out)

    def kill_all(self, timeout_s: float) -> bool:
        """SIGKILL what is left (nothing of it runs user code again); with ``timeout_s`` wait
        until it is gone too. False if something outlived the wait."""
        return kill_until_gone(self.pids, timeout_s)


class TaskCgroup(_Group):
    """cgroup v2: a cgroup made for one attempt. Its command joins it itself
    (:meth:`join_prefix`); ``close`` kills whatever is left and removes it."""

    def __init__(self, layout: Layout, name: str, *, memory_mb: int, processes: int) -> None:
        super().__init__(layout, name)
        for path in self.dirs.values():
            path.mkdir()
        try:
            self.limit(memory_mb, processes)
        except BaseException:
            self.close()
            raise

    def spawn(self, start: Callable[[], _T]) -> _T:
        return start()

    def join_prefix(self) -> list[str]:
        """argv that moves itself into the task's cgroup, then execs the rest."""
        procs = str(self.dirs["unified"] / "cgroup.procs")
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs]

    def close(self, timeout_s: float = 2.0) -> None:
        self.kill_all(timeout_s)
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                path.rmdir()


class WorkerCgroup(_Group):
    """cgroup v1: one cgroup pair per worker process, reused by its attempts one at a time.

    A thread of the worker — the *spawner*, moved in once — starts every sandbox, and a child
    is born in the cgroups of the thread that forked it: so the sandbox and all it starts are
    counted from their first instruction, and no attempt pays for a cgroup migration (each one
    waits for an RCU grace period: bench/README.md, "Engine design figures").
    The worker itself is not charged (v1 charges memory to a process's thread-group leader) nor
    chosen by the memory cgroup's OOM killer (it only considers thread-group leaders). The
    spawner counts as one process; the counters are read against a baseline per attempt.
    """

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout, f"w{os.getpid()}-{time.time_ns()}")
        self.pid = os.getpid()
        for path in self.dirs.values():
            path.mkdir()
        self.lock = threading.Lock()
        self.spawner = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="computalot-spawner", initializer=self._join
        )

    def _join(self) -> None:
        tid = str(threading.get_native_id())
        for path in self.dirs.values():
            _write(path / "tasks", tid)

    def lease(self, memory_mb: int, processes: int) -> WorkerLease:
        self.lock.acquire()
        try:
            self.limit(memory_mb, processes + 1 if processes else 0)
        except BaseException:
            self.lock.release()
            raise
        return WorkerLease(self)


class WorkerLease:
    """One attempt's use of its worker's cgroup (see :class:`WorkerCgroup`)."""

    def __init__(self, group: WorkerCgroup) -> None:
        self.group = group
        self.open = True

    def spawn(self, start: Callable[[], _T]) -> _T:
        return self.group.spawner.submit(start).result()

    def join_prefix(self) -> list[str]:
        return []

    def oom_kills(self) -> int:
        return self.group.oom_kills()

    def hit_process_limit(self) -> bool:
        return self.group.hit_process_limit()

    def pids(self) -> list[int]:
        return self.group.pids()

    def close(self, timeout_s: float = 2.0) -> None:
        if self.open:
            self.open = False
            try:  # a pid namespace's last processes may still be exiting: no need to wait
                self.group.kill_all(0.0)
            finally:
                self.group.lock.release()


class WarmCgroup(_Group):
    """The cgroup (v1 pair or v2 directory) of one warm sandbox (``sandbox.warm``): its
    bubblewrap and warm interpreter join it once, at start (:meth:`join_prefix`), and every task
    the interpreter forks is born in it, so no attempt pays for a migration. Each attempt sets
    its limits and takes its baseline (:meth:`lease`); ``sandbox.warm`` kills what a task left
    and spares the sandbox's own processes. :meth:`remove` gives it up with the sandbox."""

    #: The sandbox's own processes counted by ``pids.max``: bubblewrap, its init, the zygote.
    OWN_PROCESSES = 3

    def __init__(self, layout: Layout, name: str) -> None:
        super().__init__(layout, name)
        for path in self.dirs.values():
            path.mkdir()

    def join_prefix(self) -> list[str]:
        """argv that moves itself into every directory of the cgroup, then execs the rest."""
        import shlex

        moves = " && ".join(
            f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self.dirs.values()
        )
        return ["/bin/sh", "-c", f'{moves} && exec "$@"', "sh"]

    def spawn(self, start: Callable[[], _T]) -> _T:
        return start()

    def lease(self, memory_mb: int, processes: int) -> WarmCgroup:
        """Set one attempt's limits (its processes on top of the sandbox's own) and take the
        baseline its counters are read against."""
        self.limit(memory_mb, processes + self.OWN_PROCESSES if processes else 0)
        return self

    def close(self, timeout_s: float = 0.0) -> None:
        """An attempt's end: nothing here (``sandbox.warm`` kills what the task left)."""

    def remove(self, timeout_s: float = 2.0) -> None:
        self.kill_all(timeout_s)
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                path.rmdir()


_WORKER: list[WorkerCgroup] = []


def attempt_cgroup(
    layout: Layout, name: str, *, memory_mb: int, processes: int
) -> TaskCgroup | WorkerLease:
    """The cgroup an attempt runs in: its worker's (v1, made at the first attempt) or its own
    (v2)."""
    if layout.version == 2:
        return TaskCgroup(layout, name, memory_mb=memory_mb, processes=processes)
    with _LAYOUT_LOCK:
        if not _WORKER or _WORKER[0].pid != os.getpid():
            _WORKER[:] = [WorkerCgroup(layout)]
        group = _WORKER[0]
    return group.lease(memory_mb, processes)


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
