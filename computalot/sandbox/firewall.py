"""Keep tasks on the host's network away from the platform's own ports (docs/sandbox.md).

A task with ``runtime.network: host`` shares the node's network, so it could reach every port
that listens on it: Ray's GCS, raylet, object manager and dashboard, the Serve proxy behind the
ingress, HAProxy's stats, a local PostgreSQL. Sandboxed tasks run as one dedicated host uid, so
one nftables table per node, matched on that uid, is enough and costs nothing per task:

- to this node's own addresses (anything routed through ``lo``) only the public API port and
  DNS are open;
- to the cluster's other nodes every TCP port but the API's is closed (Ray listens on many);
- everything else (the internet, package indexes) is open: tasks may download.

The table (``inet computalot_sandbox``) is replaced as a whole, in one transaction, whenever a
worker process first needs it or what it holds changes. Installing it needs root
(CAP_NET_ADMIN); where that fails, a host-network task is refused with ``sandbox_unavailable``
rather than run with the platform's ports open.

Several platforms on one host share the table (their tasks run as the same uid, and nftables
base chains do not compose allow-lists: a port one chain accepts, another rejects). So each
platform's dispatcher holds a lock on a file named after each of its public API ports in
``$TMPDIR/computalot-api-ports`` for as long as it runs (:func:`hold_api_ports`), and every
table installed on the host opens the API ports of all live platforms (:func:`live_api_ports`):
one platform's start no longer closes another's API to that platform's running tasks. Only
files of the installing process's own uid count, in a folder of that uid or root's.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

TABLE = "computalot_sandbox"
DNS_PORT = 53

_LOCK = threading.Lock()
_INSTALLED: dict[str, tuple[int, tuple[int, ...], tuple[str, ...]]] = {}
PORTS_DIR = "computalot-api-ports"
#: port -> the descriptor holding its lock (never inherited: O_CLOEXEC), for this process's life.
_HELD_PORTS: dict[int, int] = {}


def nft_path() -> str | None:
    found = shutil.which("nft")
    if found:
        return found
    return next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)


def ruleset(uid: int, open_ports: tuple[int, ...], other_nodes: tuple[str, ...]) -> str:
    """The nftables script that (re)creates the table."""
    ports = ", ".join(str(p) for p in sorted({DNS_PORT, *open_ports}))
    api_ports = ", ".join(str(p) for p in sorted(set(open_ports))) or "0"
    owner = f"meta skuid {uid}"
    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        f'    {owner} oifname "lo" tcp dport {{ {ports} }} accept',
        f'    {owner} oifname "lo" udp dport {DNS_PORT} accept',
        f'    {owner} oifname "lo" meta l4proto tcp reject with tcp reset',
        f'    {owner} oifname "lo" reject',
    ]
    v4 = [a for a in other_nodes if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in other_nodes if ipaddress.ip_address(a).version == 6]
    for family, addresses in (("ip", v4), ("ip6", v6)):
        if addresses:
            joined = ", ".join(addresses)
            lines.append(
                f"    {owner} {family} daddr {{ {joined} }} tcp dport != {{ {api_ports} }} "
                "reject with tcp reset"
            )
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _ports_dir() -> Path | None:
    """The host's folder of API port locks, made if missing; None when it is not one this
    process may trust (a link, or another user's)."""
    folder = Path(tempfile.gettempdir()) / PORTS_DIR
    with contextlib.suppress(FileExistsError, OSError):
        folder.mkdir(mode=0o700)
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (os.geteuid(), 0):
        return None
    return folder


def hold_api_ports(ports: Iterable[int], wait_s: float = 2.0) -> list[int]:
    """Hold (a shared lock) the file of each of ``ports`` for as long as this process lives,
    telling every platform on this host that these API ports are live; the ports held."""
    folder = _ports_dir()
    if folder is None:
        return []
    for port in ports:
        if port not in _HELD_PORTS and 0 < port < 65536:
            fd = _hold(folder / str(port), wait_s)
            if fd is not None:
                _HELD_PORTS[port] = fd
    return sorted(_HELD_PORTS)


def _hold(path: Path, wait_s: float) -> int | None:
    """A descriptor of ``path`` holding its shared lock, the path still naming that file once
    locked (a probe unlinks a file nobody holds, under its exclusive lock); else None."""
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        held = os.fstat(fd)
        if held.st_uid != os.geteuid() or not _lock(fd, fcntl.LOCK_SH, wait_s):
            os.close(fd)
            return None
        try:
            named = os.stat(path, follow_symlinks=False)
        except OSError:
            named = None
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)  # unlinked meanwhile: open the new one
    return None


def _lock(fd: int, kind: int, wait_s: float) -> bool:
    """Take ``kind`` on ``fd`` within ``wait_s`` (a probe of :func:`live_api_ports` holds the
    exclusive lock for microseconds)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def live_api_ports() -> tuple[int, ...]:
    """The API ports whose files a live process of this uid holds (every platform's on this
    host, this one's included)."""
    folder = _ports_dir()
    if folder is None:
        return ()
    try:
        names = os.listdir(folder)
    except OSError:
        return ()
    found = set()
    for name in names:
        if not name.isdigit() or not 0 < int(name) < 65536:
            continue
        if int(name) in _HELD_PORTS:
            found.add(int(name))
            continue
        try:
            fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            mine = os.fstat(fd)
            if mine.st_uid == os.geteuid():
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the close
                except OSError:
                    found.add(int(name))  # held: its platform runs
                else:  # its platform is gone: the file goes, so probes stay cheap
                    _unlink_if_same(folder / name, mine)
        finally:
            os.close(fd)
    return tuple(sorted(found))


def _unlink_if_same(path: Path, locked: os.stat_result) -> None:
    """Unlink ``path`` if it still names the file whose exclusive lock we hold (only a holder of
    that lock unlinks it, so the name cannot change under us; a holder that opened it before
    checks after locking that the name is still its file)."""
    with contextlib.suppress(OSError):
        named = os.stat(path, follow_symlinks=False)
        if (named.st_dev, named.st_ino) == (locked.st_dev, locked.st_ino):
            os.unlink(path)


def ensure(uid: int, open_ports: tuple[int, ...], other_nodes: tuple[str, ...] = ()) -> str | None:
    """Install the table unless this process already did with the same content: ``open_ports``
    and the API ports of every other platform live on this host.

    Returns None when the rules are in place, else why they could not be installed.
    """
    ports = {*open_ports, *live_api_ports()}
    want = (uid, tuple(sorted(ports)), tuple(sorted(set(other_nodes))))
    with _LOCK:
        if _INSTALLED.get(TABLE) == want:
            return None
        nft = nft_path()
        if nft is None:
            return "nft (Debian package nftables) is not installed"
        try:
            done = subprocess.run(
                [nft, "-f", "-"],
                input=ruleset(*want).encode(),
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"nft could not run: {exc}"
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            return "nft refused the rules: " + (reason[0] if reason else f"exit {done.returncode}")
        _INSTALLED[TABLE] = want
        return None
