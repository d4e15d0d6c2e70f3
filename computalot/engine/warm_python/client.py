"""The worker's side of warm Python runners: its zygotes and the processes forked from them.

A Ray worker keeps one zygote (``zygote_source``) per interpreter, preload list and
interpreter-relevant environment (``PYTHON*``, ``LANG``, ``LC_*``): a worker runs one
revision's tasks (its runtime_env), one at a time, so this is one zygote per worker process
and revision. A zygote is started on the first task that can use it, replaced when it died,
and dies with the worker (its control socket reaches EOF; the reaper kills the task's group).

:meth:`Zygote.start` returns a :class:`ForkedProcess`: the ``subprocess.Popen`` surface
``engine.runner`` uses (``pid``, ``stdout``, ``stderr``, ``returncode``, ``poll``, ``wait``),
for a process that is the zygote's child, not the worker's. Its exit status comes over the
control socket; it is reaped only once :meth:`ForkedProcess.wait` says so, so its pid (and
process group) cannot be reused while the runner may still signal it.

A sandboxed task's zygote lives in a warm sandbox (``sandbox.warm``): :func:`claim_sandboxed`
takes it for one attempt (:class:`SandboxClaim`), whose files go into the sandbox's slot, and
gives it back cleaned once the attempt's result was read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from computalot.engine.warm_python.command import WarmCommand
from computalot.engine.warm_python.learned import LEARNED, MAX_RESTARTS, MAX_RSS_MB, Learned
from computalot.sandbox.policy import SandboxPolicy
from computalot.sandbox.task import SandboxUnavailable
from computalot.sandbox.warm import WarmLease, WarmSandbox, confinement_key

log = logging.getLogger("computalot.warm_python")

SOURCE = (Path(__file__).parent / "zygote_source.py").read_text()
#: Environment a zygote starts with when the task sets it: it decides how the interpreter starts.
STARTUP_ENV = ("PATH", "LANG", "PYTHONUNBUFFERED")
START_TIMEOUT_S = 120.0  # a zygote's first answer (its preloads) must come within this
MAX_ZYGOTES = 4  # per worker process; the least recently used beyond it is stopped
#: A zygote with no task for this long exits (the next task of its revision starts another).
IDLE_S = 300.0
CLEAN_TIMEOUT_S = 10.0  # a sandboxed zygote's answer to ``clean`` (emptying its /tmp)


def startup_env(env: dict[str, str]) -> dict[str, str]:
    """The part of a task's environment its interpreter reads at start-up (the zygote's)."""
    return {k: v for k, v in env.items() if k in STARTUP_ENV or k.startswith(("PYTHON", "LC_"))}


class ForkedProcess:
    """A task process forked by a zygote; see the module doc."""

    def __init__(self, zygote: Zygote, pid: int, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self.zygote = zygote
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self.reaped = False

    def poll(self) -> int | None:
        """The exit status once the zygote reported it, without blocking."""
        if self.returncode is None:
            self.returncode = self.zygote.status(block=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until it ended, then let the zygote reap it (the pid may be reused after)."""
        while self.returncode is None:
            self.returncode = self.zygote.status(block=True)
        if not self.reaped:
            self.reaped = True
            self.zygote.reap()
            if self.zygote.imported:  # what the task imported beyond the zygote's modules
                LEARNED.add(self.zygote.learn_key, self.zygote.imported)
            if self.zygote.sandbox is None:  # a sandbox's claim gives it back once cleaned
                self.zygote.lock.release()  # taken by start_forked: the next task may use it
        return self.returncode

    def communicate(self) -> tuple[None, None]:
        self.wait()
        for stream in (self.stdout, self.stderr):
            stream.close()
        return None, None


