"""Is a TCP port free, and if not, which process holds it.

``computalot up`` asks before it starts Ray: a Serve HAProxy that a killed earlier run left
behind keeps the API port, and without this check the next ``up`` started Ray and then died
inside Serve with a 40-line traceback ("HAProxy crashed during startup … Address already in
use") instead of one line naming the port and its holder.

The holder is found the way ``ss -ltnp`` finds it: the socket's inode in ``/proc/net/tcp``
(and ``tcp6``), then the process with a ``socket:[inode]`` descriptor in ``/proc/*/fd``. Only
processes this user may inspect can be named; ``ss`` is asked as well when it is installed.
"""

from __future__ import annotations

import errno
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TCP_LISTEN = "0A"
_SS_USER = re.compile(r'\("(?P<name>[^"]*)",pid=(?P<pid>\d+)')
#: A holder's command line is cut here so the operator's line stays one line.
COMMAND_CHARS = 120


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str


def port_in_use(host: str, port: int) -> bool:
    """True when binding ``host:port`` the way a server does (``SO_REUSEADDR``) fails with
    "address in use". Any other bind error (a host not on this machine …) is left to the
    server to report."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    family, _type, _proto, _name, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _socket_inodes(port: int) -> list[int]:
    """Inodes of the TCP sockets bound to ``port``, listening ones first."""
    listening: list[int] = []
    other: list[int] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            inode = int(fields[9])
            if inode:
                (listening if fields[3] == _TCP_LISTEN else other).append(inode)
    return listening + other


def _command(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    # Arguments may hold newlines (`python3 -c "…"`): the line must stay one line.
    text = " ".join(raw.decode(errors="replace").replace("\0", " ").split())
    if not text:
        try:
            text = (PROC / str(pid) / "comm").read_text().strip()
        except OSError:
            return "?"
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"


def _holder_from_proc(port: int) -> Holder | None:
    wanted = {f"socket:[{inode}]": inode for inode in _socket_inodes(port)}
    if not wanted:
        return None
    for proc in PROC.iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:  # another user's process, or gone
            continue
        for fd in fds:
            try:
                target = fd.readlink()
            except OSError:
                continue
            if str(target) in wanted:
                pid = int(proc.name)
                return Holder(pid=pid, command=_command(pid))
    return None


def _holder_from_ss(port: int) -> Holder | None:
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        out = subprocess.run(
            [ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _SS_USER.search(out)
    if match is None:
        return None
    pid = int(match["pid"])
    command = _command(pid)
    return Holder(pid=pid, command=match["name"] if command == "?" else command)


def port_holder(port: int) -> Holder | None:
    """The process holding TCP ``port``, when this user can see it."""
    return _holder_from_proc(port) or _holder_from_ss(port)


def port_in_use_line(host: str, port: int, what: str) -> str:
    """The one line an operator gets for a taken port: which, who holds it, what to do."""
    holder = port_holder(port)
    if holder is None:
        by = f"a process this user cannot see (`sudo ss -ltnp 'sport = :{port}'` names it)"
    else:
        by = f"pid {holder.pid} ({holder.command})"
    return (
        f"port {port} on {host} ({what}) is already in use by {by}; stop it, or choose "
        f"another port with --port or COMPUTALOT_PORT"
    )
