"""Removing finished attempts' directories off the task's critical path.

Deleting a directory tree on ext4 (unlink and rmdir of the working copy, payload, result and
artifact directory) blocks in the kernel now and then, and a worker blocked there is a CPU left
idle between one runner and the next; on a thread, a fan-out leaves CPUs idle no longer than
plain Ray does (bench/README.md, "Engine design figures").

A worker hands each attempt's directory to one background thread and goes on. When the thread
falls behind (more than MAX_PENDING directories queued: a slow disk) the worker removes the next
one itself, so garbage never piles up without bound; at interpreter exit what is queued is
removed before the process ends.

A worker that is killed (a forced cancel, the OOM killer) leaves its current attempt's
directory, and whatever was still queued. So each directory's name carries its worker's process
id and PID namespace (:func:`owner_tag`), and a worker's thread sweeps the attempt root of
directories whose worker is gone: at its first attempt, then at most every SWEEP_INTERVAL_S.
Directories of another PID namespace (a container sharing ``/tmp``) are never touched: their
process ids mean nothing here.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("computalot.cleanup")

MAX_PENDING = 64
SWEEP_INTERVAL_S = 60.0
#: At exit: give up on what is still queued after this long (a worker being stopped).
EXIT_DRAIN_S = 5.0


#: ``<task>-<attempt>-w<pid namespace inode>.<pid>-<mkdtemp suffix>``
OWNER = re.compile(r"-w(\d+)\.(\d+)-[a-z0-9_]+$")


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


_TAG: tuple[int, str] = (0, "")  # (process, its tag): worked out once per process


def owner_tag() -> str:
    """This process's part of an attempt directory's name (empty where the namespace is
    unknown: such directories are never swept)."""
    global _TAG
    pid, tag = _TAG
    if pid != os.getpid():
        namespace = _pid_namespace()
        tag = "" if namespace is None else f"w{namespace}.{os.getpid()}-"
        _TAG = (os.getpid(), tag)
    return tag


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def orphans(root: Path) -> list[Path]:
    """Attempt directories under ``root`` whose worker process (in this PID namespace) is gone."""
    namespace = _pid_namespace()
    if namespace is None:
        return []
    found = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        match = OWNER.search(entry.name)
        if (
            match
            and int(match[1]) == namespace
            and entry.is_dir(follow_symlinks=False)
            and not _alive(int(match[2]))
        ):
            found.append(Path(entry.path))
    return found


@dataclass(frozen=True)
class _Sweep:
    root: Path


class DirCleaner:
    """This process's background remover; started on first use (and again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[Path | threading.Event | _Sweep] = queue.Queue()
        self._pid = 0  # the process whose thread serves the queue
        self._swept: tuple[int, float] = (0, 0.0)  # (process, monotonic time) of the last sweep

    def remove(self, path: Path) -> None:
        """Remove ``path`` (a tree) soon; at once when the thread has fallen behind."""
        if self._queue.qsize() >= MAX_PENDING or not self._ensure_thread():
            shutil.rmtree(path, ignore_errors=True)
            return
        self._queue.put(path)

    def sweep(self, root: Path) -> None:
        """Have the thread remove ``root``'s orphans: on a process's first call, then at most
        every SWEEP_INTERVAL_S."""
        pid, last = self._swept
        now = time.monotonic()
        if (pid != os.getpid() or now - last >= SWEEP_INTERVAL_S) and self._ensure_thread():
            self._swept = (os.getpid(), now)
            self._queue.put(_Sweep(root))

    def drain(self, timeout_s: float = EXIT_DRAIN_S) -> None:
        """Wait until everything queued so far is removed (at most ``timeout_s``)."""
        if self._pid != os.getpid():
            return
        done = threading.Event()
        self._queue.put(done)  # set by the thread once everything queued before it is gone
        done.wait(timeout_s)

    def _ensure_thread(self) -> bool:
        if self._pid == os.getpid():
            return True
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.Queue()  # a forked child's copy belongs to no thread
                try:
                    threading.Thread(
                        target=self._serve, name="computalot-cleanup", daemon=True
                    ).start()
                except RuntimeError:  # no more threads: remove inline
                    return False
                self._pid = os.getpid()
                atexit.register(self.drain)
        return True

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if isinstance(item, threading.Event):
                    item.set()
                elif isinstance(item, _Sweep):
                    for path in orphans(item.root):
                        shutil.rmtree(path, ignore_errors=True)
                else:
                    shutil.rmtree(item, ignore_errors=True)
            except Exception:  # never let one path stop the thread
                log.exception("could not remove attempt directory %s", item)


CLEANER = DirCleaner()
