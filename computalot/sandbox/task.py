"""One attempt's confinement: what ``engine.runner`` needs to start, watch and end a sandboxed
runner process (docs/sandbox.md).

``run_task`` starts the sandbox early with the command held back (:meth:`TaskSandbox.launch`);
the runner lets it go with its rlimits set (:meth:`TaskSandbox.release`), asks whether a limit
was crossed while the task runs (:meth:`TaskSandbox.breach`) and after it ended
(:meth:`TaskSandbox.verdict`), and finally everything left is killed (:meth:`TaskSandbox.close`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from computalot.sandbox import bwrap, cgroups, firewall, seccomp
from computalot.sandbox.policy import SandboxPolicy

DISK_CHECK_S = 1.0
MAX_DISK_ENTRIES = 200_000  # a directory walk stops counting here (its cost stays bounded)


class SandboxUnavailable(RuntimeError):
    """The node cannot confine this task as the platform requires."""


_CLUSTER: list[tuple[str, ...]] = []


def cluster_addresses() -> tuple[str, ...]:
    """The Ray nodes' addresses, read once per worker process (a GCS call); empty outside Ray.

    Their Ray ports are closed to host-network tasks (:mod:`.firewall`); a node that joins later
    is covered by the workers started after it.
    """
    if not _CLUSTER:
        found: tuple[str, ...] = ()
        try:
            import ray

            if ray.is_initialized():
                found = tuple(
                    sorted({str(n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")})
                )
        except Exception:  # the GCS is away: this node's own ports are closed all the same
            found = ()
        _CLUSTER.append(found)
    return _CLUSTER[0]


def disk_usage(root: Path, max_entries: int = MAX_DISK_ENTRIES) -> int:
    """Bytes allocated under ``root`` (st_blocks), without following links."""
    total, seen, stack = 0, 0, [str(root)]
    while stack and seen < max_entries:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                seen += 1
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``/proc/<pid>/task/<pid>/children``)."""
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        with contextlib.suppress(OSError), open(f"/proc/{current}/task/{current}/children") as fh:
            stack += [int(child) for child in fh.read().split()]
    return out


def hand_over(directory: Path, uid: int, gid: int) -> None:
    """Give the attempt directory (and everything copied into it) to the sandbox's uid."""
    if os.geteuid() != 0 or uid == os.geteuid():
        return
    os.lchown(directory, uid, gid)
    for parent, dirs, files in os.walk(directory):
        for name in dirs + files:
            os.lchown(os.path.join(parent, name), uid, gid)


def check_node(policy: SandboxPolicy) -> tuple[str, str | None]:
    """(bubblewrap, setpriv or None when the worker is not root) once this node can confine a
    task as ``policy`` says; else :class:`SandboxUnavailable` saying what the operator does."""
    found = bwrap.bwrap_path()
    if found is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed on this node; the operator installs it "
            "(apt-get install bubblewrap) or sets COMPUTALOT_SANDBOX=none"
        )
    root = os.geteuid() == 0
    setpriv = bwrap.setpriv_path() if root else None
    if root and setpriv is None:
        raise SandboxUnavailable("setpriv (util-linux) is missing: tasks would run as root")
    exposed = bwrap.exposed_by_runtime() or bwrap.exposed(policy.shared_dirs)
    if exposed:
        raise SandboxUnavailable(
            f"the directory {exposed[0]} that tasks would see holds {exposed[1]}; the "
            "operator moves one of them (the virtual environment, a shared directory)"
        )
    if policy.network == "host":
        uid = policy.uid if root else os.geteuid()
        why = firewall.ensure(uid, policy.open_ports, cluster_addresses())
        if why is not None:
            raise SandboxUnavailable(
                f"the platform's ports cannot be closed to host-network tasks: {why}; "
                'set "runtime": {"network": "none"} in the manifest, or the operator '
                "installs nftables and runs the workers as root"
            )
    return found, setpriv


