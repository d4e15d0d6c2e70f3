"""Warm Python runners (``engine.warm_python``): the conformance suite.

Each probe script runs both ways through ``engine.runner.run_command``: as a fresh
``python3`` (``warm=None``) and forked from a warm interpreter (``warm=(…)``), and what the
task sees and prints must be the same (issue #18 §1). No Ray needed: the runner is the seam.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from computalot.engine.runner import RunLimits, RunOutcome, base_env, run_command
from computalot.engine.warm_python import client as warm_client
from computalot.engine.warm_python import learned as warm_learned
from computalot.engine.warm_python.command import (
    NOT_WARM,
    WARM_CACHE_MOUNTS,
    job_warning,
    warm_command,
    why_not,
)
from computalot.errors import ValidationFailed
from computalot.projects.manifest import load_manifest

WARM = ("json",)  # a preload that exists everywhere; numpy has a test of its own
WAYS = {"fresh": None, "warm": WARM}

PROBE = r"""
import json, os, random, sys, resource, __main__
print(json.dumps({
    "argv": sys.argv,
    "orig_argv": sys.orig_argv[1:],
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "name": __name__,
    "file": __file__,
    "main_keys": sorted(k for k in vars(__main__) if k.startswith("__")),
    "spec": None if __spec__ is None else (__spec__.name, __spec__.origin),
    "env": dict(os.environ),
    "stdin": sys.stdin.read(),
    "fds": sorted(os.listdir("/proc/self/fd")),
    "own_group": os.getpgid(0) == os.getpid(),
    "session_leader": os.getsid(0) == os.getpid(),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    "stdout_write_through": sys.stdout.write_through,
    "tmp": __import__("tempfile").gettempdir(),
}, sort_keys=True))
"""


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "tmp").mkdir()
    (work / "probe.py").write_text(PROBE)
    return work


def run(work: Path, argv: list[str], warm: tuple[str, ...] | None, **kw: object) -> RunOutcome:
    env = base_env({"COMPUTALOT_TASK_ID": "task_1", "TMPDIR": str(work.parent / "tmp")}, work)
    limits = kw.pop("limits", RunLimits(max_open_files=1000))
    return run_command(
        argv,
        cwd=work,
        env=env,
        timeout_s=float(kw.pop("timeout_s", 30.0)),  # type: ignore[arg-type]
        limits=limits,  # type: ignore[arg-type]
        kill_grace_s=1.0,
        warm=warm,
        **kw,  # type: ignore[arg-type]
    )


def both(work: Path, argv: list[str], **kw: object) -> dict[str, RunOutcome]:
    return {way: run(work, argv, warm, **dict(kw)) for way, warm in WAYS.items()}


def write(work: Path, name: str, text: str) -> None:
    (work / name).write_text(text)


def test_a_task_sees_the_same_process_both_ways(task_dir: Path) -> None:
    seen = both(task_dir, ["python3", "probe.py", "a", "b c"])
    fresh, warm = (json.loads(seen[w].stdout_tail) for w in ("fresh", "warm"))
    assert fresh["argv"] == ["probe.py", "a", "b c"]
    assert fresh["path0"] == str(task_dir) and fresh["cwd"] == str(task_dir)
    assert fresh["env"]["COMPUTALOT_TASK_ID"] == "task_1"
    assert fresh["nofile"] == 1000 and fresh["own_group"] and fresh["session_leader"]
    assert fresh["fds"] == ["0", "1", "2", "3"]  # 3: the listing's own
    assert warm == fresh
    assert seen["warm"].status == seen["fresh"].status == "ok"


def test_a_module_runs_the_same_both_ways(task_dir: Path) -> None:
    pkg = task_dir / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(PROBE)
    seen = both(task_dir, ["python3", "-m", "pkg.tool", "--x"])
    fresh, warm = (json.loads(seen[w].stdout_tail) for w in ("fresh", "warm"))
    assert fresh["argv"] == [str(pkg / "tool.py"), "--x"]
    assert fresh["path0"] == str(task_dir)
    assert warm == fresh


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("import sys; sys.exit(3)", 3),
        ("import sys; sys.exit()", 0),
        ("import sys; sys.exit('bad input')", 1),
        ("import sys; sys.exit(256 + 4)", 4),
        ("import os; os._exit(7)", 7),
        ("def f():\n    raise ValueError('boom')\nf()", 1),
        ("raise SystemExit(None)", 0),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL),
        ("raise KeyboardInterrupt", -signal.SIGINT),
    ],
)
def test_exit_codes_and_tracebacks_match(task_dir: Path, source: str, code: int) -> None:
    write(task_dir, "end.py", "print('before')\n" + source + "\n")
    seen = both(task_dir, ["python3", "end.py"])
    assert seen["fresh"].exit_code == code
    for field in ("exit_code", "status", "error", "stdout_tail", "stderr_tail"):
        assert getattr(seen["warm"], field) == getattr(seen["fresh"], field), field


def test_atexit_buffered_output_threads_and_progress_match(task_dir: Path) -> None:
    write(
        task_dir,
        "late.py",
        "import atexit, sys, threading, time\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        'print(\'COMPUTALOT_PROGRESS:{"done": 1, "total": 2}\')\n'
        "sys.stdout.write('no newline yet ')\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread joined'))).start()\n",
    )
    seen = both(task_dir, ["python3", "late.py"])
    assert seen["fresh"].last_progress == {"done": 1, "total": 2}
    assert "thread joined" in seen["fresh"].stdout_tail
    assert "atexit ran" in seen["fresh"].stdout_tail
    for field in ("exit_code", "stdout_tail", "stderr_tail", "last_progress"):
        assert getattr(seen["warm"], field) == getattr(seen["fresh"], field), field


def test_missing_script_and_module_fail_the_same(task_dir: Path) -> None:
    for argv in (["python3", "nope.py"], ["python3", "-m", "nope"]):
        seen = both(task_dir, argv)
        assert seen["fresh"].exit_code in (1, 2)
        assert seen["warm"].exit_code == seen["fresh"].exit_code
        assert seen["warm"].stderr_tail == seen["fresh"].stderr_tail


def test_timeout_stops_the_whole_group_both_ways(task_dir: Path) -> None:
    write(
        task_dir,
        "slow.py",
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('term'), sys.exit(5)))\n"
        "subprocess.Popen(['sleep', '60'])\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n",
    )
    seen = both(task_dir, ["python3", "slow.py"], timeout_s=1.0)
    for outcome in seen.values():
        assert outcome.status == "timeout"
        assert outcome.exit_code == 5
        assert "term" in outcome.stdout_tail
        assert outcome.duration_s < 10


def test_cancel_stops_it_both_ways(task_dir: Path) -> None:
    write(task_dir, "wait.py", "import time\nprint('waiting', flush=True)\ntime.sleep(60)\n")
    for way, warm in WAYS.items():
        cancel = threading.Event()
        timer = threading.Timer(0.5, cancel.set)
        timer.start()
        outcome = run(task_dir, ["python3", "wait.py"], warm, cancel=cancel)
        timer.join()
        assert outcome.status == "cancelled", way
        assert outcome.exit_code == -signal.SIGTERM, way
        assert outcome.stdout_tail == "waiting\n", way


def test_random_state_differs_between_forked_tasks(task_dir: Path) -> None:
    pytest.importorskip("numpy")
    write(
        task_dir,
        "rand.py",
        "import random, sys, numpy\n"
        "print(random.random(), numpy.random.random(), 'numpy' in sys.modules)\n",
    )
    runs = [run(task_dir, ["python3", "rand.py"], ("numpy",)) for _ in range(3)]
    lines = [r.stdout_tail for r in runs]
    assert all(r.status == "ok" for r in runs)
    assert len({line.split()[0] for line in lines}) == 3
    assert len({line.split()[1] for line in lines}) == 3


def test_a_warm_task_is_forked_from_a_zygote_that_preloaded(task_dir: Path) -> None:
    write(
        task_dir,
        "who.py",
        "import os, sys\nprint(os.getppid(), 'json.decoder' in sys.modules)\n",
    )
    warm = run(task_dir, ["python3", "who.py"], WARM).stdout_tail.split()
    fresh = run(task_dir, ["python3", "who.py"], None).stdout_tail.split()
    zygotes = [z.proc.pid for z in warm_client.ZYGOTES.by_key.values()]
    assert int(warm[0]) in zygotes and warm[1] == "True"
    assert int(fresh[0]) == os.getpid()


def test_a_dead_zygote_is_replaced(task_dir: Path) -> None:
    write(task_dir, "who.py", "import os\nprint(os.getppid())\n")
    first = int(run(task_dir, ["python3", "who.py"], WARM).stdout_tail)
    os.kill(first, signal.SIGKILL)
    os.waitpid(first, 0)
    second = run(task_dir, ["python3", "who.py"], WARM)
    assert second.status == "ok"
    assert int(second.stdout_tail) != first
    assert int(second.stdout_tail) in [z.proc.pid for z in warm_client.ZYGOTES.by_key.values()]


def test_an_idle_zygote_exits_and_the_next_task_starts_another(
    task_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm_client, "IDLE_S", 0.5)
    write(task_dir, "who.py", "import os\nprint(os.getppid())\n")
    preload = ("json", "base64")  # a zygote of its own
    first = int(run(task_dir, ["python3", "who.py"], preload).stdout_tail)
    zygote = next(z for z in warm_client.ZYGOTES.by_key.values() if z.proc.pid == first)
    assert zygote.proc.wait(timeout=20) == 0
    second = int(run(task_dir, ["python3", "who.py"], preload).stdout_tail)
    assert second != first and second != os.getpid()


def test_commands_it_cannot_run_start_fresh(task_dir: Path) -> None:
    write(task_dir, "who.py", "import os\nprint(os.getppid())\n")
    for argv in (["python3", "-u", "who.py"], ["sh", "-c", "python3 who.py"]):
        outcome = run(task_dir, argv, WARM)
        assert outcome.status == "ok"
        if argv[0] == "python3":
            assert int(outcome.stdout_tail) == os.getpid()


def test_which_commands_qualify() -> None:
    assert why_not(["python3", "script.py", "-x"]) is None
    assert why_not(["/usr/bin/python3.11", "-m", "pkg.mod"]) is None
    assert why_not(["python", "s.py"]) is None
    for argv in (["python3"], ["python3", "-u", "s.py"], ["python3", "-c", "x"], ["bash", "x"]):
        assert why_not(argv) == NOT_WARM
    assert why_not(["python3", "-m", "bad-name"]) == NOT_WARM
    assert warm_command(["./venv/bin/python", "s.py"], os.environ["PATH"]) is None
    found = warm_command(["python3", "-m", "pkg", "a"], os.environ["PATH"])
    assert found is not None and found.argv == ("-m", "a") and found.module == "pkg"


def test_job_warnings() -> None:
    assert job_warning(False, "bwrap", {}, ["sh"]) is None
    assert job_warning(True, "bwrap", {}, ["python3", "s.py"]) is None
    mounts = {"cache_mounts": [{"path": "cache"}]}
    assert job_warning(True, "bwrap", mounts, ["python3", "s.py"]) == WARM_CACHE_MOUNTS
    assert job_warning(True, "none", mounts, ["python3", "s.py"]) is None
    assert job_warning(True, "bwrap", mounts, ["sh", "x"]) is None
    assert job_warning(True, "none", {}, ["python3", "s.py"]) is None
    assert job_warning(True, "none", {}, ["sh", "x"]) is None  # no interpreter to keep warm
    assert job_warning(True, "none", {}, ["python3", "-u", "x.py"]) == NOT_WARM
    assert job_warning(True, "bwrap", {}, ["/usr/bin/python3.11", "-c", "x"]) == NOT_WARM
    off = {"runtime": {"warm_python": False}}
    assert job_warning(True, "none", off, ["python3", "-u", "x.py"]) is None


def test_manifest_preload_is_validated(tmp_path: Path) -> None:
    name = "computalot.project.json"
    good = {"runtime": {"preload": ["numpy", "scipy.linalg"], "warm_python": False}}
    (tmp_path / name).write_text(json.dumps(good))
    runtime = load_manifest(tmp_path, [name]).manifest.runtime
    assert runtime.preload == ["numpy", "scipy.linalg"] and runtime.warm_python is False
    for bad, loc in (
        ({"preload": ["os; rm"]}, ["manifest", "runtime", "preload", 0]),
        ({"preload": "numpy"}, ["manifest", "runtime", "preload"]),
        ({"warm_python": "yes"}, ["manifest", "runtime", "warm_python"]),
    ):
        (tmp_path / name).write_text(json.dumps({"runtime": bad}))
        with pytest.raises(ValidationFailed) as err:
            load_manifest(tmp_path, [name])
        assert err.value.details[0]["loc"] == loc


@pytest.mark.parametrize(
    ("runtime", "preload"),
    [
        ({}, ()),
        ({"preload": ["numpy", "json"]}, ("numpy", "json")),
        ({"preload": ["numpy"], "warm_python": True}, ("numpy",)),
        ({"preload": ["numpy"], "warm_python": False}, None),
    ],
)
def test_a_revision_carries_its_preload_unless_it_opted_out(
    tmp_path: Path, runtime: dict[str, object], preload: tuple[str, ...] | None
) -> None:
    import asyncio

    from computalot.engine.launching import InputKeys, _revision_info
    from computalot.store.models import Revision

    revision = Revision(
        id="rev_1",
        project_id="prj_1",
        account_id="acc_1",
        content_hash="h",
        path=str(tmp_path),
        size_bytes=1,
        manifest={"runtime": runtime},
    )
    info = asyncio.run(_revision_info(revision, InputKeys(None)))
    assert info.preload == preload


@pytest.fixture(autouse=True)
def learned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> warm_learned.Learned:
    """A node's learned-module store of each test's own (not the machine's)."""
    store = warm_learned.Learned(tmp_path / "learned")
    monkeypatch.setattr(warm_client, "LEARNED", store)
    return store


def test_what_a_task_imported_is_preloaded_for_the_next(
    task_dir: Path, learned: warm_learned.Learned
) -> None:
    write(task_dir, "helper_of_the_project.py", "VALUE = 1\n")
    write(
        task_dir,
        "uses.py",
        "import os, sys\n"
        "had = 'xml.dom.minidom' in sys.modules\n"
        "import xml.dom.minidom, helper_of_the_project\n"
        "print(os.getppid(), had)\n",
    )
    preload = ("json", "uuid")  # a zygote of this test's own
    first = run(task_dir, ["python3", "uses.py"], preload).stdout_tail.split()
    assert first[1] == "False"
    command = warm_command(["python3", "uses.py"], base_env({}, task_dir)["PATH"])
    assert command is not None
    key = warm_learned.Learned.key(command.interpreter, preload)
    names = learned.names(key)
    assert "xml.dom.minidom" in names and "xml" in names
    assert "helper_of_the_project" not in names  # the project's own files are never learned
    second = run(task_dir, ["python3", "uses.py"], preload).stdout_tail.split()
    assert second[1] == "True" and second[0] != first[0]  # a new zygote imported it first
    third = run(task_dir, ["python3", "uses.py"], preload).stdout_tail.split()
    assert third == second  # nothing new learned: the same zygote goes on
    # Another worker of the revision on this node starts with them (the node's file).
    assert warm_learned.Learned(learned.directory).names(key) == names


def test_a_learned_module_that_starts_a_thread_is_never_preloaded(
    task_dir: Path, tmp_path: Path, learned: warm_learned.Learned
) -> None:
    """The zygote tries learned modules in a forked trial first: one that starts a Python
    thread at import (or a socket, or passes the memory cap) is left out, the rest kept."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "calm_module.py").write_text("X = 1\n")
    (lib / "busy_module.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True)"
        ".start()\n"
    )
    env = base_env({"PYTHONPATH": str(lib), "TMPDIR": str(task_dir.parent / "tmp")}, task_dir)
    command = warm_command(["python3", "probe.py"], env["PATH"])
    assert command is not None
    zygote = warm_client.Zygote(
        command.interpreter,
        ("json",),
        warm_client.startup_env(env),
        learned=("busy_module", "calm_module"),
    )
    try:
        write(
            task_dir,
            "seen.py",
            "import sys, threading\n"
            "print(sorted(m for m in sys.modules if m.endswith('_module')), "
            "threading.active_count())\n",
        )
        zygote.lock.acquire()
        seen = warm_command(["python3", "seen.py"], env["PATH"])
        assert seen is not None
        forked = zygote.start(seen, task_dir, env, [])
        out = forked.stdout.read().decode()
        assert forked.wait() == 0
        assert out == "['calm_module'] 1\n"
    finally:
        zygote.stop()


def test_a_hostile_import_report_is_ignored_not_fatal() -> None:
    """The shared page a task reports its imports in is the task's to scribble on: garbage,
    a non-list, or nesting deep enough to exhaust the parser's stack reads as no report (the
    zygote must not die of it)."""
    zygote: dict[str, object] = {"__name__": "zygote_under_test"}
    exec(compile(warm_client.SOURCE, "zygote_source", "exec"), zygote)
    page, reported = zygote["REPORT"], zygote["_reported"]
    for data in (b"[" * 60_000, b"{not json", b'{"a": 1}', b'["json", 7, "' + b"x" * 200 + b'"]'):
        page[4 : 4 + len(data)] = data  # type: ignore[index]
        page[:4] = len(data).to_bytes(4, "little")  # type: ignore[index]
        got = reported()  # type: ignore[operator]
        assert got == (["json"] if data.startswith(b'["json"') else []), data[:20]
