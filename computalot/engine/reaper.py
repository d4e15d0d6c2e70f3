"""Kill a worker's runner process groups when the worker itself dies.

A runner runs in its own process group, which ``run_command`` kills at timeout, cancel and
exit. If the worker dies first (a forced cancel, the OOM killer, ``kill -9``), nothing in it is
left to do that. So each worker process starts one small *reaper* next to it: a Python process
in its own session that reads ``+PGID`` / ``-PGID`` lines on a pipe whose only writer is the
worker. The pipe reaches end-of-file when the worker is gone, however it died; the reaper then
SIGKILLs every group still registered — the runner and everything it started in its group — and
exits.

This replaces a parent-death signal on each runner, which needs code between fork and exec: a
``preexec_fn`` makes CPython fork instead of vfork, and a ``setpriv --pdeathsig`` exec adds a
process per spawn; both cost milliseconds per attempt (bench/README.md, "Engine design
figures"). Registering a group is one short write.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import IO

log = logging.getLogger(__name__)

#: Runs as ``python -I -S -c``: the standard library only, no site-packages to import.
REAPER_SOURCE = r"""
import os, signal, sys
groups = set()
for line in sys.stdin.buffer:
    line = line.strip()
    if line[:1] == b"+" and int(line[1:]) > 1:  # never init's group (or "every process": -1)
        groups.add(int(line[1:]))
    elif line[:1] == b"-":
        groups.discard(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Reaper:
    """This process's reaper; started on first use and again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0  # the process the reaper watches (a fork gets its own)

    def _pipe(self) -> IO[bytes]:
        proc = self._proc
        if proc is None or self._pid != os.getpid() or proc.poll() is not None:
            proc = self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", REAPER_SOURCE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # not in the worker's group: it must outlive it
            )
            self._pid = os.getpid()
        assert proc.stdin is not None
        return proc.stdin

    def _send(self, line: bytes) -> None:
        with self._lock:
            for _attempt in range(2):
                try:
                    pipe = self._pipe()
                    pipe.write(line)
                    pipe.flush()
                    return
                except (BrokenPipeError, ValueError):
                    self._proc = None  # it died: start a new one and send again
                except OSError:
                    log.warning("runner reaper unavailable; a worker death may leave a runner")
                    return

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if this process dies before :meth:`release`."""
        if pgid <= 1:  # a runner's own group is its pid, never 0 or init's
            raise ValueError(f"not a runner's process group: {pgid}")
        self._send(b"+%d\n" % pgid)

    def release(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)


REAPER = Reaper()
