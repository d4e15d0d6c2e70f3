"""Artifact transfers over real HTTP, on both backends (docs/llms-full.md, "Artifacts"): a
client that vanishes mid-upload, a multipart upload resumed after a dropped connection, 300 MiB
round trips with the serving process under 100 MiB of growth, the SDK streaming files.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import artifact_backends
from tests.support.artifact_backends import (
    API,
    Backend,
    ids,
    no_leftovers,
    raw_head,
    send_and_vanish,
    token_of,
)
from tests.support.helpers import wait_for
from tests.support.s3 import (
    MiB,
    Payload,
    PeakRss,
)

# The backend fixtures (module-scoped, parametrized local | s3), used here by name.
backend = artifact_backends.backend
member = artifact_backends.member


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
    from computalot.sdk.client import ComputalotClient

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
