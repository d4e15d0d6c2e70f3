"""A real S3-compatible HTTP server for the test session: moto's server mode in a subprocess.

boto3 talks to it over HTTP exactly as to AWS (signatures, multipart, presigned URLs). Returns
None with a reason when it cannot start.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.postgres import free_port

#: Credentials moto accepts; set in the environment of every process that talks to it.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class MotoServer:
    endpoint_url: str
    proc: subprocess.Popen[bytes]
    buckets: list[str] = field(default_factory=list)

    def client(self) -> object:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(s3={"addressing_style": "path"}),
        )

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``."""
        client = self.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(  # type: ignore[attr-defined]
            Bucket=bucket, Prefix=prefix
        ):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return keys

    def open_uploads(self, bucket: str) -> list[str]:
        answer = self.client().list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
        return [u["Key"] for u in answer.get("Uploads", [])]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def use_credentials(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default this process's) with moto's credentials set."""
    target = os.environ if env is None else env
    for name, value in CREDENTIALS.items():
        target[name] = value
    return dict(target)


def start_moto() -> tuple[MotoServer | None, str]:
    """Start ``python -m moto.server`` on a free loopback port and wait until it answers."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        return None, f"moto[server] is not installed: {exc}"
    port = free_port()
    env = use_credentials(dict(os.environ))
    log = tempfile.TemporaryFile()  # noqa: SIM115 - its request log; a pipe nobody reads would stall it
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")
            return None, f"moto server exited with {proc.returncode}: {err[-2000:]}"
        try:
            if httpx.get(f"{url}/moto-api/", timeout=2).status_code < 500:
                log.close()  # the child keeps its own descriptor
                return MotoServer(endpoint_url=url, proc=proc), ""
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    return None, "moto server did not answer within 60 s"


# --- the artifact routes on both backends ------------------------------------------------------


@dataclass
class ApiServer:
    """The API app under uvicorn in a subprocess (no Ray: the artifact routes need none)."""

    url: str
    proc: subprocess.Popen[bytes]
    admin_key: str
    data_dir: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_api(data_dir: Path, extra_env: dict[str, str]) -> ApiServer:
    """``create_app(load_settings())`` under uvicorn on a free port, on its own data dir and
    SQLite store (migrated, with an admin key, before it starts)."""
    import asyncio

    from computalot.platform import prepare_store
    from computalot.settings import load_settings

    database_url = f"sqlite+aiosqlite:///{data_dir.resolve()}/computalot.db"
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    admin_key = asyncio.run(prepare_store(settings))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTALOT_")}
    env.update(CREDENTIALS)
    env.update(
        {
            "COMPUTALOT_DATA_DIR": str(data_dir),
            "COMPUTALOT_DATABASE_URL": database_url,
            "COMPUTALOT_PORT": str(port),
            "COMPUTALOT_RATE_LIMIT_PER_MINUTE": "100000",
            **extra_env,
        }
    )
    log = open(data_dir / "uvicorn.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench._uvicorn_app:make",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=log,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((data_dir / "uvicorn.log").read_text()[-3000:])
        try:
            if httpx.get(f"{url}/live", timeout=2).status_code == 200:
                return ApiServer(url, proc, admin_key, data_dir)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("uvicorn did not answer /live within 60 s")


MiB = 1024 * 1024


@dataclass(frozen=True)
class Payload:
    """``size`` pseudo-random bytes made 1 MiB at a time, never held whole: any range can be
    produced again (each MiB block has its own seed)."""

    seed: int
    size: int

    def block(self, i: int) -> bytes:
        import random

        n = min(MiB, self.size - i * MiB)
        return random.Random(self.seed * 1_000_003 + i).randbytes(n)

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        end = self.size if end is None else min(end, self.size)
        pos = start
        while pos < end:
            i, off = divmod(pos, MiB)
            data = self.block(i)[off : off + (end - pos)]
            yield data
            pos += len(data)

    def sha256(self, start: int = 0, end: int | None = None) -> str:
        h = hashlib.sha256()
        for chunk in self.chunks(start, end):
            h.update(chunk)
        return h.hexdigest()


class PeakRss:
    """Growth of a process's resident memory over a block: the kernel's peak (VmHWM, reset at
    the start through ``/proc/<pid>/clear_refs``) or, where that cannot be reset, the highest
    VmRSS sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(name)

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self._field("VmRSS"))
            self.stop.wait(0.01)

    def __enter__(self) -> PeakRss:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.before = self._field("VmRSS")
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        peak = max([*self.samples, self._field("VmRSS")])
        if self.hwm_reset:
            peak = max(peak, self._field("VmHWM"))
        self.growth = peak - self.before


def descendants(root: int) -> list[int]:
    """Pids of every live descendant of ``root``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == pid]
        found += kids
        frontier += kids
    return found


def serve_replica_pid() -> int:
    """The pid of this session's Ray Serve replica (a descendant of the test process, which
    started the local Ray instance)."""
    for pid in descendants(os.getpid()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if argv.startswith(b"ray::ServeReplica"):
            return pid
    raise AssertionError("no ray::ServeReplica process below this test process")
