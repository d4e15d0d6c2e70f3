"""computalot.lifecycle without Ray: which processes a sweep finds (by command line, working
directory, open file), that a reused pid is never signalled, and the watchdog's two endings
(docs/operating.md, "Stopping and restarting"). Real processes throughout."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from computalot.lifecycle import procs
from computalot.lifecycle.guard import AnotherUp, UpGuard
from computalot.lifecycle.watchdog import CLEAN

SLEEP = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    folder = tmp_path / "ray-temp"
    folder.mkdir()
    return folder


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def _spawn(
    started: list[subprocess.Popen[bytes]], *args: str, **kwargs: object
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*SLEEP, *args], **kwargs)  # type: ignore[call-overload]
    started.append(proc)
    return proc


def _ignores_sigterm(pid: int) -> bool:
    """Whether the process has set SIGTERM to ignored (``SigIgn`` in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return bool(mask) and bool(int(mask.group(1), 16) & (1 << (signal.SIGTERM - 1)))


def _wait_started(pid: int) -> None:
    """Until the sleeper ignores SIGTERM (its command line shows at exec, before the interpreter
    ran a line: a SIGTERM then would end it with -15 rather than leave it to the SIGKILL)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _ignores_sigterm(pid):
        time.sleep(0.02)
    assert _ignores_sigterm(pid), f"pid {pid} did not start ignoring SIGTERM in 30 s"


def test_a_sweep_finds_by_command_line_cwd_and_open_file_and_nothing_else(
    marker: Path, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    by_arg = _spawn(spawned, f"--session-dir={marker}/session_x")
    by_cwd = _spawn(spawned, cwd=marker)
    with (marker / "worker.out").open("wb") as log:
        by_file = _spawn(spawned, stdout=log)  # a Ray worker's log, its command line renamed
    other = _spawn(spawned, str(tmp_path / "ray-temp-other"), cwd=tmp_path)
    for proc in spawned:
        _wait_started(proc.pid)
    # An operator reading a log there (not one of the platform's programs): left alone.
    reader = subprocess.Popen(["tail", "-f", str(marker / "worker.out")], cwd=marker)
    spawned.append(reader)
    deadline = time.monotonic() + 10
    while "tail" not in procs.command(reader.pid) and time.monotonic() < deadline:
        time.sleep(0.02)

    found = {p.pid for p in procs.find([str(marker)])}
    assert found == {by_arg.pid, by_cwd.pid, by_file.pid}

    # They ignore SIGTERM: the sweep waits its grace, then SIGKILLs them; the other one lives.
    started = time.monotonic()
    stopped = procs.sweep([str(marker)], grace_s=0.5)
    assert {p.pid for p in stopped} == found
    assert time.monotonic() - started < 10
    for proc in (by_arg, by_cwd, by_file):
        assert proc.wait(timeout=5) == -9
    assert other.poll() is None and reader.poll() is None


def test_a_reused_pid_is_never_signalled(spawned: list[subprocess.Popen[bytes]]) -> None:
    proc = _spawn(spawned)
    _wait_started(proc.pid)
    start = procs.start_time(proc.pid)
    assert start is not None and procs.alive(proc.pid, start)
    impostor = procs.Proc(proc.pid, start - 1, "")  # the same pid, another process
    assert not procs.alive(impostor.pid, impostor.start)
    assert procs.sweep([], known=[impostor], grace_s=0.2) == []
    assert proc.poll() is None


def _watchdog(plan: dict[str, object]) -> subprocess.Popen[bytes]:
    dog = subprocess.Popen(
        [sys.executable, "-m", "computalot.lifecycle.watchdog"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert dog.stdin is not None
    dog.stdin.write(json.dumps(plan).encode() + b"\n")
    dog.stdin.flush()
    return dog


def test_the_watchdog_sweeps_when_its_pipe_closes_unannounced(
    marker: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    left = _spawn(spawned, f"--temp-dir={marker}")
    _wait_started(left.pid)
    dog = _watchdog({"up_pid": 1234, "markers": [str(marker)], "pids": []})
    assert dog.stdin is not None
    time.sleep(0.5)
    assert left.poll() is None
    dog.stdin.close()  # what the kernel does when `up` is SIGKILLed
    assert left.wait(timeout=30) == -9  # SIGTERM ignored: killed after the grace
    assert dog.wait(timeout=30) == 0
    assert dog.stderr is not None
    assert f"stopped 1 processes it left ({left.pid})" in dog.stderr.read().decode()


def test_the_watchdog_leaves_everything_after_a_clean_stop(
    marker: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    kept = _spawn(spawned, f"--temp-dir={marker}")
    _wait_started(kept.pid)
    dog = _watchdog({"up_pid": 1234, "markers": [str(marker)], "pids": []})
    assert dog.stdin is not None
    dog.stdin.write(CLEAN)
    dog.stdin.close()
    assert dog.wait(timeout=30) == 0
    assert dog.stderr is not None and dog.stderr.read() == b""
    assert kept.poll() is None


def test_the_record_refuses_a_live_up_and_clears_after_a_dead_one(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    guard = UpGuard(data_dir, tmp_path / "hap", 8000)
    running_up = _spawn(spawned)
    left_watchdog = _spawn(spawned)
    left_agent = _spawn(spawned, f"--session-dir={guard.ray_temp_dir}/session_1")
    for proc in spawned:
        _wait_started(proc.pid)
    record = {
        "up": [running_up.pid, procs.start_time(running_up.pid)],
        "watchdog": [left_watchdog.pid, procs.start_time(left_watchdog.pid)],
    }
    guard.record_path.write_text(json.dumps(record))
    with pytest.raises(AnotherUp, match=rf"another `computalot up` \(pid {running_up.pid}\)"):
        guard.take_over()
    assert left_agent.poll() is None and left_watchdog.poll() is None

    running_up.kill()
    running_up.wait()
    lines = guard.take_over()
    assert lines == [
        "removed 2 processes a killed `computalot up` left on this data dir "
        f"(pids {left_watchdog.pid}, {left_agent.pid})"
    ]
    assert left_agent.wait(timeout=10) == -9 and left_watchdog.wait(timeout=10) == -9
    assert not guard.record_path.exists()
