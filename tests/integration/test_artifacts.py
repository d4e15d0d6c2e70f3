"""The artifact routes over real HTTP, on both backends (docs/llms-full.md, "Artifacts").

``local``: the session platform (Ray Serve behind its ingress), artifacts in the data dir.
``s3``: the same app under uvicorn in a subprocess with ``COMPUTALOT_ARTIFACT_STORE=s3://…``
against moto's S3 server over HTTP (its own data dir and store; its artifact limit is 400 MiB so
"over the limit" streams a few hundred MiB, not 2 GiB). Every test runs on both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import select
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.helpers import assert_envelope, wait_for
from tests.support.s3 import (
    MiB,
    MotoServer,
    Payload,
    PeakRss,
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


def test_raw_upload_then_meta_list_bytes_ranges_and_delete(
    backend: Backend, member: httpx.Client
) -> None:
    data = Payload(1, 3 * MiB + 5)
    body = b"".join(data.chunks())
    art = upload(member, body, "data.csv", **{"Content-Type": "text/csv"})
    assert art["id"].startswith("art_") and art["state"] == "available"
    assert (art["filename"], art["size"], art["sha256"]) == ("data.csv", data.size, data.sha256())
    assert art["content_type"] == "text/csv" and art["created_at"].endswith("Z")
    assert member.get(f"{API}/{art['id']}/meta").json() == art

    got = member.get(f"{API}/{art['id']}")
    assert got.status_code == 200 and got.content == body
    assert got.headers["etag"] == f'"{data.sha256()}"'
    assert got.headers["content-length"] == str(data.size)
    assert got.headers["content-type"].startswith("text/csv")

    part = member.get(f"{API}/{art['id']}", headers={"Range": "bytes=1048570-1048589"})
    assert part.status_code == 206 and part.content == body[1048570:1048590]
    assert part.headers["content-range"] == f"bytes 1048570-1048589/{data.size}"
    tail = member.get(f"{API}/{art['id']}", headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == body[-7:]
    outside = member.get(f"{API}/{art['id']}", headers={"Range": f"bytes={data.size}-"})
    err = assert_envelope(outside, 416, "range_not_satisfiable")
    assert err["details"][0]["loc"] == ["header", "Range"]
    assert outside.headers["content-range"] == f"bytes */{data.size}"

    # Paging: three more, read two at a time; every id once.
    more = [upload(member, f"small {i}".encode(), f"s{i}.txt")["id"] for i in range(3)]
    first = member.get(API, params={"limit": 2}).json()
    assert len(first["artifacts"]) == 2 and first["next_cursor"]
    assert [a["id"] for a in first["artifacts"]] == more[::-1][:2]  # newest first
    assert {art["id"], *more} <= ids(member)
    assert_envelope(member.get(API, params={"cursor": "nope"}), 400, "bad_request")

    deleted = member.delete(f"{API}/{art['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert_envelope(member.get(f"{API}/{art['id']}/meta"), 404, "not_found")
    assert_envelope(member.get(f"{API}/{art['id']}"), 404, "not_found")


def test_another_accounts_artifact_is_404_and_a_viewer_only_reads(
    backend: Backend, member: httpx.Client
) -> None:
    art = upload(member, b"mine")
    other = backend.account()
    for answer in (
        other.get(f"{API}/{art['id']}"),
        other.get(f"{API}/{art['id']}/meta"),
        other.delete(f"{API}/{art['id']}"),
        other.post(f"{API}/direct/{art['id']}/complete"),
    ):
        assert_envelope(answer, 404, "not_found")
    assert art["id"] not in ids(other)
    started = member.post(f"{API}/multipart", json={"filename": "m", "size": 10})
    assert started.status_code == 201, started.text
    upload_id = started.json()["upload_id"]
    assert_envelope(other.get(f"{API}/multipart/{upload_id}"), 404, "not_found")
    put = other.put(f"{API}/multipart/{upload_id}/parts/1", content=b"0123456789")
    assert_envelope(put, 404, "not_found")
    done = other.post(f"{API}/multipart/complete", json={"upload_id": upload_id})
    assert_envelope(done, 404, "not_found")

    viewer = backend.account(role="viewer")
    assert viewer.get(API).status_code == 200
    sha = hashlib.sha256(b"v").hexdigest()
    for answer in (
        viewer.post(API, content=b"v", headers={"X-Artifact-Filename": "v"}),
        viewer.post(f"{API}/multipart", json={"filename": "v", "size": 1}),
        viewer.post(f"{API}/direct", json={"sha256": sha, "size": 1, "filename": "v"}),
    ):
        assert_envelope(answer, 403, "forbidden")
    assert member.get(f"{API}/{art['id']}").content == b"mine"


def test_identical_bytes_are_stored_once_and_go_with_their_last_artifact(
    backend: Backend, member: httpx.Client
) -> None:
    data = b"".join(Payload(2, 6 * MiB).chunks())
    before = backend.blobs()
    first = upload(member, data, "a.bin")
    second_account = backend.account()
    second = upload(second_account, data, "b.bin")
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert len(backend.blobs()) == len(before) + 1
    assert member.delete(f"{API}/{first['id']}").status_code == 200
    assert second_account.get(f"{API}/{second['id']}").content == data
    assert len(backend.blobs()) == len(before) + 1
    assert second_account.delete(f"{API}/{second['id']}").status_code == 200
    assert backend.blobs() == before


def test_wrong_sha256_and_over_the_limit_publish_nothing(
    backend: Backend, member: httpx.Client
) -> None:
    before = backend.leftovers()
    had = ids(member)
    blobs = backend.blobs()
    wrong = member.post(
        API, content=b"abc", headers={"X-Artifact-Filename": "a", "X-Artifact-Sha256": "0" * 64}
    )
    err = assert_envelope(wrong, 400, "bad_request")
    assert err["details"][0]["loc"] == ["body", "sha256"]

    # A declared length over the limit is refused before any byte is read...
    limit = 2 * 1024**3 if backend.name == "local" else S3_LIMIT
    head = raw_head(
        backend,
        "POST",
        API,
        token_of(member),
        Content_Length=str(limit + 1),
        X_Artifact_Filename="big",
    )
    status, body, _ = stream_until_answered(backend, head, iter([]))
    assert status == 413 and b"payload_too_large" in body

    # ...and a chunked body while it streams: the answer comes before the client is done.
    chunked = raw_head(
        backend,
        "POST",
        API,
        token_of(member),
        Transfer_Encoding="chunked",
        X_Artifact_Filename="big",
    )
    if backend.name == "s3":
        endless = Payload(3, S3_LIMIT + 200 * MiB)
        status, body, sent = stream_until_answered(backend, chunked, endless.chunks())
        assert status == 413 and b"payload_too_large" in body, body[:300]
        assert S3_LIMIT <= sent < endless.size
    no_leftovers(backend, before)
    # A multipart part longer than its size, on both: 413 as it streams.
    started = member.post(
        f"{API}/multipart", json={"filename": "p", "size": 12 * MiB, "part_size": 5 * MiB}
    ).json()
    before = backend.leftovers()  # with the upload just started: it stays open
    part = raw_head(
        backend,
        "PUT",
        f"{API}/multipart/{started['upload_id']}/parts/1",
        token_of(member),
        Transfer_Encoding="chunked",
    )
    long_part = Payload(4, 200 * MiB)
    status, body, sent = stream_until_answered(backend, part, long_part.chunks())
    assert status == 413 and b"payload_too_large" in body, body[:300]
    assert sent < long_part.size
    assert ids(member) == had and backend.blobs() == blobs
    no_leftovers(backend, before)


def _sign(backend: Backend, upload_id: str, stamp: int) -> str:
    key = (backend.data_dir / "artifact_url.key").read_bytes()
    mac = hmac.new(key, f"{upload_id}.{stamp}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def test_direct_upload_publishes_only_the_promised_bytes_once(
    backend: Backend, member: httpx.Client
) -> None:
    before = backend.leftovers()
    data = b"".join(Payload(5, 2 * MiB + 1).chunks())
    sha = hashlib.sha256(data).hexdigest()
    grant = member.post(
        f"{API}/direct", json={"sha256": sha, "size": len(data), "filename": "d.bin"}
    )
    assert grant.status_code == 201, grant.text
    g = grant.json()
    assert g["method"] == "PUT" and g["artifact_id"].startswith("art_") and g["expires_at"]
    art_id = g["artifact_id"]
    assert member.get(f"{API}/{art_id}/meta").json()["state"] == "pending"
    assert_envelope(member.get(f"{API}/{art_id}"), 409, "conflict")
    assert_envelope(member.post(f"{API}/direct/{art_id}/complete"), 409, "conflict")

    bad = data[:-1] + b"!"
    with httpx.Client(timeout=120) as anyone:  # the URL is the credential: no bearer token
        put_bad = anyone.put(g["upload_url"], content=bad, headers=g["headers"])
        if backend.name == "local":
            err = assert_envelope(put_bad, 400, "bad_request")
            assert err["details"][0]["loc"] == ["body", "sha256"]
        else:
            assert put_bad.status_code == 200  # S3 took them; completing checks them
            assert_envelope(member.post(f"{API}/direct/{art_id}/complete"), 400, "bad_request")
        assert member.get(f"{API}/{art_id}/meta").json()["state"] == "pending"
        assert_envelope(member.get(f"{API}/{art_id}"), 409, "conflict")

        put = anyone.put(g["upload_url"], content=data, headers=g["headers"])
        assert put.status_code in (200, 201), put.text
        done = member.post(f"{API}/direct/{art_id}/complete")
        assert done.status_code == 200, done.text
        assert done.json()["state"] == "available" and done.json()["sha256"] == sha
        assert member.get(f"{API}/{art_id}").content == data

        if backend.name == "local":
            assert_envelope(anyone.put(g["upload_url"], content=data), 403, "forbidden")
            token = g["upload_url"].rsplit("/", 1)[1]
            upload_id, stamp, _ = token.split(".")
            forged = f"{API}/direct/{upload_id}.{int(stamp) + 1}.{_sign(backend, 'x', 1)}"
            assert_envelope(anyone.put(backend.url + forged, content=data), 403, "forbidden")
            # An expired URL (properly signed, for a grant still open): 403.
            fresh = member.post(
                f"{API}/direct", json={"sha256": sha, "size": len(data), "filename": "e"}
            ).json()
            fresh_id = fresh["upload_url"].rsplit("/", 1)[1].split(".")[0]
            past = int(time.time()) - 5
            expired = f"{API}/direct/{fresh_id}.{past}.{_sign(backend, fresh_id, past)}"
            err = assert_envelope(anyone.put(backend.url + expired, content=data), 403, "forbidden")
            assert "expired" in err["message"]
    no_leftovers(backend, before)


def test_multipart_bad_input(backend: Backend, member: httpx.Client) -> None:
    before = backend.leftovers()
    data = Payload(6, 11 * MiB)
    body = {"filename": "m.bin", "size": data.size, "sha256": "0" * 64, "part_size": 5 * MiB}
    started = member.post(f"{API}/multipart", json=body)
    assert started.status_code == 201, started.text
    up = started.json()
    assert (up["part_size"], up["part_count"]) == (5 * MiB, 3)
    path = f"{API}/multipart/{up['upload_id']}/parts"
    for n in (0, 4):
        err = assert_envelope(member.put(f"{path}/{n}", content=b"x"), 400, "bad_request")
        assert err["details"][0]["loc"] == ["path", "n"]
    short = member.put(f"{path}/1", content=b"short")
    assert_envelope(short, 400, "bad_request")
    for n in (1, 3):
        start = (n - 1) * 5 * MiB
        part = member.put(f"{path}/{n}", content=b"".join(data.chunks(start, start + 5 * MiB)))
        assert part.status_code == 200, part.text
        assert part.json()["sha256"] == data.sha256(start, start + 5 * MiB)
    with ThreadPoolExecutor(4) as pool:  # the same part four times at once: stored once
        first = b"".join(data.chunks(0, 5 * MiB))
        answers = list(pool.map(lambda _: member.put(f"{path}/1", content=first), range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert [p["n"] for p in member.get(f"{API}/multipart/{up['upload_id']}").json()["parts"]] == [
        1,
        3,
    ]
    missing = member.post(f"{API}/multipart/complete", json={"upload_id": up["upload_id"]})
    err = assert_envelope(missing, 409, "conflict")
    assert [d["loc"] for d in err["details"]] == [["parts", 2]] and "2" in err["message"]
    assert (
        member.put(f"{path}/2", content=b"".join(data.chunks(5 * MiB, 10 * MiB))).status_code == 200
    )
    had = ids(member)
    wrong = member.post(f"{API}/multipart/complete", json={"upload_id": up["upload_id"]})
    err = assert_envelope(wrong, 400, "bad_request")
    assert err["details"][0]["loc"] == ["body", "sha256"]
    assert ids(member) == had
    assert_envelope(member.get(f"{API}/multipart/{up['upload_id']}"), 404, "not_found")
    too_small = member.post(f"{API}/multipart", json={**body, "part_size": 1024})
    assert assert_envelope(too_small, 422, "validation_error")["details"][0]["loc"][-1] == (
        "part_size"
    )
    no_leftovers(backend, before)


def test_a_client_that_disconnects_mid_upload_leaves_nothing(
    backend: Backend, member: httpx.Client
) -> None:
    before = backend.leftovers()
    had = ids(member)
    blobs = backend.blobs()
    data = Payload(7, 40 * MiB)
    head = raw_head(
        backend,
        "POST",
        API,
        token_of(member),
        Content_Length=str(data.size),
        X_Artifact_Filename="gone",
    )
    send_and_vanish(backend, head, data.chunks(), 20 * MiB, lambda: backend.leftovers() - before)
    no_leftovers(backend, before)
    time.sleep(1)
    assert ids(member) == had and backend.blobs() == blobs

    if backend.name == "local":  # the same through a direct upload URL, which stays usable
        small = b"".join(Payload(8, 8 * MiB).chunks())
        g = member.post(
            f"{API}/direct",
            json={"sha256": hashlib.sha256(small).hexdigest(), "size": len(small), "filename": "d"},
        ).json()
        target = urlsplit(g["upload_url"]).path
        put_head = raw_head(backend, "PUT", target, None, Content_Length=str(len(small)))
        send_and_vanish(
            backend, put_head, iter([small]), 4 * MiB, lambda: backend.leftovers() - before
        )
        no_leftovers(backend, before)
        assert member.get(f"{API}/{g['artifact_id']}/meta").json()["state"] == "pending"
        done = wait_for(
            lambda: (r := httpx.put(g["upload_url"], content=small)).status_code != 403 and r,
            "the direct URL to be usable again",
            10,
        )
        assert done.status_code == 201, done.text


def test_a_multipart_upload_resumes_after_the_connection_dropped_mid_part(
    backend: Backend, member: httpx.Client
) -> None:
    data = Payload(9, 12 * MiB + 3)
    started = member.post(
        f"{API}/multipart",
        json={
            "filename": "r.bin",
            "size": data.size,
            "sha256": data.sha256(),
            "part_size": 5 * MiB,
        },
    ).json()
    before = backend.leftovers()  # with the upload just started: it stays open until complete
    upload_id, count = started["upload_id"], started["part_count"]
    path = f"{API}/multipart/{upload_id}/parts"

    def part(n: int) -> bytes:
        return b"".join(data.chunks((n - 1) * 5 * MiB, n * 5 * MiB))

    assert member.put(f"{path}/1", content=part(1)).status_code == 200
    head = raw_head(backend, "PUT", f"{path}/2", token_of(member), Content_Length=str(5 * MiB))
    writing = (lambda: backend.leftovers() - before) if backend.name == "local" else None
    send_and_vanish(backend, head, iter([part(2)]), 3 * MiB, writing)
    no_leftovers(backend, before)
    status = member.get(f"{API}/multipart/{upload_id}").json()
    assert [p["n"] for p in status["parts"]] == [1] and status["missing"] == [2, 3]
    for n in status["missing"]:
        assert member.put(f"{path}/{n}", content=part(n)).status_code == 200
    assert count == 3
    done = member.post(f"{API}/multipart/complete", json={"upload_id": upload_id})
    assert done.status_code == 200, done.text
    art = done.json()
    assert (art["size"], art["sha256"]) == (data.size, data.sha256())
    got = hashlib.sha256(member.get(f"{API}/{art['id']}").content).hexdigest()
    assert got == data.sha256()
    no_leftovers(backend, before)


# --- 300 MiB round trips: the serving process stays small -----------------------------------

BIG = 300 * MiB
RSS_BUDGET = 100 * MiB


def _send_big(backend: Backend, client: httpx.Client, data: Payload, method: str) -> Any:
    """Upload ``data`` by ``method`` (streamed from a generator, never held); the artifact."""
    length = {"Content-Length": str(data.size)}
    if method == "raw":
        answer = client.post(
            API, content=data.chunks(), headers={"X-Artifact-Filename": "big.bin", **length}
        )
        assert answer.status_code == 201, answer.text
        return answer.json()
    if method == "direct":
        grant = client.post(
            f"{API}/direct", json={"sha256": data.sha256(), "size": data.size, "filename": "b"}
        ).json()
        with httpx.Client(timeout=300) as anyone:
            put = anyone.put(
                grant["upload_url"], content=data.chunks(), headers={**grant["headers"], **length}
            )
        assert put.status_code in (200, 201), put.text
        done = client.post(f"{API}/direct/{grant['artifact_id']}/complete")
        assert done.status_code == 200, done.text
        return done.json()
    started = client.post(
        f"{API}/multipart",
        json={"filename": "b", "size": data.size, "sha256": data.sha256(), "part_size": 64 * MiB},
    ).json()
    size = started["part_size"]
    for n in range(1, started["part_count"] + 1):
        start, end = (n - 1) * size, min(n * size, data.size)
        part = client.put(
            f"{API}/multipart/{started['upload_id']}/parts/{n}",
            content=data.chunks(start, end),
            headers={"Content-Length": str(end - start)},
        )
        assert part.status_code == 200, part.text
    done = client.post(f"{API}/multipart/complete", json={"upload_id": started["upload_id"]})
    assert done.status_code == 200, done.text
    return done.json()


@pytest.mark.parametrize("method", ["raw", "direct", "multipart"])
def test_a_300_mib_round_trip_keeps_the_server_under_100_mib(
    backend: Backend, member: httpx.Client, method: str
) -> None:
    data = Payload({"raw": 11, "direct": 12, "multipart": 13}[method], BIG)
    with PeakRss(backend.pid) as up:
        art = _send_big(backend, member, data, method)
    assert (art["size"], art["sha256"]) == (data.size, data.sha256())
    digest = hashlib.sha256()
    size = 0
    with PeakRss(backend.pid) as down, member.stream("GET", f"{API}/{art['id']}") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(BIG)
        for chunk in answer.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    assert (size, digest.hexdigest()) == (data.size, data.sha256())
    print(
        f"\n{backend.name} {method}: server RSS growth up {up.growth / MiB:.1f} MiB, "
        f"down {down.growth / MiB:.1f} MiB"
    )
    assert up.growth < RSS_BUDGET, f"upload grew the server by {up.growth / MiB:.0f} MiB"
    assert down.growth < RSS_BUDGET, f"download grew the server by {down.growth / MiB:.0f} MiB"
    assert member.delete(f"{API}/{art['id']}").status_code == 200


def test_the_sdk_streams_files_up_and_down_and_uploads_direct(
    backend: Backend, member: httpx.Client, tmp_path: Path
) -> None:
    from computalot.client import ComputalotClient

    source = tmp_path / "in.bin"
    source.write_bytes(b"".join(Payload(14, 9 * MiB + 1).chunks()))
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    with ComputalotClient(backend.url, token_of(member), timeout=120) as sdk:
        art = sdk.upload_artifact(source, content_type="application/x-test", sha256=sha)
        assert (art["filename"], art["sha256"], art["content_type"]) == (
            "in.bin",
            sha,
            "application/x-test",
        )
        got = sdk.download_artifact(art["id"], tmp_path / "out.bin")
        assert got["sha256"] == sha and (tmp_path / "out.bin").read_bytes() == source.read_bytes()
        grant = sdk.create_direct_upload(sha, source.stat().st_size, "direct.bin")
        sdk.put_direct_upload(grant["upload_url"], source, grant["headers"])
        done = sdk.complete_direct_upload(grant["artifact_id"])
        assert done["state"] == "available" and done["sha256"] == sha
        assert sdk.artifact_meta(done["id"])["filename"] == "direct.bin"
        assert {art["id"], done["id"]} <= {
            a["id"] for a in sdk.list_artifacts(limit=1000)["artifacts"]
        }
        sdk.delete_artifact(art["id"])
        sdk.delete_artifact(done["id"])