class Zygote:
    """One warm interpreter and its control socket; used by one task at a time."""

    def __init__(
        self,
        interpreter: str,
        preload: tuple[str, ...],
        env: dict[str, str],
        sandbox: WarmSandbox | None = None,
        learned: tuple[str, ...] = (),
    ) -> None:
        self.interpreter = interpreter
        self.sandbox = sandbox
        self.learned = learned  # the learned modules it was started with (``learned``)
        self.learn_key = Learned.key(interpreter, preload)
        self.imported: list[str] = []  # what its last task reported having imported
        self.restarts = 0
        self.lock = threading.Lock()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = mine
        home = tempfile.gettempdir()  # no import root of any project (a sandbox's own /tmp)
        argv = [
            interpreter,
            "-c",
            SOURCE,
            str(theirs.fileno()),
            json.dumps(list(preload)),
            "0" if sandbox is not None else str(os.getpid()),  # its parent, when it is us
            str(IDLE_S),
            json.dumps(list(learned)),
            str(MAX_RSS_MB),
        ]
        try:
            if sandbox is not None:
                self.proc = sandbox.popen(argv, {"HOME": "/tmp", **env}, (theirs.fileno(),))
            else:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=home,
                    env={"HOME": home, **env},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=None,  # the worker's log: failed preloads are said there
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self.pending = False  # a child whose status has not been read yet

    def alive(self) -> bool:
        return self.proc.poll() is None

    def start(
        self, command: WarmCommand, cwd: Path | str, env: dict[str, str], rlimits: list[Any]
    ) -> ForkedProcess:
        """Fork a child running ``command``; raises ``OSError`` when the zygote is gone."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = {
            "interpreter": command.interpreter_arg,
            "script": command.script,
            "module": command.module,
            "argv": list(command.argv),
            "cwd": str(cwd),
            "env": env,
            "rlimits": [list(r) for r in rlimits],
        }
        try:
            socket.send_fds(self.control, [json.dumps(request).encode()], [out_w, err_w])
            self.control.settimeout(START_TIMEOUT_S)
            answer = json.loads(self.control.recv(4096) or b"{}")
        except BaseException as exc:  # also an interrupt (a Ray cancel) half-way through
            os.close(out_r)
            os.close(err_r)
            self.kill()  # its state is unknown now; a forked child dies with it
            if not isinstance(exc, Exception):
                raise
            raise OSError(f"warm interpreter unavailable: {exc}") from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        if "pid" not in answer:
            os.close(out_r)
            os.close(err_r)
            raise OSError(f"warm interpreter refused the task: {answer.get('error')}")
        self.pending = True
        pid = int(answer["pid"])
        if self.sandbox is not None:
            try:
                pid = self.sandbox.host_pid(pid)
            except OSError:
                os.close(out_r)
                os.close(err_r)
                self.kill()
                raise
        stdout = open(out_r, "rb", buffering=0)  # noqa: SIM115 (closed by the runner, as Popen's)
        stderr = open(err_r, "rb", buffering=0)  # noqa: SIM115
        return ForkedProcess(self, pid, stdout, stderr)

    def status(self, *, block: bool) -> int | None:
        """The running child's exit status, when the zygote sent it."""
        try:
            self.control.settimeout(None if block else 0.0)
            data = self.control.recv(1 << 16)
        except (BlockingIOError, TimeoutError):
            return None
        except OSError:
            data = b""
        if not data:  # the zygote died; its child died with it or is killed by its group
            self.pending = False
            return -9
        answer = json.loads(data)
        imported = answer.get("imported")
        self.imported = imported if isinstance(imported, list) else []
        return int(answer["status"])

    def reap(self) -> None:
        self.pending = False
        with contextlib.suppress(OSError):
            self.control.send(b"reap")

    def clean(self) -> bool:
        """A sandboxed zygote empties its sandbox's /tmp and /dev/shm; False if it did not."""
        try:
            self.control.settimeout(CLEAN_TIMEOUT_S)
            self.control.send(b"clean")
            return self.control.recv(64) == b"clean"
        except OSError:
            return False

    def kill(self) -> None:
        """Kill it (and a sandbox's every process); a sandbox's slot keeps its files."""
        with contextlib.suppress(OSError):
            self.control.close()
        if self.sandbox is not None:
            self.sandbox.kill()
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """:meth:`kill`, and a sandbox is given up with its slot."""
        self.kill()
        if self.sandbox is not None:
            self.sandbox.stop()


