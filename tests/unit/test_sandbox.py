"""The task sandbox with real processes: bubblewrap, cgroups, rlimits and nftables (no Ray).

Each test runs a small command through ``run_command`` in a real sandbox and checks what the
command could do and how it ended. Skipped loudly where the machine cannot sandbox at all.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from computalot.engine.attempt import AttemptSpec
from computalot.engine.runner import RunLimits, RunOutcome, base_env, run_command
from computalot.sandbox import bwrap, firewall, seccomp
from computalot.sandbox.limits import TaskLimits, ceiling_errors, task_limits
from computalot.sandbox.policy import SandboxPolicy, open_ports, policy_for
from computalot.sandbox.task import SandboxUnavailable, TaskSandbox, disk_usage
from tests.support.helpers import host_pids

if bwrap.bwrap_path() is None:  # pragma: no cover - make test installs it
    pytest.skip("SKIPPED LOUDLY: bubblewrap is not installed", allow_module_level=True)

LIMITS = TaskLimits(memory_mb=128, processes=32, open_files=256, cpu_time_s=0, disk_mb=64)


def _policy(**changes: object) -> SandboxPolicy:
    fields: dict[str, object] = {
        "mode": "bwrap",
        "network": "host",
        "uid": 65534,
        "gid": 65534,
        "limits": LIMITS,
        "open_ports": (),
    }
    fields.update(changes)
    return SandboxPolicy(**fields)  # type: ignore[arg-type]


@pytest.fixture
def attempt(tmp_path: Path) -> Path:
    directory = tmp_path / f"attempt-{uuid.uuid4().hex[:8]}"
    (directory / "work").mkdir(parents=True)
    return directory


def run_in(
    attempt: Path, code: str, *, timeout_s: float = 20, grace_s: float = 2, **policy: object
) -> RunOutcome:
    (attempt / "work" / "job.py").write_text(code)
    sandbox = TaskSandbox(_policy(**policy), attempt, attempt.name)
    limits = sandbox.limits
    try:
        return run_command(
            [sys.executable, "job.py"],
            cwd=attempt / "work",
            env=base_env({"TMPDIR": "/tmp"}, Path("/task/work")),
            timeout_s=timeout_s,
            limits=RunLimits(
                memory_mb=sandbox.memory_rlimit_mb,
                max_file_mb=limits.disk_mb,
                max_open_files=limits.open_files,
                cpu_time_s=limits.cpu_time_s or None,
            ),
            kill_grace_s=grace_s,
            sandbox=sandbox,
        )
    finally:
        sandbox.close()


def test_the_task_is_an_unprivileged_uid_alone_in_its_pid_namespace(attempt: Path) -> None:
    ran = run_in(
        attempt,
        "import os, json\n"
        "print(json.dumps([os.getuid(), sorted(int(p) for p in os.listdir('/proc') "
        "if p.isdigit()), os.getcwd(), os.path.exists('/root/.ray')]))\n"
        "open('/task/out', 'w').write('kept')\n",
    )
    assert ran.status == "ok", ran
    uid, pids, cwd, sees_ray = json.loads(ran.stdout_tail)
    assert uid == (65534 if os.geteuid() == 0 else os.geteuid())
    assert len(pids) <= 2 and cwd == "/task/work" and sees_ray is False
    assert (attempt / "out").read_text() == "kept"


def test_memory_over_the_limit_ends_the_task_as_memory_limit(attempt: Path) -> None:
    ran = run_in(attempt, "chunks = [bytearray(16 << 20) for _ in range(40)]\n")
    assert ran.status == "memory_limit", ran
    assert "128 MiB" in (ran.error or "")


def test_too_many_processes_end_the_task_as_process_limit(attempt: Path) -> None:
    code = (
        "import subprocess, sys\nprocs = [subprocess.Popen(['sleep', '30']) for _ in range(64)]\n"
    )
    ran = run_in(attempt, code)
    assert ran.status == "process_limit", ran
    assert "32 processes" in (ran.error or "")


def test_cpu_time_over_the_limit_ends_the_task_as_cpu_time_limit(attempt: Path) -> None:
    limits = TaskLimits(memory_mb=256, processes=32, open_files=256, cpu_time_s=1, disk_mb=64)
    ran = run_in(attempt, "while True:\n    pass\n", limits=limits)
    assert ran.status == "cpu_time_limit", ran
    assert "1 s" in (ran.error or "")


def test_a_full_directory_ends_the_task_as_disk_limit(attempt: Path) -> None:
    code = "open('/task/big', 'wb').write(b'x' * (80 << 20))\n"
    ran = run_in(attempt, code)
    assert ran.status == "disk_limit", ran
    assert "64 MiB" in (ran.error or "")


def test_files_each_under_the_limit_that_pass_it_together_end_as_disk_limit(
    attempt: Path,
) -> None:
    """No single file hits RLIMIT_FSIZE and the task exits well within the one-second watch:
    the check at its end still finds its directory over the limit."""
    code = "for i in range(4):\n    open(f'/task/part{i}', 'wb').write(b'x' * (20 << 20))\n"
    ran = run_in(attempt, code)
    assert ran.duration_s < 1.0, ran  # else the watch could have caught it
    assert ran.status == "disk_limit", ran
    assert "64 MiB" in (ran.error or "")


def test_timeout_gives_the_task_its_grace_and_kills_what_it_left(attempt: Path) -> None:
    marker = f"computalot-left-{uuid.uuid4().hex}"
    code = (
        "import os, signal, subprocess, sys, time\n"
        "def bye(*_):\n"
        "    open('/task/graceful', 'w').write('yes')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'],"
        " start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)', "
        f"'{marker}'])\n"
        "    os._exit(0)\n"
        "time.sleep(600)\n"
    )
    ran = run_in(attempt, code, timeout_s=2, grace_s=5)
    assert ran.status == "timeout", ran
    assert (attempt / "graceful").read_text() == "yes"
    assert host_pids(marker) == []


def test_network_none_and_the_firewall_keep_loopback_services_away(attempt: Path) -> None:
    if os.geteuid() != 0 or firewall.nft_path() is None:
        pytest.skip("SKIPPED LOUDLY: the firewall needs root and nft")
    with (
        socket.create_server(("127.0.0.1", 0)) as closed,
        socket.create_server(("127.0.0.1", 0)) as open_,
    ):
        closed_port, open_port = closed.getsockname()[1], open_.getsockname()[1]
        code = (
            "import socket\n"
            f"for port in ({closed_port}, {open_port}):\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
            "        print(port, 'open')\n"
            "    except OSError:\n"
            "        print(port, 'refused')\n"
        )
        host = run_in(attempt, code, open_ports=(open_port,))
        assert host.status == "ok", host
        assert host.stdout_tail.split("\n")[:2] == [f"{closed_port} refused", f"{open_port} open"]
        none = run_in(attempt, code, network="none", open_ports=(open_port,))
        assert none.stdout_tail.split("\n")[:2] == [
            f"{closed_port} refused",
            f"{open_port} refused",
        ]


def test_a_result_link_is_never_followed(attempt: Path, tmp_path: Path) -> None:
    from computalot.engine.result_file import read_result_file

    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "of the platform"}')
    link = attempt / "result.json"
    link.symlink_to(secret)
    answer = read_result_file(link, batched=False, element_count=1, max_bytes=1 << 20)
    assert answer["result_state"] == "invalid" and "link" in answer["result_error"]
    fifo = attempt / "fifo.json"
    os.mkfifo(fifo)
    answer = read_result_file(fifo, batched=False, element_count=1, max_bytes=1 << 20)
    assert answer["result_state"] == "invalid" and "plain file" in answer["result_error"]


def _settings(**changes: object) -> SimpleNamespace:
    fields: dict[str, object] = {
        "sandbox": "bwrap",
        "sandbox_uid": 65534,
        "sandbox_gid": 65534,
        "sandbox_shared_dirs": [],
        "task_memory_mb": 4096,
        "task_max_processes": 1024,
        "task_max_open_files": 4096,
        "task_cpu_time_s": 86400,
        "task_disk_mb": 10240,
        "task_memory_ceiling_mb": 0,
        "task_disk_ceiling_mb": 0,
        "port": 8000,
        "resolved_public_url": "http://127.0.0.1:8000",
    }
    fields.update(changes)
    return SimpleNamespace(**fields)


def test_limits_come_from_settings_and_requirements_within_the_ceiling() -> None:
    settings = _settings(task_memory_ceiling_mb=8192, task_disk_ceiling_mb=20480)
    assert task_limits(settings, {}) == TaskLimits(4096, 1024, 4096, 86400, 10240)
    asked = {"memory_mb": 6000, "storage_gb": 15}
    assert task_limits(settings, asked) == TaskLimits(6000, 1024, 4096, 86400, 15360)
    assert ceiling_errors(settings, asked) == []
    too_much = {"memory_mb": 9000, "storage_gb": 30}
    assert [name for name, _ in ceiling_errors(settings, too_much)] == ["memory_mb", "storage_gb"]


def test_the_policy_travels_to_the_worker_inside_the_attempt_spec() -> None:
    policy = _policy(shared_dirs=("/srv/shared",), gpu=True, open_ports=(8000,))
    spec = AttemptSpec("job_1", "acct_1", "tsk_1", 0, 1, {"x": 1}, ["true"], 5.0, "ns")
    spec = dataclasses.replace(spec, sandbox=policy)
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert open_ports("http://127.0.0.1:8000") == (8000,)
    assert open_ports("https://api.example.org") == (443,)
    settings = _settings(resolved_public_url="https://api.example.org")
    made = policy_for(settings, {"gpu_count": 1}, "none")
    assert made.open_ports == (443, 8000) and made.gpu and made.network == "none"


def test_the_firewall_rules_close_every_local_port_but_the_open_ones() -> None:
    rules = firewall.ruleset(65534, (8000,), ("10.0.0.2",))
    assert 'meta skuid 65534 oifname "lo" tcp dport { 53, 8000 } accept' in rules
    assert 'meta skuid 65534 oifname "lo" reject' in rules
    assert "ip daddr { 10.0.0.2 } tcp dport != { 8000 }" in rules


def test_bwrap_options_follow_the_mode() -> None:
    common = {"task_dir": "/t", "inner_cwd": "/task/work"}
    privileged = bwrap.bwrap_args(network="host", privileged=True, **common)
    assert "--unshare-user" not in privileged and "--unshare-net" not in privileged
    user = bwrap.bwrap_args(network="none", privileged=False, **common)
    assert {"--unshare-user", "--disable-userns", "--unshare-net"} <= set(user)
    drop = bwrap.drop_privileges("/usr/bin/setpriv", 65534, 65534)
    assert "--no-new-privs" in drop and "--bounding-set=-all" in drop


def test_disk_usage_counts_allocated_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * (1 << 20))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * (1 << 20))
    assert disk_usage(tmp_path) >= 2 << 20


@pytest.fixture(autouse=True)
def _no_stray_signals() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_no_new_user_namespace_and_no_other_abi_in_the_sandbox(attempt: Path) -> None:
    if os.geteuid() != 0 or seccomp.program() is None:
        pytest.skip("SKIPPED LOUDLY: the seccomp filter is for root workers on x86_64")
    code = (
        "import ctypes, os, subprocess, threading\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # CLONE_NEWUSER: EPERM
        "print(libc.unshare(0x00020000), ctypes.get_errno())\n"  # CLONE_NEWNS: no privilege
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"  # clone3 falls back
        "print(subprocess.run(['true']).returncode)\n"
    )
    ran = run_in(attempt, code)
    assert ran.status == "ok", ran
    assert ran.stdout_tail.split("\n")[:3] == ["-1 1", "-1 1", "0"], ran.stdout_tail


def test_a_directory_holding_the_data_dir_is_never_mounted(
    attempt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = bwrap.runtime()[-1]
    monkeypatch.setenv("COMPUTALOT_DATA_DIR", os.path.join(venv, "data"))
    bwrap.exposed_by_runtime.cache_clear()
    try:
        assert bwrap.exposed_by_runtime() == (venv, "the platform's data directory")
        with pytest.raises(SandboxUnavailable, match="data directory"):
            TaskSandbox(_policy(network="none"), attempt, attempt.name)
        bwrap.exposed_by_runtime.cache_clear()
        monkeypatch.setenv("COMPUTALOT_DATA_DIR", str(attempt.parent / "data"))
        shared = _policy(network="none", shared_dirs=(str(attempt.parent),))
        with pytest.raises(SandboxUnavailable, match=str(attempt.parent)):
            TaskSandbox(shared, attempt, attempt.name)
    finally:
        monkeypatch.delenv("COMPUTALOT_DATA_DIR")
        bwrap.exposed_by_runtime.cache_clear()


HOLDER = """
import sys, time
from computalot.sandbox import firewall
print(firewall.hold_api_ports([int(p) for p in sys.argv[1:]]), flush=True)
time.sleep(600)
"""


def _another_platform(*ports: int) -> subprocess.Popen[str]:
    """A process holding ``ports`` as a platform's dispatcher does, until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, ports)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == str(sorted(ports))
    return holder


