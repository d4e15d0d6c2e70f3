"""Warm Python runners inside the task sandbox (``sandbox.warm``), with real bubblewrap.

Each probe runs both ways through ``engine.runner.run_command``: in a fresh sandbox
(``TaskSandbox``) and forked by a zygote that lives in a warm sandbox (``WarmLease``), and what
the task sees, prints and is allowed must be the same (issue #18 §1: isolation wins). Then what
a task leaves behind (files, processes, /tmp, /dev/shm) must be gone for the next task of the
same warm sandbox, and a task must not be able to reach or tamper with its zygote.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from computalot.engine.cleanup import CLEANER
from computalot.engine.runner import RunLimits, RunOutcome, base_env, run_command
from computalot.engine.warm_python import client as warm_client
from computalot.engine.warm_python import learned as warm_learned
from computalot.engine.warm_python import warm_command
from computalot.sandbox import bwrap
from computalot.sandbox.limits import TaskLimits
from computalot.sandbox.policy import SandboxPolicy
from computalot.sandbox.task import TaskSandbox
from tests.support.helpers import host_pids

if bwrap.bwrap_path() is None:  # pragma: no cover - make test installs it
    pytest.skip("SKIPPED LOUDLY: bubblewrap is not installed", allow_module_level=True)

LIMITS = TaskLimits(memory_mb=256, processes=32, open_files=256, cpu_time_s=0, disk_mb=64)
POLICY = SandboxPolicy(
    mode="bwrap", network="none", uid=65534, gid=65534, limits=LIMITS, open_ports=()
)
PRELOAD = ("json",)
_SLOTS = itertools.count()

PROBE = r"""
import json, os, sys, resource, __main__
print(json.dumps({
    "argv": sys.argv,
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "uid": os.getuid(),
    "name": __name__,
    "file": __file__,
    "env": dict(os.environ),
    "stdin": sys.stdin.read(),
    "fds": sorted(os.listdir("/proc/self/fd")),
    "pids": len([p for p in os.listdir("/proc") if p.isdigit()]),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    "task": sorted(os.listdir("/task")),
    "tmp": sorted(os.listdir("/tmp")),
    "shm": sorted(os.listdir("/dev/shm")),
    "root": sorted(os.listdir("/")),
    "hostname": os.uname().nodename,
    "net": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else None,
}, sort_keys=True))
"""


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test's directory; its warm sandboxes go with it. Learned preloads are this test's
    own, and no zygote restarts to take them (these tests follow one sandbox) but where a test
    says so."""
    monkeypatch.setattr(warm_client, "LEARNED", warm_learned.Learned(tmp_path / "learned"))
    monkeypatch.setattr(warm_client, "MAX_RESTARTS", 0)
    yield tmp_path
    warm_client.ZYGOTES.stop_all()


def _env() -> dict[str, str]:
    return base_env({"TMPDIR": "/tmp", "COMPUTALOT_TASK_ID": "task_1"}, Path("/task/work"))


def _limits(memory_rlimit_mb: int | None) -> RunLimits:
    return RunLimits(memory_mb=memory_rlimit_mb, max_file_mb=64, max_open_files=256)


def _fill(directory: Path, code: str) -> None:
    (directory / "work").mkdir()
    (directory / "work" / "job.py").write_text(code)


