"""A real S3-compatible HTTP server for the test session: moto's server mode in a subprocess.

boto3 talks to it over HTTP exactly as to AWS (signatures, multipart, presigned URLs). Returns
None with a reason when it cannot start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

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