def test_the_live_api_ports_are_those_a_live_process_of_this_uid_holds() -> None:
    port = 40000 + os.getpid() % 20000
    held = Path(tempfile.gettempdir()) / firewall.PORTS_DIR / str(port)
    assert port not in firewall.live_api_ports()
    holder = _another_platform(port)
    try:
        assert port in firewall.live_api_ports()
        assert port in firewall.live_api_ports()  # a probe leaves the holder's lock as it was
        assert held.exists()
    finally:
        holder.kill()
        holder.wait()
    assert held.exists()  # until a probe finds nobody holding it, and removes it
    assert port not in firewall.live_api_ports()
    assert not held.exists()


def test_a_holder_that_opened_a_file_a_probe_then_removed_holds_a_new_one() -> None:
    """The race a probe's clean-up could lose a platform in: the holder opens the file, a probe
    (holding it exclusively, as nobody else does yet) unlinks it; the holder must not end up
    locking the unlinked file, which no later probe would see."""
    port = 40002 + os.getpid() % 20000
    firewall.hold_api_ports([])  # makes the folder
    path = Path(tempfile.gettempdir()) / firewall.PORTS_DIR / str(port)
    probe_fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(probe_fd, fcntl.LOCK_EX)
    got: list[int | None] = []
    holder = threading.Thread(target=lambda: got.append(firewall._hold(path, 5.0)))
    holder.start()
    time.sleep(0.3)  # the holder has opened the file and waits for its lock
    os.unlink(path)  # what the probe does, still holding the lock
    os.close(probe_fd)
    holder.join(timeout=10)
    (fd,) = got
    assert fd is not None
    try:
        # A file with a name, that name's (the inode number may be the freed one's again).
        assert os.fstat(fd).st_nlink == 1 and os.fstat(fd).st_ino == path.stat().st_ino
        assert port in firewall.live_api_ports()
    finally:
        os.close(fd)
    assert port not in firewall.live_api_ports()