def run_warm(
    base: Path,
    code: str,
    *,
    policy: SandboxPolicy = POLICY,
    preload: tuple[str, ...] = PRELOAD,
    **kw: object,
) -> RunOutcome:
    """``code`` as ``python3 job.py`` forked in this process's warm sandbox for ``policy``."""
    env = _env()
    command = warm_command(["python3", "job.py"], env["PATH"])
    assert command is not None
    claim = warm_client.claim_sandboxed(
        command, preload, env, policy, lambda: base / f"warm-{next(_SLOTS)}"
    )
    assert claim is not None, "the warm sandbox was busy or could not be made"
    try:
        _fill(claim.directory, code)
        return run_command(
            ["python3", "job.py"],
            cwd=claim.directory / "work",
            env=env,
            timeout_s=float(kw.pop("timeout_s", 20.0)),  # type: ignore[arg-type]
            limits=_limits(claim.lease.memory_rlimit_mb),
            kill_grace_s=1.0,
            sandbox=claim.lease,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        claim.lease.close()
        claim.finish(base, CLEANER.remove)


def run_fresh(base: Path, code: str, **kw: object) -> RunOutcome:
    """``code`` as ``python3 job.py`` in a fresh sandbox, as every task ran before."""
    directory = base / f"fresh-{next(_SLOTS)}"
    directory.mkdir()
    _fill(directory, code)
    sandbox = TaskSandbox(POLICY, directory, directory.name)
    try:
        return run_command(
            ["python3", "job.py"],
            cwd=directory / "work",
            env=_env(),
            timeout_s=float(kw.pop("timeout_s", 20.0)),  # type: ignore[arg-type]
            limits=_limits(sandbox.memory_rlimit_mb),
            kill_grace_s=1.0,
            sandbox=sandbox,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        sandbox.close()


def both(base: Path, code: str, **kw: object) -> dict[str, RunOutcome]:
    return {"fresh": run_fresh(base, code, **dict(kw)), "warm": run_warm(base, code, **dict(kw))}


def _zygote() -> warm_client.Zygote:
    (zygote,) = [z for z in warm_client.ZYGOTES.by_key.values() if z.sandbox is not None]
    return zygote


def test_a_task_sees_the_same_sandbox_both_ways(base: Path) -> None:
    seen = both(base, PROBE)
    fresh, warm = (json.loads(seen[w].stdout_tail) for w in ("fresh", "warm"))
    assert seen["fresh"].status == seen["warm"].status == "ok", seen
    assert fresh["uid"] == (65534 if os.geteuid() == 0 else os.geteuid())
    assert fresh["cwd"] == "/task/work" and fresh["task"] == ["work"]
    assert fresh["pids"] == 2 and fresh["fds"] == ["0", "1", "2", "3"]
    assert warm == fresh


def test_exit_codes_signals_and_tracebacks_match(base: Path) -> None:
    for source in (
        "import sys; sys.exit(3)",
        "def f():\n    raise ValueError('boom')\nf()",
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    ):
        seen = both(base, "print('before')\n" + source + "\n")
        for field in ("exit_code", "status", "error", "stdout_tail", "stderr_tail"):
            assert getattr(seen["warm"], field) == getattr(seen["fresh"], field), (source, field)
    assert seen["warm"].exit_code == -signal.SIGKILL and seen["warm"].status == "killed"


def test_limits_end_a_warm_task_as_they_end_a_fresh_one(base: Path) -> None:
    memory = "chunks = [bytearray(16 << 20) for _ in range(40)]\n"
    processes = (
        "import subprocess\nprocs = [subprocess.Popen(['sleep', '30']) for _ in range(64)]\n"
    )
    for code, status in ((memory, "memory_limit"), (processes, "process_limit")):
        seen = both(base, code)
        assert seen["fresh"].status == status, seen["fresh"]
        assert seen["warm"].status == status, seen["warm"]
        assert seen["warm"].error == seen["fresh"].error
    after = run_warm(base, "print('still warm')\n")  # the sandbox survives a limit or is renewed
    assert after.status == "ok" and after.stdout_tail == "still warm\n"


def test_timeout_and_cancel_stop_a_warm_task_and_all_it_started(base: Path) -> None:
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('term'), sys.exit(5)))\n"
        "subprocess.Popen(['sleep', '60'])\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    timed = run_warm(base, code, timeout_s=1.0)
    assert timed.status == "timeout" and timed.exit_code == 5 and "term" in timed.stdout_tail
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    cancelled = run_warm(base, code, cancel=cancel)
    timer.join()
    assert cancelled.status == "cancelled" and cancelled.exit_code == 5
    assert _zygote().sandbox.task_processes() == []  # type: ignore[union-attr]


def test_nothing_of_a_task_is_left_for_the_next_one(base: Path) -> None:
    marker = f"left-behind-{os.getpid()}-{time.time_ns()}"
    leave = (
        "import os, subprocess\n"
        "open('/tmp/secret', 'w').write('a')\n"
        "open('/dev/shm/secret', 'w').write('b')\n"
        "os.makedirs('/tmp/locked/inner')\n"
        "os.chmod('/tmp/locked', 0)\n"
        "open('/task/leftover', 'w').write('c')\n"
        # a daemon that left the task's process group and session
        f"subprocess.Popen(['sh', '-c', 'exec -a {marker} sleep 300'], start_new_session=True)\n"
    )
    first = run_warm(base, leave)
    assert first.status == "ok", first
    zygote = _zygote()
    assert host_pids(marker) == []  # the daemon was killed at the task's end
    seen = json.loads(run_warm(base, PROBE).stdout_tail)
    assert _zygote() is zygote  # the same warm sandbox ran both
    # What a fresh sandbox has there (empty, or the directories the interpreter is mounted
    # under when the node keeps it below /tmp).
    fresh = json.loads(run_fresh(base, PROBE).stdout_tail)
    assert "secret" not in fresh["tmp"] and "locked" not in fresh["tmp"]
    assert seen["tmp"] == fresh["tmp"] and seen["shm"] == fresh["shm"] == []
    assert seen["task"] == ["work"] and seen["pids"] == 2


