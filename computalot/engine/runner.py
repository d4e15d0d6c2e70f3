"""Run one task attempt's user command as a child process (docs/llms-full.md, "Runner protocol";
stop semantics: "Timeouts, retries and cancel").

The command is untrusted user code, so it runs in its own session and process group (timeouts and
cancels kill everything it spawned with ``os.killpg``), under rlimits (it cannot eat the node),
watched by the worker's reaper (its group dies with the worker, see ``engine/reaper``) and with
an explicit, minimal environment (no platform secret leaks). One thread multiplexes both pipes
and a pidfd with a selector: there are no reader threads to leak when a stray grandchild keeps a
pipe open, and the exit is seen at once, so a fast command pays no polling latency. What it
prints is read by ``engine.runner_output``; ``on_event`` is only ever called from the calling
thread.
Linux only; no Ray needed (``run_task`` calls this inside a Ray task).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from computalot.engine.reaper import REAPER
from computalot.engine.runner_output import TAIL_CHARS, OnEvent, Output
from computalot.engine.warm_python import ForkedProcess, start_forked, warm_command
from computalot.sandbox.task import SandboxUnavailable
from computalot.sandbox.warm import WarmLease
from computalot.states import TaskStatus

if TYPE_CHECKING:
    from computalot.sandbox.task import TaskSandbox

log = logging.getLogger(__name__)

#: A started runner: a fresh process, or one forked from a warm interpreter (``warm_python``).
Proc = subprocess.Popen[bytes] | ForkedProcess

POLL_S = 0.05  # upper bound on how late a cancel or timeout is noticed
LIMIT_CHECK_S = 0.25  # how often a sandbox's limits (memory, disk) are looked at
CPU_KILL_SLACK_S = 5  # RLIMIT_CPU: SIGXCPU at the limit, SIGKILL this much later
SIGNAL_EXIT = 128  # a sandbox exits 128 + N when its command was killed by signal N
DRAIN_TIMEOUT_S = 1.0  # after the group is dead: wait this long for pipe EOF (escaped grandchild)
INTERRUPT_GRACE_S = 1.0  # SIGTERM grace when run_command itself is interrupted


@dataclass
class RunLimits:
    """Per-process rlimits; ``None`` leaves a limit as inherited. Sizes in MiB."""

    memory_mb: int | None = None  # RLIMIT_AS (address space, not RSS)
    max_file_mb: int | None = 4096  # RLIMIT_FSIZE: largest file the command may write
    max_open_files: int | None = 4096  # RLIMIT_NOFILE
    cpu_time_s: int | None = None  # RLIMIT_CPU, per process


@dataclass
class RunOutcome:
    """How one attempt ended. Valid progress lines are not part of the tails."""

    exit_code: int | None  # None: never started; -N: killed by signal N (Popen.returncode)
    #: ok | exit_nonzero | timeout | cancelled | spawn_failed | killed, or the limit a sandboxed
    #: task crossed: memory_limit | process_limit | cpu_time_limit | disk_limit
    status: str
    error: str | None  # one human sentence, None when status is "ok"
    stdout_tail: str  # last TAIL_CHARS characters
    stderr_tail: str
    output_tail: str  # stdout and stderr lines interleaved in arrival order
    duration_s: float
    last_progress: dict[str, Any] | None


DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def runtime_path(path: str | None = None) -> str:
    """The runner's PATH: the worker's own ``PATH`` with the runtime's interpreter first.

    A ``python`` runtime is the Python environment the Ray worker runs in: the cluster's virtual
    environment, or the one Ray built for the revision's pip requirements. Ray activates the
    latter for the worker; this does the same for the child in both cases, so ``python3`` in a
    ``runner_command`` is that interpreter, with its packages — not whatever comes first on the
    operator's ``PATH`` (a different Python, a version-manager shim costing 100+ ms per start).
    Outside a virtual environment ``PATH`` is left as it is.
    """
    path = path if path is not None else (os.environ.get("PATH") or DEFAULT_PATH)
    bindir = os.path.dirname(sys.executable)
    if sys.prefix == sys.base_prefix or not bindir:
        return path
    rest = [entry for entry in path.split(os.pathsep) if entry and entry != bindir]
    return os.pathsep.join([bindir, *rest])


#: The devices Ray assigned to the task (``requirements.gpu_count`` → ``num_gpus``): Ray sets
#: these in the worker's environment for each task ("" for a task given none), and the task's
#: command sees the same (docs/llms-full.md, "Environment").
DEVICE_VARS = ("CUDA_VISIBLE_DEVICES",)


def base_env(extra: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """A minimal child environment: PATH, HOME (default ``cwd``), LANG, PYTHONUNBUFFERED, the
    task's assigned devices (:data:`DEVICE_VARS`) + extra.

    Nothing else is taken from ``os.environ``, so RAY_*, COMPUTALOT_* and cloud credentials of the
    worker never reach user code (docs/llms-full.md, "Environment"). PYTHONUNBUFFERED makes progress lines arrive live.
    ``PATH`` is :func:`runtime_path`.
    """
    env = {
        "PATH": runtime_path(),
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({name: os.environ[name] for name in DEVICE_VARS if name in os.environ})
    env.update(extra)
    return env


def _rlimit_plan(limits: RunLimits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) triples, clamped to the current hard limit so setting them cannot
    fail; CPU time gets a hard limit a little above the soft one (SIGXCPU first, then SIGKILL)."""
    wanted = [
        (resource.RLIMIT_AS, None if limits.memory_mb is None else limits.memory_mb << 20),
        (resource.RLIMIT_FSIZE, None if limits.max_file_mb is None else limits.max_file_mb << 20),
        (resource.RLIMIT_NOFILE, limits.max_open_files),
    ]
    plan = []
    for res, value in wanted:
        if value is not None:
            hard = resource.getrlimit(res)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            plan.append((res, value, value))
    if limits.cpu_time_s:
        plan.append((resource.RLIMIT_CPU, limits.cpu_time_s, limits.cpu_time_s + CPU_KILL_SLACK_S))
    return plan


