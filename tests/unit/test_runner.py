"""computalot.engine.runner with real child processes; pids prove that nothing survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from computalot.engine.reaper import REAPER_SOURCE, Reaper
from computalot.engine.runner import (
    TAIL_CHARS,
    RunLimits,
    RunOutcome,
    base_env,
    run_command,
    runtime_path,
)

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """A pid counts as alive unless it is gone or a zombie (our PID 1 may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _assert_dead(pids: list[int]) -> None:
    end = time.monotonic() + 2.0
    while any(_alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.01)
    assert not [p for p in pids if _alive(p)], "processes survived"


def _script(tmp_path: Path, body: str, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _run(tmp_path: Path, body: str, **kw: Any) -> RunOutcome:
    script = _script(tmp_path, body)
    kw.setdefault("env", base_env({}, tmp_path))
    kw.setdefault("timeout_s", 10)
    return run_command([PY, str(script)], cwd=tmp_path, **kw)


# A runner that records its pid, starts a SIGTERM-ignoring grandchild sharing its stdout, waits
# until the grandchild has recorded its pid too, then sleeps.
FAMILY = """
    import os, subprocess, sys, time
    gc = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \\
         "open('gc.pid', 'w').write(str(os.getpid())); time.sleep(600)"
    open("child.pid", "w").write(str(os.getpid()))
    subprocess.Popen([sys.executable, "-c", gc])
    while not os.path.exists("gc.pid") or not open("gc.pid").read():
        time.sleep(0.01)
    print("family ready", flush=True)
    time.sleep(600)
"""


def _family_pids(tmp_path: Path) -> list[int]:
    return [int((tmp_path / f).read_text()) for f in ("child.pid", "gc.pid")]


def test_exit_zero(tmp_path: Path) -> None:
    out = _run(tmp_path, "print('hello')")
    assert (out.status, out.exit_code, out.error) == ("ok", 0, None)
    assert out.stdout_tail == "hello\n" and out.output_tail == "hello\n"
    assert out.duration_s < 3


def test_nonzero_exit_and_stderr(tmp_path: Path) -> None:
    out = _run(tmp_path, "import sys; print('bad', file=sys.stderr); sys.exit(3)")
    assert (out.status, out.exit_code) == ("exit_nonzero", 3)
    assert out.error == "exited with code 3"
    assert out.stderr_tail == "bad\n" and out.stdout_tail == ""


def test_command_not_found(tmp_path: Path) -> None:
    out = run_command(["nope-no-such-cmd"], cwd=tmp_path, env=base_env({}, tmp_path), timeout_s=5)
    assert (out.status, out.exit_code) == ("spawn_failed", 127)
    assert out.error == "runner command not found: 'nope-no-such-cmd'"


def test_command_not_executable(tmp_path: Path) -> None:
    script = _script(tmp_path, "print(1)")
    out = run_command([str(script)], cwd=tmp_path, env=base_env({}, tmp_path), timeout_s=5)
    assert (out.status, out.exit_code) == ("spawn_failed", 126)
    assert out.error == f"runner command not executable: {str(script)!r}"
    script.chmod(0o755)  # executable, but no shebang: ENOEXEC
    out = run_command([str(script)], cwd=tmp_path, env=base_env({}, tmp_path), timeout_s=5)
    assert (out.status, out.exit_code) == ("spawn_failed", 126)
    assert out.error == f"runner command could not start: {str(script)!r}: Exec format error"


def test_progress_valid_and_invalid(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    body = """
        print('COMPUTALOT_PROGRESS:{"step": 1, "of": 2}')
        print('COMPUTALOT_PROGRESS:{not json')
        print('COMPUTALOT_PROGRESS:[1, 2]')
        print('COMPUTALOT_PROGRESS:{"loss": NaN, "best": -Infinity}')
        print('COMPUTALOT_PROGRESS:{"deep": ' + '[' * 100 + ']' * 100 + '}')
        print('COMPUTALOT_PROGRESS:{"step": 2, "of": 2}')
        print('done')
    """
    out = _run(tmp_path, body, on_event=lambda k, d: events.append((k, d)))
    assert out.status == "ok"
    assert out.last_progress == {"step": 2, "of": 2}
    progress = [d["progress"] for k, d in events if k == "progress"]
    assert progress == [
        {"step": 1, "of": 2},
        {"loss": None, "best": None},  # JSON has no NaN: stored and streamed as null
        {"step": 2, "of": 2},
    ]
    text = "".join(d["text"] for k, d in events if k == "output")
    deep = 'COMPUTALOT_PROGRESS:{"deep": ' + "[" * 100 + "]" * 100 + "}"  # 101 levels: output
    assert text == f"COMPUTALOT_PROGRESS:{{not json\nCOMPUTALOT_PROGRESS:[1, 2]\n{deep}\ndone\n"
    assert out.stdout_tail == text


def test_output_is_coalesced_and_on_event_errors_ignored(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))
        raise RuntimeError("consumer bug")

    out = _run(tmp_path, "for i in range(2000): print(i)", on_event=on_event)
    assert out.status == "ok"
    assert len(events) < 20
    assert "".join(d["text"] for _, d in events) == "".join(f"{i}\n" for i in range(2000))


def test_tails_capped_for_1mb_of_output(tmp_path: Path) -> None:
    body = """
        import sys
        sys.stdout.write(("x" * 99 + "\\n") * 10486)
        sys.stdout.write("y" * 1_000_000)  # one 1 MB line without a newline
        sys.stdout.write("\\nEND")
        sys.stderr.write("e" * 50_000 + "\\nERR")
    """
    events: list[tuple[str, dict[str, Any]]] = []
    out = _run(tmp_path, body, on_event=lambda k, d: events.append((k, d)))
    assert out.status == "ok"
    assert len(out.stdout_tail) == TAIL_CHARS and out.stdout_tail.endswith("y\nEND")
    assert len(out.stderr_tail) == TAIL_CHARS and out.stderr_tail.endswith("e\nERR")
    assert len(out.output_tail) == TAIL_CHARS
    assert all(len(d["text"]) <= 3 * 64 * 1024 for _, d in events)


def test_env_is_exactly_what_was_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RAY_ADDRESS", "COMPUTALOT_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "leak")
    env = base_env({"COMPUTALOT_TASK_ID": "t1", "TMPDIR": str(tmp_path)}, tmp_path)
    assert set(env) == {"PATH", "HOME", "LANG", "PYTHONUNBUFFERED", "COMPUTALOT_TASK_ID", "TMPDIR"}
    assert env["HOME"] == str(tmp_path)
    # The initial environment block: Python's own C-locale coercion (LC_CTYPE) is not in it.
    show = "import json; raw = open('/proc/self/environ', 'rb').read().decode().split('\\0')\n"
    show += "print(json.dumps(dict(kv.split('=', 1) for kv in raw if kv)))"
    assert json.loads(_run(tmp_path, show, env=env).stdout_tail) == env
    exact = {"PATH": "/usr/bin:/bin", "ONLY": "me"}
    assert json.loads(_run(tmp_path, show, env=exact).stdout_tail) == exact


def test_timeout_kills_child_and_grandchild(tmp_path: Path) -> None:
    out = _run(tmp_path, FAMILY, timeout_s=1.0, kill_grace_s=0.5)
    assert (out.status, out.error) == ("timeout", "timed out after 1 s")
    assert out.stdout_tail == "family ready\n"
    assert out.duration_s < 2.5
    _assert_dead(_family_pids(tmp_path))


def test_sigterm_ignoring_child_is_killed_after_grace(tmp_path: Path) -> None:
    body = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(600)
    """
    out = _run(tmp_path, body, timeout_s=0.3, kill_grace_s=0.5)
    assert (out.status, out.exit_code) == ("timeout", -signal.SIGKILL)
    assert 0.75 <= out.duration_s < 2.0


def test_cancel_from_another_thread(tmp_path: Path) -> None:
    cancel = threading.Event()
    events: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        events.append(data.get("text", ""))
        if "family ready" in data.get("text", ""):
            threading.Timer(0.1, cancel.set).start()

    out = _run(tmp_path, FAMILY, on_event=on_event, cancel=cancel, kill_grace_s=0.5)
    assert (out.status, out.error) == ("cancelled", "cancelled")
    assert out.duration_s < 2.5
    _assert_dead(_family_pids(tmp_path))


def test_killed_by_outside_signal(tmp_path: Path) -> None:
    out = _run(tmp_path, "import os; print('bye', flush=True); os.kill(os.getpid(), 9)")
    assert (out.status, out.exit_code, out.error) == ("killed", -9, "killed by signal SIGKILL")
    assert out.stdout_tail == "bye\n"


def test_leftover_grandchild_killed_after_normal_exit(tmp_path: Path) -> None:
    exits_at_once = FAMILY[: FAMILY.rindex("time.sleep(600)")]
    out = _run(tmp_path, exits_at_once, timeout_s=5)
    assert out.status == "ok" and out.duration_s < 2.5
    _assert_dead(_family_pids(tmp_path))


def test_memory_limit(tmp_path: Path) -> None:
    body = "b = bytearray(1024 ** 3)\nprint('allocated')"
    out = _run(tmp_path, body, limits=RunLimits(memory_mb=200))
    assert out.status == "exit_nonzero" and out.exit_code == 1
    assert "MemoryError" in out.stderr_tail


def test_events_arrive_while_running(tmp_path: Path) -> None:
    body = """
        import os, time
        print('COMPUTALOT_PROGRESS:{"stage": "waiting"}')
        end = time.monotonic() + 5
        while not os.path.exists("go") and time.monotonic() < end:
            time.sleep(0.01)
        raise SystemExit(0 if os.path.exists("go") else 4)
    """

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "progress":
            (tmp_path / "go").touch()

    out = _run(tmp_path, body, on_event=on_event)
    assert out.status == "ok" and out.duration_s < 3
    assert out.last_progress == {"stage": "waiting"}


def test_interrupt_inside_run_command_kills_group_and_reraises(tmp_path: Path) -> None:
    def on_event(kind: str, data: dict[str, Any]) -> None:
        if "family ready" in data.get("text", ""):
            raise KeyboardInterrupt  # what Ray's task cancel does in the executing thread

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, FAMILY, on_event=on_event, kill_grace_s=0.5)
    _assert_dead(_family_pids(tmp_path))


def test_child_and_its_group_die_with_the_worker(tmp_path: Path) -> None:
    """SIGKILL the process that called run_command: its reaper kills the runner's whole group
    (the runner and a grandchild it started)."""
    child = _script(
        tmp_path,
        """
        import os, subprocess, sys, time
        gc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open("child.pid", "w").write(f"{os.getpid()} {gc.pid}")
        time.sleep(600)
        """,
        "child.py",
    )
    worker = f"""
        from pathlib import Path
        from computalot.engine.runner import base_env, run_command
        run_command([{PY!r}, {str(child)!r}], cwd=Path({str(tmp_path)!r}),
                    env=base_env({{}}, Path({str(tmp_path)!r})), timeout_s=600)
    """
    proc = subprocess.Popen([PY, "-c", textwrap.dedent(worker)], cwd=REPO)
    pid_file = tmp_path / "child.pid"
    end = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < end:
        time.sleep(0.01)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert all(_alive(p) for p in pids)
    proc.kill()
    proc.wait()
    _assert_dead(pids)


def test_reaper_refuses_groups_that_are_not_a_runners() -> None:
    reaper = Reaper()
    for pgid in (-1, 0, 1):
        with pytest.raises(ValueError):
            reaper.watch(pgid)
    assert reaper._proc is None  # nothing was started, nothing will be killed
    # The reaper's own guard, with os.killpg recorded instead of called.
    harness = (
        "import os, signal\nkilled = []\n"
        "os.killpg = lambda pgid, sig: killed.append(pgid)\n"
        f"exec({REAPER_SOURCE!r})\nprint(killed)"
    )
    out = subprocess.run(
        [PY, "-I", "-S", "-c", harness],
        input=b"+1\n+0\n+-1\n+4242\n+4343\n-4343\n",
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.decode().strip() == "[4242]"


def test_reaper_comes_back_after_it_died(tmp_path: Path) -> None:
    """A reaper killed under the worker is replaced at the next registration."""
    reaper = Reaper()
    reaper.watch(999_999)
    first = reaper._proc
    assert first is not None
    first.kill()
    first.wait()
    sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        reaper.watch(sleeper.pid)
        second = reaper._proc
        assert second is not None and second is not first and second.poll() is None
        assert second.stdin is not None
        second.stdin.close()  # what the worker's death does to the pipe
        second.wait(timeout=10)
        _assert_dead([sleeper.pid])
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()


def test_missing_cwd_and_empty_argv(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    out = run_command([PY, "-c", "pass"], cwd=missing, env={}, timeout_s=5)
    assert out.status == "spawn_failed" and out.exit_code is None
    assert str(missing) not in (out.error or "")
    out = run_command([], cwd=tmp_path, env={}, timeout_s=5)
    assert out.status == "spawn_failed"


def test_escaped_grandchild_holding_the_pipe_does_not_hang(tmp_path: Path) -> None:
    """A grandchild in its own session escapes killpg; we stop reading after a bounded drain."""
    body = """
        import os, subprocess, sys
        gc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              start_new_session=True)
        open("gc.pid", "w").write(str(gc.pid))
        print("bye")
    """
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        out = _run(tmp_path, body)
        assert out.status == "ok" and out.stdout_tail == "bye\n"
        assert out.duration_s < 2.5
        assert len(os.listdir("/proc/self/fd")) == fds_before
    finally:
        os.kill(int((tmp_path / "gc.pid").read_text()), signal.SIGKILL)


def test_runtime_path_puts_the_virtual_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python")
    monkeypatch.setattr(sys, "prefix", "/opt/venv")
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    assert runtime_path("/shims:/usr/bin") == "/opt/venv/bin:/shims:/usr/bin"
    # Already listed: moved to the front, not repeated; empty entries dropped.
    assert runtime_path("/usr/bin::/opt/venv/bin") == "/opt/venv/bin:/usr/bin"
    # Not in a virtual environment: the operator's PATH as it is.
    monkeypatch.setattr(sys, "prefix", "/usr")
    assert runtime_path("/shims:/usr/bin") == "/shims:/usr/bin"


def test_nul_bytes_in_output_are_replaced(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    body = """
        import sys
        sys.stdout.buffer.write(b"bin\\x00ary\\n")
    """
    out = _run(tmp_path, body, on_event=lambda k, d: events.append((k, d)))
    assert out.stdout_tail == "bin\ufffdary\n" == out.output_tail
    assert "".join(d["text"] for k, d in events if k == "output") == "bin\ufffdary\n"


def test_a_failed_registration_after_spawn_kills_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error once the child exists (limits, reaper) never leaves it running unwatched: the
    group is killed and the attempt says what failed."""
    from computalot.engine import runner

    spawned: list[int] = []

    def broken_watch(pgid: int) -> None:
        spawned.append(pgid)
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(runner.REAPER, "watch", broken_watch)
    pid_file = tmp_path / "pid"
    out = _run(
        tmp_path,
        f"""
        import os, subprocess, time
        child = subprocess.Popen(["sleep", "30"])
        open({str(pid_file)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(30)
        """,
    )
    assert out.status == "spawn_failed", out
    assert out.error == "runner process setup failed: BrokenPipeError: Broken pipe"
    assert len(spawned) == 1
    pids = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
    _assert_dead([spawned[0], *pids])


def test_a_refused_rlimit_does_not_skip_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from computalot.engine import runner

    calls: list[int] = []

    def prlimit(pid: int, res: int, limits: tuple[int, int]) -> None:
        calls.append(res)
        if res == resource.RLIMIT_AS:
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(runner.resource, "prlimit", prlimit)
    plan = runner._rlimit_plan(RunLimits(memory_mb=64, max_file_mb=1, max_open_files=64))
    runner._apply_limits(os.getpid(), plan)
    assert calls == [resource.RLIMIT_AS, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE]
