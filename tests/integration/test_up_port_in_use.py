"""``computalot up`` on a taken API port: one line naming the port and its holder, exit 2.

The port is held by a real listening socket (in this test process, and in a child process
whose command line spans several lines), ``up`` runs as a real subprocess, and the answer
must come before Ray starts: no Ray session directory appears and it takes seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

COMPUTALOT = Path(sys.executable).with_name("computalot")


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _up(port: int, data_dir: Path, ray_tmp: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPUTALOT_", "RAY_"))}
    # Were Ray to start, its session files would land here.
    env["RAY_TMPDIR"] = str(ray_tmp)
    env["TMPDIR"] = str(ray_tmp)
    started = time.monotonic()
    done = subprocess.run(
        [str(COMPUTALOT), "up", "--port", str(port), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return done, time.monotonic() - started


def _assert_one_line_refusal(done: subprocess.CompletedProcess[str], port: int) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"port {port} on 127.0.0.1" in lines[0] and "already in use" in lines[0]
    return lines[0]


def test_up_names_the_port_and_the_process_holding_it(held_port: int, tmp_path: Path) -> None:
    done, took_s = _up(held_port, tmp_path / "data", tmp_path)
    line = _assert_one_line_refusal(done, held_port)
    assert f"by pid {os.getpid()} (" in line, line
    executable = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()
    assert f"({executable} " in line, line  # this process's command line
    assert took_s < 60, took_s
    assert not list(tmp_path.rglob("session_*")), "Ray was started"


def test_holder_in_another_process_with_a_multiline_command(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import socket, sys
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        print(sock.getsockname()[1], flush=True)
        sys.stdin.read()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        done, _ = _up(port, tmp_path / "data", tmp_path)
        line = _assert_one_line_refusal(done, port)
        assert f"by pid {holder.pid} ({sys.executable} -c import socket, sys sock" in line, line
    finally:
        holder.kill()
        holder.wait()


def test_a_free_port_is_not_refused(tmp_path: Path) -> None:
    """The check itself: the same port is free again once its holder closed it."""
    from computalot.ports import port_in_use

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = int(sock.getsockname()[1])
        assert port_in_use("127.0.0.1", port)
        assert port_in_use("0.0.0.0", port)
    assert not port_in_use("127.0.0.1", port)
