"""The bubblewrap command line that confines one runner process (docs/sandbox.md).

Inside, the task sees:
- the system read-only (``/usr``, ``/etc`` and the merged-usr links) and the runtime's
  interpreter read-only at the paths it has on the host (its prefix, base prefix and
  site-packages), so ``python3`` is the same interpreter with the same packages;
- ``/task``: its own attempt directory, writable (working copy in ``/task/work``, payload,
  result, artifacts), and nothing else of the host's disk: not the data directory, the
  artifact store, other attempts, ``~/.ray``, Ray's session directory and logs;
- a private ``/tmp`` and ``/dev/shm`` (memory, counted against the task's memory cap), a
  minimal ``/dev``, and a ``/proc`` of its own pid namespace: it sees only its own processes;
- an unprivileged host uid, never root (see below);
- the host's network (``network: host``, fenced by :mod:`.firewall`) or none (``none``).

Where the worker is root, bubblewrap runs as root (so it can mount an interpreter under a 0700
``/root``) without a user namespace, and the command drops to the dedicated uid with ``setpriv``
inside the sandbox: no capabilities, no groups, ``no_new_privs``. Where the worker is an ordinary
user, bubblewrap runs as that user in a user namespace that may not create further ones.
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

INNER_TASK = "/task"
SYSTEM_DIRS = ("/usr", "/etc")
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Every mount costs each task's start (bench/README.md): only what programs commonly need.
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
CPU_INFO = ("/sys/devices/system/cpu",)  # glibc counts online CPUs here (os.cpu_count)
GPU_DEVICES = ("/dev/nvidia*", "/dev/dri")
HOSTNAME = "computalot-task"


def _program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.access(p, os.X_OK)), None)


_FOUND: dict[str, tuple[float, str | None]] = {}
FOUND_TTL_S = 60.0  # a program installed while the worker runs is found within a minute


def program(name: str) -> str | None:
    """Where ``name`` is, looked up at most once a minute per process."""
    now = time.monotonic()
    hit = _FOUND.get(name)
    if hit is None or now - hit[0] > FOUND_TTL_S:
        hit = _FOUND[name] = (now, _program(name))
    return hit[1]


def bwrap_path() -> str | None:
    return program("bwrap")


def setpriv_path() -> str | None:
    return program("setpriv")


def _outside_system(path: str) -> bool:
    return not any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS)


def runtime_dirs() -> list[str]:
    """Host directories the runtime's interpreter needs, outside the system directories.

    The worker's prefix (a virtual environment: the cluster's, or the one Ray built for the
    revision's requirements), the interpreter's base prefix, and site-packages directories
    (a Ray pip environment reaches its parent's through a ``.pth``). Nested ones are dropped.
    """
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    wanted.add(str(Path(os.path.realpath(sys.executable)).parent.parent))
    for entry in [*site.getsitepackages(), *sys.path]:
        if entry.endswith(("site-packages", "dist-packages")):
            wanted.add(entry)
    dirs = sorted(
        os.path.realpath(p) for p in wanted if p and os.path.isdir(p) and _outside_system(p)
    )
    kept: list[str] = []
    for path in dirs:
        if not any(path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


_RUNTIME: list[list[str]] = []


def runtime() -> list[str]:
    """:func:`runtime_dirs`, once per worker process."""
    if not _RUNTIME:
        _RUNTIME.append(runtime_dirs())
    return _RUNTIME[0]


def _secret_places() -> list[tuple[str, str]]:
    """(path, what it is) of what no task may see, as far as this worker can tell."""
    places = [
        (os.path.join(os.path.expanduser("~"), ".ray"), "Ray's token"),
        (os.path.join(tempfile.gettempdir(), "ray"), "Ray's sessions and logs"),
    ]
    data_dir = os.environ.get("COMPUTALOT_DATA_DIR")
    if data_dir:
        places.append((data_dir, "the platform's data directory"))
    return [(os.path.realpath(path), what) for path, what in places]


def exposed(mounts: tuple[str, ...]) -> tuple[str, str] | None:
    """(mounted directory, what it holds) when mounting ``mounts`` would show a task something
    it must never see (a virtual environment, or a shared directory, holding the data dir)."""
    for mount in mounts:
        top = os.path.realpath(mount)
        for path, what in _secret_places():
            if path == top or path.startswith(top + "/"):
                return mount, what
    return None


@lru_cache(maxsize=1)
def exposed_by_runtime() -> tuple[str, str] | None:
    """:func:`exposed` for the interpreter's directories, once per process."""
    return exposed(tuple(runtime()))


def _parents(paths: list[str]) -> list[str]:
    """Every ancestor of ``paths`` outside the system directories, outermost first: created
    0755 in the sandbox, so the uid inside can reach what is mounted below them."""
    out: list[str] = []
    for path in paths:
        parent = os.path.dirname(path)
        chain = []
        while parent not in ("/", "") and _outside_system(parent):
            chain.append(parent)
            parent = os.path.dirname(parent)
        out += [p for p in reversed(chain) if p not in out]
    return out


@lru_cache(maxsize=1)
def _system_args() -> tuple[str, ...]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        args += ["--ro-bind", path, path]
    for path in MERGED_USR:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return tuple(args)


@lru_cache(maxsize=2)
def _device_args(gpu: bool) -> tuple[str, ...]:
    args = ["--tmpfs", "/dev"]
    for dev in DEVICES:
        if os.path.exists(dev):
            args += ["--dev-bind", dev, dev]
    args += ["--symlink", "/proc/self/fd", "/dev/fd", "--perms", "01777", "--tmpfs", "/dev/shm"]
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        args += ["--symlink", f"/proc/self/fd/{fd}", f"/dev/{name}"]
    if gpu:
        for pattern in GPU_DEVICES:
            for dev in sorted(glob.glob(pattern)):
                args += ["--dev-bind", dev, dev]
    return tuple(args)


def bwrap_args(
    *,
    task_dir: str,
    inner_cwd: str,
    network: str,
    privileged: bool,
    gpu: bool = False,
    shared: tuple[str, ...] = (),
    binds: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """bwrap's options (without the program and the command).

    ``task_dir`` (the attempt directory) is mounted writable at :data:`INNER_TASK`, the
    operator's ``shared`` directories writable at their host paths, and each ``binds`` pair
    ``(host, inner)`` writable at ``inner`` under it (a project's cache mounts). ``privileged``: bwrap runs
    as root, so it can mount what only root can reach (an interpreter under ``/root``); the
    command then drops to the task's uid itself (:func:`drop_privileges`). Otherwise bwrap runs
    as the worker's own unprivileged user, in a user namespace of its own.
    """
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not privileged:
        args += ["--unshare-user", "--disable-userns"]
    args += ["--hostname", HOSTNAME, "--die-with-parent"]
    if network == "none":
        args.append("--unshare-net")
    args += _system_args()
    args += ["--proc", "/proc"]
    args += _device_args(gpu)
    for path in CPU_INFO:
        args += ["--ro-bind-try", path, path]
    args += ["--perms", "01777", "--tmpfs", "/tmp"]
    args += _runtime_args(shared)
    for path in shared:
        args += ["--bind", path, path]
    args += ["--bind", task_dir, INNER_TASK]
    for host, inner in binds:  # over the task directory: a project's cache mounts
        args += ["--bind", host, inner]
    args += ["--chdir", inner_cwd]
    return args


@lru_cache(maxsize=8)
def _runtime_args(shared: tuple[str, ...]) -> tuple[str, ...]:
    """The interpreter's directories (read-only) and their parents, once per process."""
    args: list[str] = []
    dirs = runtime()
    for parent in _parents([*dirs, *shared]):
        args += ["--perms", "0755", "--dir", parent]
    for path in dirs:
        args += ["--ro-bind", path, path]
    return tuple(args)


def drop_privileges(setpriv: str, uid: int, gid: int) -> list[str]:
    """The command prefix that turns root inside the sandbox into ``uid``: no groups, no
    capabilities (bounding and inheritable sets emptied) and no way back (no_new_privs: set-uid
    programs such as ``su`` do nothing)."""
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--no-new-privs",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
    ]
