"""The two artifact backends of the HTTP tests (tests/integration/test_artifacts*.py).

``local``: the session platform (Ray Serve behind its ingress), artifacts in the data dir.
``s3``: the same app under uvicorn in a subprocess with ``COMPUTALOT_ARTIFACT_STORE=s3://…``
against moto's S3 server over HTTP (its own data dir and store; its artifact limit is 400 MiB so
"over the limit" streams a few hundred MiB, not 2 GiB). Every test runs on both.
"""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.helpers import wait_for
from tests.support.s3 import (
    MiB,
    MotoServer,
    serve_replica_pid,
    start_api,
)

API = "/api/v1/artifacts"
S3_LIMIT = 400 * MiB


@dataclass
class Backend:
    name: str
    url: str
    account: Callable[..., httpx.Client]
    pid: int
    data_dir: Path
    store_root: Path | None = None  # local store
    moto: MotoServer | None = None
    bucket: str = ""
    prefix: str = ""

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)

    def blobs(self) -> list[str]:
        """Every published object (one per distinct content)."""
        if self.store_root is not None:
            return sorted(str(p) for p in (self.store_root / "blobs").rglob("*") if p.is_file())
        assert self.moto is not None
        return sorted(self.moto.keys(self.bucket, f"{self.prefix}/blobs/"))

    def leftovers(self) -> set[str]:
        """Partial bytes an interrupted or refused upload could have left behind (on S3 also
        the multipart uploads still open, among them those of unfinished artifact uploads)."""
        if self.store_root is not None:
            tmp = {str(p) for p in (self.store_root / "tmp").glob("*")}
            return tmp | {str(p) for p in (self.store_root / "multipart").rglob("*.tmp")}
        assert self.moto is not None
        return set(self.moto.open_uploads(self.bucket)) | set(
            self.moto.keys(self.bucket, f"{self.prefix}/staging/")
        )


@pytest.fixture(scope="module", params=["local", "s3"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param == "local":
        platform = request.getfixturevalue("platform")
        new_account = request.getfixturevalue("new_account")
        data_dir = platform.settings.data_dir.resolve()
        yield Backend(
            "local",
            platform.url,
            new_account,
            serve_replica_pid(),
            data_dir,
            store_root=data_dir / "artifacts",
        )
        return
    moto: MotoServer = request.getfixturevalue("moto_server")
    bucket = moto.make_bucket(f"artifacts-{uuid.uuid4().hex[:12]}")
    data_dir = tmp_path_factory.mktemp("s3-api")
    server = start_api(
        data_dir,
        {
            "COMPUTALOT_ARTIFACT_STORE": f"s3://{bucket}/store",
            "COMPUTALOT_ARTIFACT_S3_ENDPOINT_URL": moto.endpoint_url,
            "COMPUTALOT_ARTIFACT_S3_REGION": "us-east-1",
            "COMPUTALOT_MAX_ARTIFACT_BYTES": str(S3_LIMIT),
        },
    )
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=120
    )
    clients: list[httpx.Client] = []

    def account(role: str = "member", **_: Any) -> httpx.Client:
        made = admin.post(
            "/api/v1/admin/accounts", json={"name": f"a-{uuid.uuid4().hex[:8]}", "role": role}
        )
        assert made.status_code == 201, made.text
        client = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {made.json()['key']['token']}"},
            timeout=120,
        )
        clients.append(client)
        return client

    yield Backend(
        "s3",
        server.url,
        account,
        server.proc.pid,
        data_dir,
        moto=moto,
        bucket=bucket,
        prefix="store",
    )
    for client in [admin, *clients]:
        client.close()
    server.stop()


@pytest.fixture(scope="module")
def member(backend: Backend) -> httpx.Client:
    return backend.account()


def upload(client: httpx.Client, data: bytes, name: str = "x.bin", **headers: str) -> Any:
    answer = client.post(API, content=data, headers={"X-Artifact-Filename": name, **headers})
    assert answer.status_code == 201, answer.text
    return answer.json()


def ids(client: httpx.Client) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        page = client.get(API, params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        found |= {a["id"] for a in page.json()["artifacts"]}
        cursor = page.json()["next_cursor"]
        if not cursor:
            return found


def no_leftovers(backend: Backend, before: set[str]) -> None:
    """Wait until nothing is left over beyond what was there ``before``."""
    wait_for(
        lambda: backend.leftovers() <= before,
        f"no partial uploads ({backend.leftovers() - before})",
        20,
    )


# --- raw socket helpers: a client that vanishes, a body that never ends ---------------------


def send_and_vanish(
    backend: Backend,
    head: bytes,
    chunks: Iterator[bytes],
    upto: int,
    under_way: Callable[[], Any] | None = None,
) -> None:
    """Send a request head and ``upto`` bytes of its body, wait until ``under_way()`` shows
    the server writing it, then drop the connection (a reset, mid-body)."""
    sock = socket.create_connection(("127.0.0.1", backend.port), timeout=30)
    sock.sendall(head)
    sent = 0
    for chunk in chunks:
        sock.sendall(chunk[: upto - sent])
        sent += min(len(chunk), upto - sent)
        if sent >= upto:
            break
    if under_way is not None:
        wait_for(under_way, "the server to be writing the upload", 20)
    else:
        time.sleep(0.5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def stream_until_answered(
    backend: Backend, head: bytes, chunks: Iterator[bytes]
) -> tuple[int, bytes, int]:
    """Send a chunked body until the server answers; (status, body, body bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", backend.port), timeout=60)
    sock.sendall(head)
    sent = 0
    try:
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    sock.settimeout(60)
    try:
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 20:
            more = sock.recv(65536)
            if not more:
                break
            data += more
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    head_text, _, body = data.partition(b"\r\n\r\n")
    return int(head_text.split()[1]), body, sent


def raw_head(backend: Backend, method: str, path: str, token: str | None, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{backend.port}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def token_of(client: httpx.Client) -> str:
    return str(client.headers["authorization"].split()[1])


# --- the contract ---------------------------------------------------------------------------
