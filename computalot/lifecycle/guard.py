"""What ``computalot up`` does to leave nothing behind (docs/operating.md, "Stopping and
restarting").

1. :meth:`UpGuard.take_over`, before anything starts: a record of a running ``up`` on this data
   dir refuses the start (:class:`AnotherUp`); otherwise every process a killed predecessor
   left (found by the markers below, and the pids of its record still alive with the recorded
   start time) is stopped, one line saying so.
2. :meth:`UpGuard.arm`: starts the watchdog (:mod:`.watchdog`), writes the record
   (``<data_dir>/up.json``: pids with start times, the Ray temp dir, the HAProxy folder, the
   API port).
3. :meth:`UpGuard.close`, after the platform stopped: whatever Ray left (its agents, a worker,
   an HAProxy) is stopped, the watchdog told the stop was clean, the record removed.

The markers are the data dir's own Ray temp dir (:func:`ray_temp_dir`, under the system temp
dir's ``ray/``, which the task sandbox hides and answers redact like Ray's default) and its
HAProxy folder (:func:`computalot.platform.haproxy_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from computalot.lifecycle.procs import Proc, alive, pids_text, start_time, sweep
from computalot.lifecycle.watchdog import CLEAN
from computalot.private_files import make_private_dirs, write_private

RECORD = "up.json"
WATCHDOG_LOG = "watchdog.log"
WATCHDOG_WAIT_S = 10.0


class AnotherUp(Exception):
    """A ``computalot up`` is running on this data dir."""

    def __init__(self, pid: int, data_dir: Path) -> None:
        super().__init__(
            f"another `computalot up` (pid {pid}) is running on data dir {data_dir}; stop it "
            f"first, or choose another data dir with --data-dir or COMPUTALOT_DATA_DIR"
        )
        self.pid = pid


def ray_temp_dir(data_dir: Path) -> Path:
    """The Ray temp dir of ``up`` on ``data_dir``: short (Ray's socket paths allow 107 chars)
    and the same on every start, so a killed run's processes are found by it."""
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / "ray" / f"clp-{key}"


def _proc(pair: Any) -> Proc | None:
    try:
        pid, start = int(pair[0]), int(pair[1])
    except (TypeError, ValueError, IndexError):
        return None
    return Proc(pid, start, "")


class UpGuard:
    def __init__(self, data_dir: Path, haproxy_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.ray_temp_dir = ray_temp_dir(data_dir)
        self.haproxy_dir = haproxy_dir
        self.port = port
        self.markers = [str(self.ray_temp_dir), str(haproxy_dir)]
        self.watchdog: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None

    @property
    def record_path(self) -> Path:
        return self.data_dir / RECORD

    def _read_record(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def take_over(self) -> list[str]:
        """Refuse when another ``up`` runs here; remove what a killed one left. The lines to
        print."""
        record = self._read_record()
        previous = _proc(record.get("up"))
        if (
            previous is not None
            and previous.pid != os.getpid()
            and alive(previous.pid, previous.start)
        ):
            raise AnotherUp(previous.pid, self.data_dir)
        known = [p for p in (_proc(record.get("watchdog")),) if p is not None]
        stopped = sweep(self.markers, known)
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()
        if not stopped:
            return []
        return [
            f"removed {len(stopped)} processes a killed `computalot up` left on this data dir "
            f"(pids {pids_text(stopped)})"
        ]

    def arm(self) -> None:
        """Start the watchdog and write the record (before Ray starts)."""
        make_private_dirs(self.data_dir)
        log_fd = os.open(
            self.data_dir / WATCHDOG_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTALOT_")}
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-m", "computalot.lifecycle.watchdog"],
                stdin=subprocess.PIPE,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
                env=env,
                cwd="/",
            )
        finally:
            os.close(log_fd)
        self._pipe = self.watchdog.stdin
        up = (os.getpid(), start_time(os.getpid()))
        watchdog = (self.watchdog.pid, start_time(self.watchdog.pid))
        plan = {"up_pid": os.getpid(), "markers": self.markers, "pids": []}
        assert self._pipe is not None
        self._pipe.write(json.dumps(plan).encode() + b"\n")
        self._pipe.flush()
        record = {
            "up": up,
            "watchdog": watchdog,
            "ray_temp_dir": str(self.ray_temp_dir),
            "haproxy_dir": str(self.haproxy_dir),
            "port": self.port,
        }
        write_private(self.record_path, json.dumps(record, indent=1).encode())

    def close(self) -> list[str]:
        """After the platform stopped: stop what Ray left, release the watchdog, drop the record.
        The lines to print."""
        exclude = [self.watchdog.pid] if self.watchdog is not None else []
        stopped = sweep(self.markers, exclude=exclude)
        if self._pipe is not None and self.watchdog is not None:
            with contextlib.suppress(OSError):
                self._pipe.write(CLEAN)
                self._pipe.close()
            try:
                self.watchdog.wait(timeout=WATCHDOG_WAIT_S)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()
        if not stopped:
            return []
        return [f"stopped {len(stopped)} processes Ray left behind (pids {pids_text(stopped)})"]
