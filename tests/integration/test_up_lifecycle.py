"""``computalot up`` leaves nothing behind, however it ends (docs/operating.md, "Stopping and
restarting"; issue: a Serve HAProxy held port 8000 after SIGTERM through ``make``, and Ray's
DashboardAgent/RuntimeEnvAgent lived on for minutes after a kill -9, listening on 0.0.0.0).

Real ``up`` processes (local Ray with its dashboard, Serve's HAProxy ingress, the engine), each
on its own data dir and free port, in two rounds of two concurrent starts (a start costs a
minute or more on a busy 2-core host):

1. ``up`` SIGKILLed alone: its watchdog removes everything. ``up`` SIGKILLed with its watchdog
   (nothing of ours left to clean): processes stay behind...
2. ...and the next ``up`` on that data dir, started through ``make`` (``run:`` as in the
   Makefile), removes them and says so; then SIGTERM to ``make`` alone (as ``timeout`` or a
   service manager sends it). Beside it, an ``up`` stopped by Ctrl-C at its terminal (SIGINT to
   its whole process group, Ray's processes included), and one SIGTERMed while it starts.

After each: every process that descended from that ``up`` (snapshot taken once it served) is
gone, and so is anything holding its Ray temp dir or HAProxy folder; the API port is free.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from computalot.lifecycle import procs
from computalot.lifecycle.guard import ray_temp_dir
from computalot.ports import port_in_use
from tests.integration.test_runner_isolation import _quiet_port
from tests.support import proctree

COMPUTALOT = Path(sys.executable).with_name("computalot")
READY_S = 420.0
GONE_S = 90.0

#: Five `up`s of its own (tests/support/beside.py); READY_S is longer than the default timeout.
pytestmark = [pytest.mark.own_platform, pytest.mark.timeout(900)]


@dataclass
class Up:
    name: str
    data_dir: Path
    port: int
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    snapshot: list[proctree.Proc] = field(default_factory=list)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def errors(self) -> str:
        return self.err.read_text(errors="replace")[-4000:]

    def record(self) -> dict[str, list[int]]:
        return json.loads((self.data_dir / "up.json").read_text())

    def markers(self) -> list[str]:
        from computalot.platform import haproxy_dir
        from computalot.settings import load_settings

        settings = load_settings(data_dir=self.data_dir, port=self.port)
        return [str(ray_temp_dir(self.data_dir)), str(haproxy_dir(settings))]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPUTALOT_", "RAY_"))}
    env["COMPUTALOT_SANDBOX"] = "none"  # the lifecycle does not depend on the sandbox
    return env


def _start(tmp: Path, name: str, data_dir: Path, *, via_make: bool = False) -> Up:
    port = _quiet_port()
    up_args = ["up", "--data-dir", str(data_dir), "--port", str(port), "--num-cpus", "1"]
    if via_make:
        makefile = tmp / f"{name}.mk"
        makefile.write_text(f"VENV ?= .venv\nrun:\n\t$(VENV)/bin/computalot {' '.join(up_args)}\n")
        command = ["make", "-s", "-f", str(makefile), "run", f"VENV={COMPUTALOT.parent.parent}"]
    else:
        command = [str(COMPUTALOT), *up_args]
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            command, env=_env(), stdout=stdout, stderr=stderr, start_new_session=True
        )
    return Up(name, data_dir, port, popen, out, err)


def _identities(root: int) -> list[proctree.Proc]:
    """``root`` and every process below it, as (pid, start time)."""
    pids = [root, *proctree.descendants(root)]
    return [proc for pid in pids if (proc := proctree.identity(pid)) is not None]


def _wait_serving(*ups: Up) -> None:
    deadline = time.monotonic() + READY_S
    for up in ups:
        while "API: http" not in up.text():
            assert up.popen.poll() is None, f"{up.name} ended: {up.text()}\n{up.errors()}"
            assert time.monotonic() < deadline, f"{up.name} not serving: {up.errors()}"
            time.sleep(0.5)
        up.snapshot = _identities(up.popen.pid)
        commands = " ".join(proctree.cmdline(pid) for pid, _ in up.snapshot)
        assert "raylet" in commands and "haproxy" in commands, commands


def _assert_all_gone(up: Up, timeout_s: float = GONE_S, since: float | None = None) -> None:
    """Everything of ``up`` gone within ``timeout_s``; prints how long after ``since`` (the
    signal) that was."""
    deadline = time.monotonic() + timeout_s
    left = up.snapshot
    held: list[procs.Proc] = []
    while time.monotonic() < deadline:
        left = [p for p in up.snapshot if proctree.alive(p)]
        held = procs.find(up.markers())
        if not left and not held:
            break
        time.sleep(0.5)
    described = [f"{pid} {proctree.cmdline(pid)[:100]}" for pid, _ in left]
    assert not left, f"{up.name}: still alive after {timeout_s:.0f} s: {described}"
    described = [f"{p.pid} {p.command[:100]}" for p in held]
    assert not held, f"{up.name}: still holding its folders: {described}"
    assert not port_in_use("127.0.0.1", up.port), f"{up.name}: port {up.port} still taken"
    if since is not None:
        print(
            f"{up.name}: {len(up.snapshot)} processes gone {time.monotonic() - since:.1f} s after"
        )


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:  # whatever a failed assertion left: ours only, by snapshot and folders
        for proc in up.snapshot:
            proctree.kill_proc(proc)
        procs.sweep(up.markers(), grace_s=1)


def test_up_leaves_nothing_behind_however_it_ends(tmp_path: Path, ups: list[Up]) -> None:
    # Round 1: kill -9 of `up` alone (its watchdog cleans up), and of `up` with its watchdog.
    alone = _start(tmp_path, "alone", tmp_path / "alone")
    both = _start(tmp_path, "both", tmp_path / "both")
    ups += [alone, both]
    _wait_serving(alone, both)
    both_watchdog = both.record()["watchdog"]

    killed_at = time.monotonic()
    alone.popen.kill()
    assert alone.popen.wait(timeout=30) == -signal.SIGKILL
    os.kill(both_watchdog[0], signal.SIGKILL)
    both.popen.kill()
    _assert_all_gone(alone, since=killed_at)
    assert "ended without stopping; stopped" in (alone.data_dir / "watchdog.log").read_text()
    left = [p for p in both.snapshot if proctree.alive(p)]
    assert left, "nothing outlived a kill -9 of up and its watchdog: the next check proves nothing"
    outlived = [proctree.cmdline(pid)[:40] for pid, _ in left]

    # Round 2: the next `up` on that data dir (through make) removes them, then SIGTERM to make;
    # beside it, Ctrl-C at an `up`'s terminal.
    again = _start(tmp_path, "again", both.data_dir, via_make=True)
    ctrl_c = _start(tmp_path, "ctrl-c", alone.data_dir)
    early = _start(tmp_path, "early", tmp_path / "early")
    ups += [again, ctrl_c, early]

    # SIGTERM during start-up, once Ray runs and Serve deploys (Ray's own SIGTERM handler,
    # which logs a stack and aborts, must not be the one that answers).
    deadline = time.monotonic() + READY_S
    while "Started Serve in namespace" not in early.errors():
        assert early.popen.poll() is None and time.monotonic() < deadline, early.errors()
        time.sleep(0.2)
    early.snapshot = _identities(early.popen.pid)
    signalled_at = time.monotonic()
    early.popen.send_signal(signal.SIGTERM)
    assert early.popen.wait(timeout=GONE_S) == 0, early.errors()
    _assert_all_gone(early, since=signalled_at)
    assert "API: http" not in early.text() and "Traceback" not in early.errors()

    _wait_serving(again, ctrl_c)
    removed = [line for line in again.text().splitlines() if line.startswith("removed ")]
    assert len(removed) == 1, again.text()
    print(f"again: {removed[0]}; outlived the kill -9: {outlived}")
    assert "processes a killed `computalot up` left on this data dir (pids" in removed[0]
    assert any(str(pid) in removed[0] for pid, _ in left), (removed, left)
    still = [f"{pid} {proctree.cmdline(pid)[:100]}" for pid, _ in left if proctree.alive((pid, _))]
    assert not still, still  # (its folders are the new platform's now)

    signalled_at = time.monotonic()
    again.popen.send_signal(signal.SIGTERM)  # make alone; make forwards it to its recipe
    os.killpg(ctrl_c.popen.pid, signal.SIGINT)
    again.popen.wait(timeout=GONE_S)
    assert ctrl_c.popen.wait(timeout=GONE_S) == 0, ctrl_c.errors()
    for up in (again, ctrl_c):
        _assert_all_gone(up, since=signalled_at)
        assert "shutting down" in up.text()
        assert "Traceback" not in up.errors(), up.errors()
        assert not (up.data_dir / "up.json").exists()