class Zygotes:
    """This worker process's zygotes by (interpreter, preload, start-up environment)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: dict[tuple[Any, ...], Zygote] = {}

    def get(
        self,
        command: WarmCommand,
        preload: tuple[str, ...],
        env: dict[str, str],
        sandbox: tuple[SandboxPolicy, Callable[[], Path]] | None = None,
    ) -> Zygote:
        """The zygote for ``command``'s interpreter, ``preload`` and start-up environment,
        started if there is none (or it died). ``sandbox``: (the task's policy, a function
        giving a new slot directory) for a zygote in a warm sandbox."""
        wanted = startup_env(env)
        confined = confinement_key(sandbox[0]) if sandbox is not None else None
        key = (command.interpreter, preload, tuple(sorted(wanted.items())), confined)
        learned = LEARNED.names(Learned.key(command.interpreter, preload))
        with self.lock:
            zygote = self.by_key.pop(key, None)
            restarts = 0
            if zygote is not None and not zygote.alive() and zygote.lock.acquire(blocking=False):
                if zygote.proc.returncode != 0:  # 0: it exited after IDLE_S without a task
                    log.warning("warm interpreter %s died; starting another", command.interpreter)
                zygote.stop()
                zygote = None
            elif (
                zygote is not None
                and zygote.restarts < MAX_RESTARTS
                and not set(learned) <= set(zygote.learned)
                and zygote.lock.acquire(blocking=False)
            ):  # the revision's tasks import more than it did: a new one imports it too
                restarts = zygote.restarts + 1
                zygote.stop()
                zygote = None
            if zygote is None:
                warm = None
                if sandbox is not None:
                    warm = WarmSandbox(sandbox[0], sandbox[1]())
                zygote = Zygote(command.interpreter, preload, wanted, warm, learned)
                zygote.restarts = restarts
            self.by_key[key] = zygote  # most recently used last
            for old_key in list(self.by_key)[:-1]:
                if len(self.by_key) <= MAX_ZYGOTES:
                    break
                old = self.by_key[old_key]
                if old.lock.acquire(blocking=False):  # one in use is left alone
                    self.by_key.pop(old_key).stop()
            return zygote

    def drop(self, zygote: Zygote) -> None:
        """Stop ``zygote`` (broken) and forget it; its lock is held by the caller."""
        with self.lock:
            for key, found in list(self.by_key.items()):
                if found is zygote:
                    del self.by_key[key]
        zygote.stop()

    def stop_all(self) -> None:
        with self.lock:
            for zygote in self.by_key.values():
                zygote.stop()
            self.by_key.clear()


ZYGOTES = Zygotes()


def start_forked(
    command: WarmCommand,
    preload: tuple[str, ...],
    cwd: Path,
    env: dict[str, str],
    rlimits: list[Any],
) -> ForkedProcess | None:
    """The task started in a child of this worker's zygote, or None when none can take it now
    (busy with another task of this process, or it died and its replacement failed too): the
    caller then starts a fresh process."""
    for _try in range(2):
        zygote = ZYGOTES.get(command, preload, env)
        if not zygote.lock.acquire(blocking=False):
            return None
        try:
            forked = zygote.start(command, cwd, env, rlimits)
        except OSError as exc:
            zygote.lock.release()
            log.warning("warm interpreter could not start a task: %s", exc)
            zygote.stop()
            continue
        return forked
    return None


class SandboxClaim:
    """One attempt's hold on a sandboxed zygote (see :func:`claim_sandboxed`): ``lease`` is the
    attempt's sandbox for ``engine.run_task`` / ``engine.runner``; :meth:`finish` gives the
    zygote back once the attempt's files were read."""

    def __init__(self, zygote: Zygote, lease: WarmLease) -> None:
        self.zygote = zygote
        self.lease = lease
        self.process: ForkedProcess | None = None
        self.broken = False
        lease.start = self.start
        lease.closing = self.close

    @property
    def directory(self) -> Path:
        return self.lease.attempt_dir

    def start(
        self, command: WarmCommand, cwd: str, env: dict[str, str], rlimits: list[Any]
    ) -> ForkedProcess | None:
        """The command forked in the sandbox (``cwd`` as seen inside), or None when the zygote
        could not take it (the caller runs it in a fresh sandbox over the same slot)."""
        self.lease.hand_over()
        env = {**env, "PWD": cwd}  # bubblewrap sets it for a fresh sandbox's command
        try:
            self.process = self.zygote.start(command, cwd, env, rlimits)
        except OSError as exc:
            log.warning("warm sandbox could not start a task: %s", exc)
            self.broken = True
            return None
        return self.process

    def close(self) -> None:
        """The task ended: kill what it left, have the zygote empty /tmp and /dev/shm. A zygote
        that cannot be made clean is killed with its sandbox (:meth:`finish` replaces it)."""
        unreaped = self.process is not None and not self.process.reaped
        if self.broken or unreaped or not self.zygote.alive():
            self.broken = True
            self.zygote.kill()
            return
        clean = self.zygote.sandbox is not None and self.zygote.sandbox.kill_tasks()
        if not clean or (self.process is not None and not self.zygote.clean()):
            log.warning("warm sandbox could not be cleaned after a task; stopping it")
            self.broken = True
            self.zygote.kill()

    def finish(self, trash_parent: Path, remove: Callable[[Path], None]) -> None:
        """After the attempt's files were read: empty the slot (or give up a broken sandbox)
        and let the next attempt have the zygote."""
        try:
            self.lease.close()  # if the attempt ended before its command ran
            sandbox = self.zygote.sandbox
            if self.broken or sandbox is None:
                ZYGOTES.drop(self.zygote)
            else:
                sandbox.empty_slot(trash_parent, remove)
        finally:
            self.zygote.lock.release()


def claim_sandboxed(
    command: WarmCommand,
    preload: tuple[str, ...],
    env: dict[str, str],
    policy: SandboxPolicy,
    new_slot: Callable[[], Path],
) -> SandboxClaim | None:
    """This worker's warm sandbox for ``command`` (made with a slot from ``new_slot`` if there
    is none), taken for one attempt; None when it is busy, or when the node cannot make one
    (the attempt then runs in a fresh sandbox, which says why if it cannot either)."""
    try:
        zygote = ZYGOTES.get(command, preload, env, (policy, new_slot))
    except (OSError, SandboxUnavailable) as exc:
        log.warning("warm sandbox unavailable: %s", exc)
        return None
    if not zygote.lock.acquire(blocking=False):
        return None
    assert zygote.sandbox is not None
    try:
        lease = WarmLease(zygote.sandbox, policy)
    except OSError as exc:  # e.g. cgroup v1 refusing a memory limit below what it holds
        log.warning("warm sandbox cannot take this task's limits: %s", exc)
        zygote.lock.release()
        return None
    return SandboxClaim(zygote, lease)
