"""A throwaway PostgreSQL cluster for the test session (Debian's ``postgresql`` package).

PostgreSQL refuses to run as root, so as root the cluster is created and started as the
``postgres`` user. Returns None with a reason when no server binaries exist.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PgCluster:
    url: str
    datadir: Path
    bindir: Path
    user_prefix: list[str]

    def stop(self) -> None:
        subprocess.run(
            [
                *self.user_prefix,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def find_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cluster() -> tuple[PgCluster | None, str]:
    bindir = find_bindir()
    if bindir is None:
        return None, "PostgreSQL server binaries not found (apt-get install postgresql)"
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no 'postgres' user to run the server"
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="computalot-pg-"))
    datadir = root / "data"
    sockdir = root / "sock"
    sockdir.mkdir()
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(sockdir, owner.pw_uid, owner.pw_gid)
    init = subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        return None, f"initdb failed: {init.stderr[-500:]}"
    port = free_port()
    opts = (
        f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    start = subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(datadir),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        return None, f"pg_ctl start failed: {start.stderr[-500:]}"
    cluster = PgCluster(
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", datadir, bindir, prefix
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return cluster, ""
        time.sleep(0.1)
    cluster.stop()
    return None, "PostgreSQL did not accept connections"


def create_database(cluster: PgCluster, name: str) -> str:
    subprocess.run(
        [
            *cluster.user_prefix,
            str(cluster.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            cluster.url.rsplit(":", 1)[1].split("/")[0],
            "-U",
            "postgres",
            "-c",
            f"CREATE DATABASE {name}",
        ],
        capture_output=True,
        check=True,
    )
    return cluster.url.rsplit("/", 1)[0] + f"/{name}"
