"""Tests that start a platform or a Ray cluster of their own run beside the others.

Such a test (marked ``own_platform``) spends most of a minute starting Ray, Serve and the engine
and then waits on them, while the session's platform (``tests/conftest.py``) sits idle. So a
whole run (``make test``) hands them to a second pytest process, started once collection is
done, at a lower CPU priority (``NICENESS``): it and every process it starts yield the CPU to
the session's tests, whose latency checks keep measuring the platform rather than the host. The
session waits for that process at its end, prints its report under "tests beside", and fails
when it failed.

Tests whose figures measure latency (marked ``quiet_host``) move to the end of the session and
wait for that process to end first: nice keeps its share of the CPU small, not nothing.

A run that selects only a few tests (one file, ``-k``) keeps everything in one process, and
``TESTS_SERIAL=1`` does so always. (The variables have no ``COMPUTALOT_`` prefix: the session's
conftest drops every such variable.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MARK = "own_platform"
QUIET = "quiet_host"
#: Set in the second process's environment: it runs what it is given, all in itself.
CHILD_ENV = "TESTS_BESIDE_CHILD"
#: Set (to anything) to run every test in the session's process.
SERIAL_ENV = "TESTS_SERIAL"
#: Below this many other tests, a second process is not worth its start.
MIN_OTHERS = 50
NICENESS = 10
#: How long the session waits for the second process after its own tests are done.
WAIT_S = 3600.0


@dataclass
class Beside:
    proc: subprocess.Popen[bytes]
    log: Path
    folder: Path
    count: int
    started: float
    returncode: int | None = None
    last_line: str = "no report"


_BESIDE: Beside | None = None


def beside_pid() -> int | None:
    """The pid of the second process while it runs, else None."""
    if _BESIDE is None or _BESIDE.proc.poll() is not None:
        return None
    return _BESIDE.proc.pid


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}: starts a platform or Ray cluster of its own; a whole run runs it in a second "
        "process beside the session's tests (tests/support/beside.py)",
    )
    config.addinivalue_line(
        "markers",
        f"{QUIET}: measures latency; runs once the tests beside have ended "
        "(tests/support/beside.py)",
    )


@pytest.hookimpl(trylast=True)  # after -k / -m deselected what they do
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    global _BESIDE
    if os.environ.get(CHILD_ENV) or os.environ.get(SERIAL_ENV) or config.option.collectonly:
        return
    own = [item for item in items if item.get_closest_marker(MARK)]
    others = [item for item in items if not item.get_closest_marker(MARK)]
    if not own or len(others) < MIN_OTHERS:
        return
    folder = Path(tempfile.mkdtemp(prefix="pytest-beside-"))
    log = folder / "report.txt"
    nice = shutil.which("nice")
    argv = [
        *([nice, "-n", str(NICENESS)] if nice else []),
        sys.executable, "-m", "pytest",
        "-p", "no:cacheprovider",
        "-q", "-ra", "--durations=10",
        f"--basetemp={folder / 'tmp'}",
        *(item.nodeid for item in own),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=str(config.rootpath),
            env={**os.environ, CHILD_ENV: "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _BESIDE = Beside(proc, log, folder, len(own), time.monotonic())
    quiet = [item for item in others if item.get_closest_marker(QUIET)]
    items[:] = [item for item in others if not item.get_closest_marker(QUIET)] + quiet
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"{len(own)} test(s) that start a platform of their own run beside these, in pid "
            f"{proc.pid} at nice {NICENESS} (report: {log}; TESTS_SERIAL=1 runs them here)"
        )


def _wait_beside(config: pytest.Config, why: str) -> None:
    assert _BESIDE is not None
    if _BESIDE.proc.poll() is None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"\nwaiting for the {_BESIDE.count} test(s) beside (pid {_BESIDE.proc.pid}) {why}"
            )
        try:
            _BESIDE.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            _BESIDE.proc.kill()
            _BESIDE.proc.wait()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outside pytest-timeout's clock
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if _BESIDE is not None and item.get_closest_marker(QUIET):
        _wait_beside(item.config, "before the tests that measure latency")
    yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _BESIDE is None:
        return
    _wait_beside(session.config, "to end")
    _BESIDE.returncode = _BESIDE.proc.returncode
    lines = [line for line in _BESIDE.log.read_text(errors="replace").splitlines() if line]
    _BESIDE.last_line = lines[-1].strip("= ") if lines else "no report"
    if _BESIDE.returncode != 0 and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _BESIDE is None or _BESIDE.returncode is None:
        return
    took = time.monotonic() - _BESIDE.started
    ok = _BESIDE.returncode == 0
    terminalreporter.section(
        f"tests beside: {_BESIDE.count} test(s), exit {_BESIDE.returncode}, {took:.0f} s",
        sep="=",
        red=not ok,
        green=ok,
    )
    text = _BESIDE.log.read_text(errors="replace")
    # All of it when it failed (its failures, tracebacks and captured output); else its summary.
    summary = text.rfind("\n", 0, text.rfind("slowest")) + 1 if "slowest" in text else 0
    shown = text[summary:] if ok else text
    terminalreporter.write(shown if shown.endswith("\n") else shown + "\n")
    if ok:
        shutil.rmtree(_BESIDE.folder, ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The second process's own count as the run's last line (after the session's); an
    interrupted session stops that process too, as Ctrl-C would (its fixtures then stop the
    platforms they started)."""
    if _BESIDE is not None and _BESIDE.returncode is not None:
        mark = "passed" if _BESIDE.returncode == 0 else "FAILED, so the run fails"
        sys.stdout.write(f"tests beside ({mark}): {_BESIDE.last_line}\n")
        sys.stdout.flush()
    if _BESIDE is not None and _BESIDE.proc.poll() is None:
        _BESIDE.proc.send_signal(signal.SIGINT)
        try:
            _BESIDE.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            _BESIDE.proc.kill()
