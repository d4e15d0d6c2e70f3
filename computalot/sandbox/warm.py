"""Warm sandboxes: a bubblewrap sandbox that outlives its tasks, for warm Python runners
(docs/sandbox.md, "Warm runners in the sandbox"; ``engine.warm_python``).

A fresh sandboxed task pays for bubblewrap's namespaces and mounts *and* for a new interpreter
importing its modules. A warm sandbox is built once per worker process and revision: its command
is the warm interpreter (the zygote), and its ``/task`` is one fixed host directory, the *slot*.
Each attempt of that worker is filled into the slot, forked by the zygote inside the sandbox,
and so sees exactly what a fresh sandbox shows it: only its own directory (the slot holds one
attempt at a time; a sibling attempt is another worker's slot, in another sandbox), its own
pid namespace, the task's uid, the same mounts, network and limits.

What one attempt must not leave to the next is taken away between them (:meth:`WarmLease.close`
and :meth:`WarmLease.finish`): every process in the sandbox but its own three (bubblewrap, its
init, the zygote) is killed, the zygote empties the private ``/tmp`` and ``/dev/shm``, and the
slot's entries move out to be deleted off the critical path. The zygote is not dumpable, so a
task cannot trace it or write its memory; a task can only kill it, and the next task then gets
a new sandbox. Limits: the sandbox lives in a cgroup of its own (:class:`cgroups.WarmCgroup`)
whose memory and process caps each attempt sets; the zygote's own pages count in it, as a fresh
interpreter's imports would.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from computalot.sandbox import bwrap, cgroups, seccomp
from computalot.sandbox.policy import SandboxPolicy
from computalot.sandbox.task import TaskSandbox, check_node, hand_over, process_tree

KILL_WAIT_S = 2.0  # what a task left must be gone within this, else the sandbox is stopped
_NAMES = itertools.count()


def confinement_key(policy: SandboxPolicy) -> tuple[object, ...]:
    """What a warm sandbox fixes for every task it runs (limits are set per attempt)."""
    return (policy.network, policy.uid, policy.gid, policy.gpu, policy.shared_dirs)


def _ns_pid(pid: int) -> int | None:
    """``pid``'s id in its innermost pid namespace (``NSpid``), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat``'s fields after the command name (state, parent, …); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _zombie(pid: int) -> bool:
    """A process that ended and waits to be reaped (by the zygote, at ``clean``), or is gone."""
    fields = _stat(pid)
    return not fields or fields[0] == "Z"


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


