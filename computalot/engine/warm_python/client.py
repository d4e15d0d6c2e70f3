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
from pathlib import Path
from typing import IO, Any

from computalot.engine.warm_python.command import WarmCommand

log = logging.getLogger("computalot.warm_python")

SOURCE = (Path(__file__).parent / "zygote_source.py").read_text()
#: Environment a zygote starts with when the task sets it: it decides how the interpreter starts.
STARTUP_ENV = ("PATH", "LANG", "PYTHONUNBUFFERED")
START_TIMEOUT_S = 120.0  # a zygote's first answer (its preloads) must come within this
MAX_ZYGOTES = 4  # per worker process; the least recently used beyond it is stopped
#: A zygote with no task for this long exits (the next task of its revision starts another).
IDLE_S = 300.0


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
            self.zygote.lock.release()  # taken by start_forked: the next task may use it
        return self.returncode

    def communicate(self) -> tuple[None, None]:
        self.wait()
        for stream in (self.stdout, self.stderr):
            stream.close()
        return None, None


class Zygote:
    """One warm interpreter and its control socket; used by one task at a time."""

    def __init__(self, interpreter: str, preload: tuple[str, ...], env: dict[str, str]) -> None:
        self.interpreter = interpreter
        self.lock = threading.Lock()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = mine
        home = tempfile.gettempdir()  # no import root of any project
        try:
            self.proc = subprocess.Popen(
                [
                    interpreter,
                    "-c",
                    SOURCE,
                    str(theirs.fileno()),
                    json.dumps(list(preload)),
                    str(os.getpid()),
                    str(IDLE_S),
                ],
                cwd=home,
                env={"HOME": home, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None,  # the worker's log: failed preloads are said there
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.pending = False  # a child whose status has not been read yet

    def alive(self) -> bool:
        return self.proc.poll() is None

    def start(
        self, command: WarmCommand, cwd: Path, env: dict[str, str], rlimits: list[Any]
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
            self.stop()  # its state is unknown now; a forked child dies with it
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
        stdout = open(out_r, "rb", buffering=0)  # noqa: SIM115 (closed by the runner, as Popen's)
        stderr = open(err_r, "rb", buffering=0)  # noqa: SIM115
        return ForkedProcess(self, int(answer["pid"]), stdout, stderr)

    def status(self, *, block: bool) -> int | None:
        """The running child's exit status, when the zygote sent it."""
        try:
            self.control.settimeout(None if block else 0.0)
            data = self.control.recv(4096)
        except (BlockingIOError, TimeoutError):
            return None
        except OSError:
            data = b""
        if not data:  # the zygote died; its child died with it or is killed by its group
            self.pending = False
            return -9
        return int(json.loads(data)["status"])

    def reap(self) -> None:
        self.pending = False
        with contextlib.suppress(OSError):
            self.control.send(b"reap")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()


class Zygotes:
    """This worker process's zygotes by (interpreter, preload, start-up environment)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: dict[tuple[Any, ...], Zygote] = {}

    def get(self, command: WarmCommand, preload: tuple[str, ...], env: dict[str, str]) -> Zygote:
        wanted = startup_env(env)
        key = (command.interpreter, preload, tuple(sorted(wanted.items())))
        with self.lock:
            zygote = self.by_key.pop(key, None)
            if zygote is not None and not zygote.alive():
                if zygote.proc.returncode != 0:  # 0: it exited after IDLE_S without a task
                    log.warning("warm interpreter %s died; starting another", command.interpreter)
                zygote.stop()
                zygote = None
            if zygote is None:
                zygote = Zygote(command.interpreter, preload, wanted)
            self.by_key[key] = zygote  # most recently used last
            while len(self.by_key) > MAX_ZYGOTES:
                oldest = next(iter(self.by_key))
                self.by_key.pop(oldest).stop()
            return zygote

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