def _resolve_failure(argv0: str, cwd: Path, env: Mapping[str, str]) -> tuple[int, str] | None:
    """(exit code, error) when ``argv0`` cannot be executed, checked before spawning."""
    if "/" in argv0:
        target = Path(argv0) if argv0.startswith("/") else cwd / argv0
        if not target.exists():
            return 127, f"runner command not found: {argv0!r}"
        if target.is_dir() or not os.access(target, os.X_OK):
            return 126, f"runner command not executable: {argv0!r}"
    else:
        found = shutil.which(argv0, path=env.get("PATH", os.defpath))
        if found is None:
            return 127, f"runner command not found: {argv0!r}"
        target = Path(found)
    try:
        with target.open("rb") as fh:
            magic = fh.read(4)
    except OSError:
        return None  # let exec report it
    if not (magic.startswith(b"#!") or magic == b"\x7fELF"):
        return 126, f"runner command could not start: {argv0!r}: Exec format error"
    return None


def _apply_limits(pid: int, plan: list[tuple[int, int, int]]) -> None:
    """Set each limit of ``plan`` on ``pid``; one that is refused does not keep the others from
    being set (it is logged). A process already gone has nothing to limit."""
    for res, soft, hard in plan:
        try:
            resource.prlimit(pid, res, (soft, hard))
        except ProcessLookupError:
            return
        except PermissionError as exc:
            log.warning("could not set rlimit %d on runner process %d: %s", res, pid, exc)


