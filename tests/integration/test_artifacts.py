"""The artifact routes over real HTTP, on both backends (docs/llms-full.md, "Artifacts"):
the contract, tenants and roles, dedup, refused bodies, direct uploads, multipart's bad input
(``tests/support/artifact_backends.py``; transfers in ``test_artifacts_transfers.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import artifact_backends
from tests.support.artifact_backends import (
    API,
    S3_LIMIT,
    Backend,
    ids,
    no_leftovers,
    raw_head,
    stream_until_answered,
    token_of,
    upload,
)
from tests.support.helpers import assert_envelope
from tests.support.s3 import (
    MiB,
    Payload,
)

# The backend fixtures (module-scoped, parametrized local | s3), used here by name.
backend = artifact_backends.backend
member = artifact_backends.member


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