def test_a_held_port_file_of_another_uid_opens_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: making a file of another uid needs root")
    folder = Path(tempfile.gettempdir()) / firewall.PORTS_DIR
    port = 40001 + os.getpid() % 20000
    firewall.hold_api_ports([])  # makes the folder
    planted = folder / str(port)
    fd = os.open(planted, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.fchown(fd, 65534, 65534)
        fcntl.flock(fd, fcntl.LOCK_SH)  # "held", but by a file that is not ours
        assert port not in firewall.live_api_ports()
    finally:
        os.close(fd)
        planted.unlink()


def test_another_platform_on_the_host_keeps_its_api_open_to_its_tasks(attempt: Path) -> None:
    """Tasks of two platforms run as one uid under one table: each table installed opens the
    API ports of every live platform on the host, and only theirs."""
    if os.geteuid() != 0 or firewall.nft_path() is None:
        pytest.skip("SKIPPED LOUDLY: the firewall needs root and nft")
    with (
        socket.create_server(("127.0.0.1", 0)) as ours,
        socket.create_server(("127.0.0.1", 0)) as theirs,
        socket.create_server(("127.0.0.1", 0)) as internal,
    ):
        ports = [s.getsockname()[1] for s in (ours, theirs, internal)]
        code = (
            "import socket\n"
            f"for port in {ports}:\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
            "        print(port, 'open')\n"
            "    except OSError:\n"
            "        print(port, 'refused')\n"
        )
        holder = _another_platform(ports[1])
        try:
            seen = run_in(attempt, code, open_ports=(ports[0],))
        finally:
            holder.kill()
            holder.wait()
        assert seen.status == "ok", seen
        assert seen.stdout_tail.split("\n")[:3] == [
            f"{ports[0]} open",
            f"{ports[1]} open",
            f"{ports[2]} refused",
        ]
        # That platform gone, the next task's table closes its port again.
        again = attempt.parent / f"{attempt.name}-again"
        (again / "work").mkdir(parents=True)
        after = run_in(again, code, open_ports=(ports[0],))
        assert after.stdout_tail.split("\n")[:3] == [
            f"{ports[0]} open",
            f"{ports[1]} refused",
            f"{ports[2]} refused",
        ]
