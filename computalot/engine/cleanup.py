"""Removing finished attempts' directories off the task's critical path.

Deleting a directory tree on ext4 (unlink and rmdir of the working copy, payload, result and
artifact directory) blocks in the kernel now and then, and a worker blocked there is a CPU left
idle between one runner and the next. Measured on 600-task fan-outs of a 30 ms runner on two
cores: with the removal inline the machine sat idle 1.7-2.5 s against plain Ray's 0.7-1.1 s;
with it on this thread, 0.8-1.3 s — the same as plain Ray.

A worker hands each attempt's directory to one background thread and goes on. When the thread
falls behind (more than MAX_PENDING directories queued: a slow disk) the worker removes the next
one itself, so garbage never piles up without bound; at interpreter exit what is queued is
removed before the process ends.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import threading
from pathlib import Path

MAX_PENDING = 64
#: At exit: give up on what is still queued after this long (a worker being stopped).
EXIT_DRAIN_S = 5.0


class DirCleaner:
    """This process's background remover; started on first use (and again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[Path | threading.Event] = queue.Queue()
        self._pid = 0  # the process whose thread serves the queue

    def remove(self, path: Path) -> None:
        """Remove ``path`` (a tree) soon; at once when the thread has fallen behind."""
        if self._queue.qsize() >= MAX_PENDING or not self._ensure_thread():
            shutil.rmtree(path, ignore_errors=True)
            return
        self._queue.put(path)

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
                else:
                    shutil.rmtree(item, ignore_errors=True)
            except Exception:  # never let one path stop the thread
                continue


CLEANER = DirCleaner()