class WarmSandbox:
    """One long-lived sandbox and its slot directory; see the module doc."""

    def __init__(self, policy: SandboxPolicy, slot: Path) -> None:
        self.bwrap, self.setpriv = check_node(policy)
        self.policy = policy
        self.slot = slot
        self.root = os.geteuid() == 0
        self.uid = policy.uid if self.root else os.geteuid()
        self.gid = policy.gid if self.root else os.getegid()
        layout = cgroups.layout()
        name = f"warm-{slot.name}"
        self.cgroup = cgroups.WarmCgroup(layout, name) if layout is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.own: frozenset[int] = frozenset()  # bubblewrap, its init and the zygote (host pids)

    def popen(
        self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...]
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (the zygote) as the sandbox's command, in the slot at ``/task``."""
        self.slot.mkdir(mode=0o700, exist_ok=True)
        hand_over(self.slot, self.uid, self.gid)
        seccomp_fd = seccomp.program_fd() if self.root else None
        options = [] if seccomp_fd is None else ["--seccomp", str(seccomp_fd)]
        options += bwrap.bwrap_args(
            task_dir=str(self.slot),
            inner_cwd=bwrap.INNER_TASK,
            network=self.policy.network,
            privileged=self.root,
            gpu=self.policy.gpu,
            shared=self.policy.shared_dirs,
        )
        # The zygote is the namespace's pid 1, as bubblewrap's init is in a fresh sandbox: a
        # task sees as many processes, and cannot signal it (pid 1 ignores its namespace's).
        options.append("--as-pid-1")
        drop = []
        if self.setpriv is not None:
            drop = bwrap.drop_privileges(self.setpriv, self.policy.uid, self.policy.gid)
        prefix = self.cgroup.join_prefix() if self.cgroup is not None else []
        passed = pass_fds if seccomp_fd is None else (*pass_fds, seccomp_fd)
        try:
            self.proc = subprocess.Popen(
                [*prefix, self.bwrap, *options, "--", *drop, *argv],
                cwd=self.slot,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None,  # the worker's log: failed preloads are said there
                pass_fds=passed,
                start_new_session=True,
            )
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        return self.proc

    def host_pid(self, ns_pid: int) -> int:
        """The host pid of the process the zygote forked (``ns_pid`` inside); also learns the
        sandbox's own processes: that child's ancestors up to bubblewrap."""
        assert self.proc is not None
        for pid in process_tree(self.proc.pid):
            if pid != self.proc.pid and _ns_pid(pid) == ns_pid:
                if not self.own:
                    own, up = {self.proc.pid}, _parent(pid)
                    while up is not None and up not in own and up > 1:
                        own.add(up)
                        up = _parent(up)
                    self.own = frozenset(own)
                return pid
        raise OSError(f"the forked task (pid {ns_pid} inside) is not in the sandbox")

    def task_processes(self) -> list[int]:
        """Host pids of every process in the sandbox that is not its own."""
        if self.proc is None:
            return []
        found = process_tree(self.proc.pid)
        return [pid for pid in found if pid not in self.own and not _zombie(pid)]

    def kill_tasks(self) -> bool:
        """SIGKILL what the last task left until nothing is left; False if something outlived
        :data:`KILL_WAIT_S` (the caller then stops the whole sandbox)."""
        if not self.own:  # no task ever forked: nothing of one can be here
            return True
        return cgroups.kill_until_gone(self.task_processes, KILL_WAIT_S)

    def empty_slot(self, trash_parent: Path, remove: Callable[[Path], None]) -> None:
        """Move the slot's entries (the last attempt's files) into a new directory under
        ``trash_parent`` and hand that to ``remove`` (deleted off the critical path)."""
        try:
            entries = os.listdir(self.slot)
        except OSError:
            return
        if not entries:
            return
        trash = Path(tempfile.mkdtemp(prefix=f"{self.slot.name}_", dir=trash_parent))
        for name in entries:
            with contextlib.suppress(OSError):
                os.rename(self.slot / name, trash / name)
        remove(trash)

    def kill(self) -> None:
        """Kill the sandbox and everything in it (bubblewrap's death ends its pid namespace);
        the slot's files stay."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.kill_all(KILL_WAIT_S)

    def stop(self) -> None:
        """:meth:`kill`, then give up the cgroup and the slot."""
        self.kill()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        shutil.rmtree(self.slot, ignore_errors=True)


class WarmLease(TaskSandbox):
    """One attempt's use of a warm sandbox, with the surface ``engine.runner`` and
    ``engine.run_task`` use of a :class:`TaskSandbox` (paths inside, limits, verdicts, close).

    The command starts forked by the zygote: ``start`` is set by whoever holds the zygote
    (``engine.warm_python.client.SandboxClaim``), and ``closing`` runs at :meth:`close` (what the
    task left is killed there). If the zygote cannot take the command, a fresh sandbox over the
    same slot runs it instead (:meth:`fallback`)."""

    def __init__(self, sandbox: WarmSandbox, policy: SandboxPolicy) -> None:
        """``policy``: the attempt's (its limits; what it confines as is the sandbox's)."""
        # No TaskSandbox.__init__: the sandbox exists, nothing is made per attempt.
        self.warm = sandbox
        self.start: Callable[..., Any] | None = None
        self.closing: Callable[[], None] | None = None
        self.policy = policy
        self.attempt_dir = sandbox.slot
        self.binds = ()
        self.limits = policy.limits
        self.bwrap, self.setpriv, self.root = sandbox.bwrap, sandbox.setpriv, sandbox.root
        self.cgroup = (
            sandbox.cgroup.lease(self.limits.memory_mb, self.limits.processes)
            if sandbox.cgroup is not None
            else None
        )
        self.proc = None
        self.block_fd = -1
        self.next_disk_check = time.monotonic()
        self.breached = None
        self.fresh: TaskSandbox | None = None  # the fallback, when the zygote could not fork
        self.forked = False

    def fallback(self) -> TaskSandbox:
        """A fresh sandbox over the slot, for a command the zygote could not start."""
        self.fresh = TaskSandbox(self.policy, self.attempt_dir, name=f"{self.attempt_dir.name}-f")
        return self.fresh

    def launch(self, argv: list[str], cwd: Path, env: dict[str, str]) -> Any:
        """Nothing to launch ahead: the sandbox is up, the zygote forks the command."""
        return None

    def hand_over(self) -> None:
        """Give the filled slot to the task's uid, before the zygote forks the command."""
        hand_over(self.attempt_dir, self.warm.uid, self.warm.gid)

    def release(self, limit: Callable[[int], None]) -> None:
        """The forked command set its rlimits itself, before running anything of the task."""

    def abort(self) -> None:
        """A forked command that must not run on is killed with whatever it started."""
        self.warm.kill_tasks()

    def terminate(self, spare: int) -> bool:
        """SIGTERM every process of the task (not the sandbox's own)."""
        for pid in self.warm.task_processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        return True

    def close(self) -> None:
        """Kill whatever the task left; the slot's files stay for the result to be read."""
        if self.fresh is not None:
            self.fresh.close()
            self.fresh = None
        closing, self.closing = self.closing, None
        if closing is not None:
            closing()