class _Run:
    """State of one running child; every method runs in the thread that called run_command."""

    def __init__(
        self,
        proc: Proc,
        on_event: OnEvent | None,
        sandbox: TaskSandbox | None = None,
    ) -> None:
        self.proc = proc
        self.sandbox = sandbox
        self.limit_error: str | None = None  # set with reason = a limit's failure code
        self.next_limit_check = time.monotonic() + LIMIT_CHECK_S
        #: "timeout" | "cancelled" | a limit's failure code, once we started stopping it
        self.reason: str | None = None
        self.sel = selectors.DefaultSelector()
        self.out = Output(proc, on_event, self.sel)
        self.pidfd: int | None = None
        try:
            self.pidfd = os.pidfd_open(proc.pid)
            self.sel.register(self.pidfd, selectors.EVENT_READ, None)
        except (OSError, AttributeError):  # pragma: no cover - kernel < 5.3: poll with backoff
            pass

    def exited(self) -> bool:
        """True once the child is dead; WNOWAIT keeps it unreaped so its pgid cannot be reused
        (a forked one is the zygote's child: the zygote says when it ended and keeps it unreaped
        until ``wait``)."""
        if isinstance(self.proc, ForkedProcess):
            return self.proc.poll() is not None
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.proc.pid, flags) is not None
        except ChildProcessError:
            return True

    def killpg(self, sig: int) -> None:
        """Signal the runner's processes. In a sandbox SIGTERM goes to the task's own processes
        but not to bubblewrap (whose death would SIGKILL them at once, leaving no grace)."""
        sandbox = self.sandbox
        if sig == signal.SIGTERM and sandbox is not None and sandbox.terminate(self.proc.pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    @property
    def returncode(self) -> int:
        """The command's exit status as ``Popen`` reports it (``-N``: killed by signal N).

        In a sandbox the command is bubblewrap's child, and bubblewrap exits ``128 + N`` when
        its child was killed by signal N: that is turned back into ``-N``.
        """
        rc = self.proc.returncode
        assert rc is not None  # only read once the process ended
        forked = isinstance(self.proc, ForkedProcess)  # no bubblewrap between: the real status
        if self.sandbox is not None and not forked and SIGNAL_EXIT < rc < SIGNAL_EXIT + signal.NSIG:
            return SIGNAL_EXIT - rc
        return rc

    def check_limits(self, now: float) -> None:
        """A sandboxed task over a limit (memory, disk) is killed at once, no grace."""
        if self.sandbox is None or self.reason is not None or now < self.next_limit_check:
            return
        self.next_limit_check = now + LIMIT_CHECK_S
        breach = self.sandbox.breach()
        if breach is not None:
            self.reason, self.limit_error = breach
            self.killpg(signal.SIGKILL)

    def loop(self, timeout_s: float, cancel: threading.Event | None, grace_s: float) -> None:
        """Pump output until the child exits, escalating SIGTERM → SIGKILL on timeout/cancel."""
        deadline = time.monotonic() + timeout_s
        kill_at = math.inf
        backoff_s = 0.0005
        while not self.exited():
            now = time.monotonic()
            self.check_limits(now)
            if self.reason is None:
                if cancel is not None and cancel.is_set():
                    self.reason = TaskStatus.CANCELLED
                elif now >= deadline:
                    self.reason = "timeout"
                if self.reason is not None:
                    self.killpg(signal.SIGTERM)
                    kill_at = now + grace_s
            elif now >= kill_at:
                self.killpg(signal.SIGKILL)
                kill_at = math.inf
            wait_s = min(POLL_S, kill_at - now, deadline - now if self.reason is None else POLL_S)
            if self.sandbox is not None and self.reason is None:
                wait_s = min(wait_s, self.next_limit_check - now)
            if self.out.any_pending():
                wait_s = min(wait_s, self.out.next_flush - now)
            if self.pidfd is None and not self.out.any_open():
                wait_s, backoff_s = min(wait_s, backoff_s), min(backoff_s * 2, POLL_S)
            for key, _ in self.sel.select(max(wait_s, 0.0)):
                if key.data is not None:
                    self.out.read(key.data)
            if time.monotonic() >= self.out.next_flush:
                self.out.flush()

    def interrupt(self, grace_s: float) -> None:
        """run_command was interrupted (e.g. Ray cancel): stop the group without pumping output."""
        self.killpg(signal.SIGTERM)
        end = time.monotonic() + grace_s
        while not self.exited() and time.monotonic() < end:
            time.sleep(0.01)

    def finish(self, drain: bool) -> None:
        """Kill leftovers of the group, reap the child, read what is left, release every fd."""
        self.killpg(signal.SIGKILL)
        self.proc.wait()
        REAPER.release(self.proc.pid)
        if self.pidfd is not None:
            self.sel.unregister(self.pidfd)
            os.close(self.pidfd)
        end = time.monotonic() + DRAIN_TIMEOUT_S
        while drain and self.out.any_open() and time.monotonic() < end:
            for key, _ in self.sel.select(max(end - time.monotonic(), 0.0)):
                self.out.read(key.data)
        for s in self.out.streams:
            if s.open:
                self.out.eof(s, process=drain)
        self.sel.close()
        if drain:
            self.out.flush()


def _spawn(
    argv: list[str], cwd: Path, env: dict[str, str], sandbox: TaskSandbox | None
) -> subprocess.Popen[bytes]:
    """Start the command; in a sandbox it waits (launched, not released) until :func:`_watch`."""
    if sandbox is not None:  # launched ahead (run_task) or now
        return sandbox.proc or sandbox.launch(argv, cwd, env)
    # No preexec_fn (it would make CPython fork instead of vfork): the limits are set right
    # after spawn, and the reaper kills the group if this process dies first.
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _watch(proc: Proc, plan: list[tuple[int, int, int]], sandbox: TaskSandbox | None) -> None:
    """Limit the spawned command and register its group with the reaper (``engine.reaper``);
    a sandbox is released only once its processes carry the limits."""
    if sandbox is None:
        _apply_limits(proc.pid, plan)
    else:
        sandbox.release(lambda pid: _apply_limits(pid, plan))
    REAPER.watch(proc.pid)


def _kill_unwatched(proc: Proc, sandbox: TaskSandbox | None) -> None:
    """Kill a spawned command whose limits or reaper registration failed, with its group (its
    whole sandbox), and reap it."""
    if sandbox is not None:
        sandbox.abort()
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    REAPER.release(proc.pid)


def _spawn_error(exc: BaseException, argv0: str, cwd: Path, started: float) -> RunOutcome:
    """The outcome of a command that could not be started (no process exists)."""
    if isinstance(exc, FileNotFoundError):
        if exc.filename is not None and str(exc.filename) == str(cwd):
            return _spawn_failed(None, "working directory of the task is missing", started)
        return _spawn_failed(127, f"runner command not found: {argv0!r}", started)
    if isinstance(exc, PermissionError):
        return _spawn_failed(126, f"runner command not executable: {argv0!r}", started)
    if isinstance(exc, OSError):  # e.g. ENOEXEC; strerror, not str(exc): no host paths in errors
        return _spawn_failed(
            126, f"runner command could not start: {argv0!r}: {exc.strerror}", started
        )
    return _spawn_failed(None, f"runner process setup failed: {exc}", started)


def _spawn_failed(exit_code: int | None, error: str, started: float) -> RunOutcome:
    duration_s = time.monotonic() - started
    return RunOutcome(exit_code, "spawn_failed", error, "", "", "", duration_s, None)


def _ended(run: _Run, timeout_s: float) -> tuple[str, str | None]:
    rc, reason = run.returncode, run.reason
    if reason is not None:
        if reason in ("timeout", TaskStatus.CANCELLED):
            return (
                reason,
                f"timed out after {timeout_s:g} s" if reason == "timeout" else "cancelled",
            )
        return reason, run.limit_error
    if run.sandbox is not None:
        crossed = run.sandbox.verdict(rc)
        if crossed is not None:
            return crossed
    if rc >= 0:
        return ("ok", None) if rc == 0 else ("exit_nonzero", f"exited with code {rc}")
    try:
        name = signal.Signals(-rc).name
    except ValueError:  # e.g. 33: a valid signal without a name
        name = str(-rc)
    return "killed", f"killed by signal {name}"


def _supervise(
    proc: Proc,
    on_event: OnEvent | None,
    sandbox: TaskSandbox | None,
    timeout_s: float,
    cancel: threading.Event | None,
    kill_grace_s: float,
) -> _Run:
    """Pump the spawned command's output until it exits or is stopped; the finished run."""
    try:
        run = _Run(proc, on_event, sandbox)
    except BaseException:  # e.g. EMFILE for the selector: never leave the child behind
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        REAPER.release(proc.pid)
        raise
    interrupted = True
    try:
        run.loop(timeout_s, cancel, kill_grace_s)
        interrupted = False
    except BaseException:
        run.interrupt(min(kill_grace_s, INTERRUPT_GRACE_S))
        raise
    finally:
        run.finish(drain=not interrupted)
    return run


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    limits: RunLimits | None = None,
    on_event: OnEvent | None = None,
    cancel: threading.Event | None = None,
    kill_grace_s: float = 5.0,
    sandbox: TaskSandbox | None = None,
    warm: tuple[str, ...] | None = None,
) -> RunOutcome:
    """Run ``argv`` in ``cwd`` with exactly ``env``; never raises for the child's own failures.

    ``on_event(kind, data)`` gets ``("progress", {"progress": obj})`` at once for each
    ``COMPUTALOT_PROGRESS:{json}`` stdout line and ``("output", {"stream", "text"})`` coalesced.
    At ``timeout_s`` seconds or when ``cancel`` is set the group gets SIGTERM, then SIGKILL after
    ``kill_grace_s`` seconds. If this function is interrupted (KeyboardInterrupt from a Ray cancel,
    any exception), the group is stopped the same way and the exception propagates.

    With a ``sandbox`` (``computalot.sandbox.task``) the command runs confined: its command line
    wraps ``argv``, the spawn happens inside the task's cgroup, and a limit the task crosses
    ends it with that limit's status. ``cwd`` and ``argv[0]`` are checked on the host side;
    the caller owns the sandbox (and closes it).

    ``warm`` (the revision's ``runtime.preload``; None: off) starts an unconfined
    ``python3 script.py …`` / ``python3 -m module …`` as a child of a warm interpreter that
    imported those modules (``engine.warm_python``); any other command, or a busy or broken
    warm interpreter, falls back to a fresh process. A sandboxed one is warm when ``sandbox``
    is a :class:`~computalot.sandbox.warm.WarmLease` (its warm interpreter lives in the
    sandbox); if it cannot fork the command, a fresh sandbox over the same directory runs it.
    """
    started = time.monotonic()
    failure: tuple[int | None, str] | None
    if not argv:
        failure = None, "runner command is empty"
    elif not cwd.is_dir():
        failure = None, "working directory of the task is missing"
    else:
        failure = _resolve_failure(argv[0], cwd, env)
    if failure is not None:
        if sandbox is not None:  # launched ahead: it must never run
            sandbox.abort()
        return _spawn_failed(failure[0], failure[1], started)
    plan = _rlimit_plan(limits or RunLimits())
    proc: Proc | None = None
    if isinstance(sandbox, WarmLease):  # forked inside its warm sandbox, else a fresh one
        command = warm_command(argv, env.get("PATH", os.defpath))
        if command is not None and sandbox.start is not None:
            proc = sandbox.start(command, sandbox.inner(cwd), env, plan)
        if proc is None:
            try:
                sandbox = sandbox.fallback()
            except (SandboxUnavailable, OSError) as exc:
                return RunOutcome(None, "sandbox_unavailable", str(exc), "", "", "", 0.0, None)
    elif warm is not None and sandbox is None:
        command = warm_command(argv, env.get("PATH", os.defpath))
        if command is not None:
            proc = start_forked(command, warm, cwd, env, plan)
    try:
        proc = proc or _spawn(argv, cwd, env, sandbox)
    except (OSError, subprocess.SubprocessError) as exc:
        return _spawn_error(exc, argv[0], cwd, started)
    try:
        _watch(proc, plan, sandbox)
    except BaseException as exc:
        # The child exists but is not limited or not watched: it must not run on.
        _kill_unwatched(proc, sandbox)
        if not isinstance(exc, Exception):
            raise
        log.warning("runner process %d: setup after spawn failed; killed", proc.pid, exc_info=True)
        detail = type(exc).__name__ + (f": {exc.strerror}" if isinstance(exc, OSError) else "")
        return _spawn_failed(None, f"runner process setup failed: {detail}", started)
    run = _supervise(proc, on_event, sandbox, timeout_s, cancel, kill_grace_s)
    status, error = _ended(run, timeout_s)
    out, err = (s.tail[-TAIL_CHARS:] for s in run.out.streams)
    duration_s = time.monotonic() - started
    both = run.out.output_tail[-TAIL_CHARS:]
    rc = run.returncode
    return RunOutcome(rc, status, error, out, err, both, duration_s, run.out.last_progress)