class TaskSandbox:
    """A prepared sandbox for one attempt directory; see the module doc."""

    def __init__(
        self,
        policy: SandboxPolicy,
        attempt_dir: Path,
        name: str,
        binds: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """``binds``: ``(host directory, path inside)`` pairs bound writable over the attempt
        directory (a project's cache mounts, ``engine.project_init``)."""
        self.policy = policy
        self.attempt_dir = attempt_dir
        self.binds = binds
        self.limits = policy.limits
        self.bwrap, self.setpriv = check_node(policy)
        self.root = os.geteuid() == 0
        layout = cgroups.layout()
        if layout is not None:
            cgroups.sweep(layout)
        self.cgroup: cgroups.TaskCgroup | cgroups.WorkerLease | cgroups.WarmCgroup | None = (
            cgroups.attempt_cgroup(
                layout, name, memory_mb=self.limits.memory_mb, processes=self.limits.processes
            )
            if layout is not None
            else None
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.block_fd = -1  # writing here lets a launched sandbox start its command
        self.next_disk_check = time.monotonic() + DISK_CHECK_S
        self.breached: tuple[str, str] | None = None

    @property
    def uid(self) -> int:
        """The host uid the task runs as: the dedicated one when the worker is root."""
        return self.policy.uid if self.root else os.geteuid()

    def inner(self, path: Path) -> str:
        """Where a host path under the attempt directory is, seen from inside."""
        rel = path.relative_to(self.attempt_dir).as_posix()
        return bwrap.INNER_TASK if rel == "." else f"{bwrap.INNER_TASK}/{rel}"

    def command(
        self, argv: list[str], cwd: Path, block_fd: int, seccomp_fd: int | None = None
    ) -> list[str]:
        prefix = self.cgroup.join_prefix() if self.cgroup is not None else []
        options = ["--block-fd", str(block_fd)]
        if seccomp_fd is not None:
            options += ["--seccomp", str(seccomp_fd)]
        options += bwrap.bwrap_args(
            task_dir=str(self.attempt_dir),
            inner_cwd=self.inner(cwd),
            network=self.policy.network,
            privileged=self.root,
            gpu=self.policy.gpu,
            shared=self.policy.shared_dirs,
            binds=self.binds,
        )
        drop = []
        if self.setpriv is not None:
            drop = bwrap.drop_privileges(self.setpriv, self.policy.uid, self.policy.gid)
        assert self.bwrap is not None
        return [*prefix, self.bwrap, *options, "--", *drop, *argv]

    def launch(self, argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the sandbox for ``argv`` now, its command held back until :meth:`release`.

        bubblewrap builds the namespaces and mounts (most of its cost) while the worker still
        fills the attempt directory: the working copy, the payload. ``cwd`` need not exist yet.
        """
        read_fd, self.block_fd = os.pipe()
        # Root mode has no user namespace to forbid nested ones in: a seccomp filter does it.
        seccomp_fd = seccomp.program_fd() if self.root else None
        passed = (read_fd,) if seccomp_fd is None else (read_fd, seccomp_fd)
        command = self.command(argv, cwd, read_fd, seccomp_fd)

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                command,
                cwd=self.attempt_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=passed,
            )

        try:
            self.proc = start() if self.cgroup is None else self.cgroup.spawn(start)
        except BaseException:
            os.close(self.block_fd)
            self.block_fd = -1
            raise
        finally:
            for fd in passed:
                os.close(fd)
        return self.proc

    def release(self, limit: Callable[[int], None]) -> None:
        """Let the launched command start: ``limit`` (rlimits) is applied to every process of
        the sandbox (its command inherits them), the attempt directory handed to the task's
        uid, then the command runs."""
        assert self.proc is not None and self.block_fd >= 0
        # Until a pass finds no process it has not limited: bubblewrap may clone its child
        # between a pass's listing and its limiting of the parent, and that child would keep
        # the old limits (it blocks on block_fd before it forks further).
        limited: set[int] = set()
        for _ in range(100):
            new = [pid for pid in process_tree(self.proc.pid) if pid not in limited]
            if not new:
                break
            for pid in new:
                limit(pid)
            limited.update(new)
        hand_over(self.attempt_dir, self.uid, self.policy.gid if self.root else os.getegid())
        os.write(self.block_fd, b"x")
        os.close(self.block_fd)
        self.block_fd = -1

    def abort(self) -> None:
        """The launched command must never run: kill the sandbox before it is released."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.block_fd >= 0:
            os.close(self.block_fd)
            self.block_fd = -1
        self.proc.communicate()
        self.proc = None

    @property
    def memory_rlimit_mb(self) -> int | None:
        """RLIMIT_AS only where no cgroup counts the task's memory as a whole."""
        return None if self.cgroup is not None else (self.limits.memory_mb or None)

    def breach(self) -> tuple[str, str] | None:
        """A limit crossed while the task runs: (failure code, message), else None."""
        if self.breached is None and self.cgroup is not None and self.cgroup.oom_kills():
            self.breached = ("memory_limit", self._memory_message())
        now = time.monotonic()
        if self.breached is None and self.limits.disk_mb and now >= self.next_disk_check:
            self.next_disk_check = now + DISK_CHECK_S
            if disk_usage(self.attempt_dir) > self.limits.disk_mb << 20:
                self.breached = ("disk_limit", self._disk_message())
        return self.breached

    def verdict(self, returncode: int) -> tuple[str, str] | None:
        """After the runner exited: the limit it ran into, if any explains how it ended."""
        if self.breached is not None:
            return self.breached
        if self.cgroup is not None and self.cgroup.oom_kills():
            return "memory_limit", self._memory_message()
        if returncode == 0:
            # Written past the limit between two checks of a run shorter than DISK_CHECK_S.
            if self.limits.disk_mb and disk_usage(self.attempt_dir) > self.limits.disk_mb << 20:
                return "disk_limit", self._disk_message()
            return None
        if self.limits.cpu_time_s and returncode == -signal.SIGXCPU:
            return "cpu_time_limit", (
                f"a process used more than its CPU time limit of {self.limits.cpu_time_s} s"
            )
        if self.cgroup is not None and self.cgroup.hit_process_limit():
            return "process_limit", (
                f"the task reached its limit of {self.limits.processes} processes and threads"
            )
        if self.limits.disk_mb and (
            returncode == -signal.SIGXFSZ
            or disk_usage(self.attempt_dir) >= (self.limits.disk_mb << 20) - (1 << 20)
        ):
            return "disk_limit", self._disk_message()
        return None

    def _memory_message(self) -> str:
        return f"the task went over its memory limit of {self.limits.memory_mb} MiB and was killed"

    def _disk_message(self) -> str:
        return f"the task's directory went over its disk limit of {self.limits.disk_mb} MiB"

    def terminate(self, spare: int) -> bool:
        """SIGTERM every process of the task but ``spare`` (bubblewrap itself); False where there
        is no cgroup to find them in (the caller signals the process group instead)."""
        if self.cgroup is None:
            return False
        for pid in self.cgroup.pids():
            if pid != spare:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        return True

    def close(self) -> None:
        """Kill whatever the task left (its cgroup) and give the cgroup up; once is enough."""
        if self.block_fd >= 0:  # launched, never released
            self.abort()
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None