def test_a_task_cannot_reach_its_zygote_or_another_slot(base: Path) -> None:
    other = base / "another-attempt"
    other.mkdir()
    (other / "secret").write_text("another task's file")
    probe = (
        "import json, os, signal\n"
        "out = {}\n"
        "try:\n"
        "    open('/proc/1/mem', 'rb').read(1)\n"
        "    out['mem'] = 'read'\n"
        "except OSError as exc:\n"
        "    out['mem'] = type(exc).__name__\n"
        "os.kill(1, signal.SIGKILL)\n"
        f"out['other'] = os.path.exists({str(other)!r})\n"
        f"out['base'] = os.path.exists({str(base)!r})\n"
        "print(json.dumps(out))\n"
    )
    ran = run_warm(base, probe)
    assert ran.status == "ok", ran
    assert json.loads(ran.stdout_tail) == {"mem": "PermissionError", "other": False, "base": False}
    zygote = _zygote()
    again = run_warm(base, "print('ok')\n")
    assert again.status == "ok" and _zygote() is zygote  # SIGKILL to pid 1 did nothing


def test_a_dead_warm_sandbox_falls_back_then_is_replaced(base: Path) -> None:
    first = run_warm(base, "import os\nprint(os.getpid())\n")
    assert first.status == "ok"
    zygote = _zygote()
    # Killed between two tasks: the next claim finds it dead and starts another sandbox.
    zygote.sandbox.kill()  # type: ignore[union-attr]
    second = run_warm(base, "print('renewed')\n")
    assert second.status == "ok" and second.stdout_tail == "renewed\n"
    assert _zygote() is not zygote
    # Killed after the claim: this task runs in a fresh sandbox over the same slot.
    env = _env()
    command = warm_command(["python3", "job.py"], env["PATH"])
    assert command is not None
    claim = warm_client.claim_sandboxed(command, PRELOAD, env, POLICY, lambda: base / "unused")
    assert claim is not None
    claim.zygote.sandbox.kill()  # type: ignore[union-attr]
    try:
        _fill(claim.directory, "import os\nprint(sorted(os.listdir('/task')))\n")
        ran = run_command(
            ["python3", "job.py"],
            cwd=claim.directory / "work",
            env=env,
            timeout_s=20.0,
            limits=_limits(claim.lease.memory_rlimit_mb),
            sandbox=claim.lease,
        )
    finally:
        claim.lease.close()
        claim.finish(base, CLEANER.remove)
    assert ran.status == "ok" and ran.stdout_tail == "['work']\n", ran
    assert claim.lease.fresh is None  # closed with the lease
    assert not claim.directory.exists()  # a broken warm sandbox is given up with its slot


def test_warm_tasks_in_the_sandbox_start_faster_than_fresh_sandboxes(base: Path) -> None:
    """Not a timing test: the work saved is counted. A fresh sandbox starts bubblewrap and an
    interpreter per task; a warm one forks — the zygote's pid stays, bubblewrap is not run."""
    pytest.importorskip("numpy")
    code = "import os, sys\nprint(os.getppid(), 'numpy' in sys.modules)\n"
    runs = [run_warm(base, code, preload=("numpy",)) for _ in range(3)]
    assert [r.stdout_tail for r in runs] == ["1 True\n"] * 3
    fresh = run_fresh(base, code)
    assert fresh.stdout_tail == "1 False\n"


def test_a_warm_sandbox_learns_what_its_tasks_import(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm_client, "MAX_RESTARTS", 2)
    code = (
        "import os, sys\n"
        "had = 'xml.dom.minidom' in sys.modules\n"
        "import xml.dom.minidom\n"
        "print(had, sorted(os.listdir('/task')))\n"
    )
    assert run_warm(base, code).stdout_tail == "False ['work']\n"
    first = _zygote()
    assert run_warm(base, code).stdout_tail == "True ['work']\n"
    assert _zygote() is not first  # a new warm sandbox that imported it before the task
