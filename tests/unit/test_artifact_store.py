"""The ArtifactStore interface on both backends: the local directory, and S3 through boto3 to
moto's S3 server (a real HTTP server, started once per session)."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from computalot.artifacts import bridge
from computalot.artifacts.store import ArtifactStore, StoreConfig, parse_store_url
from computalot.errors import BadRequest, PayloadTooLarge
from computalot.settings import ConfigError, load_settings

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return StoreConfig("local", root=str(tmp_path / "store")).open()
    moto = request.getfixturevalue("moto_server")
    bucket = moto.make_bucket(f"unit-{uuid.uuid4().hex[:12]}")
    config = StoreConfig(
        "s3", bucket=bucket, prefix="p", endpoint_url=moto.endpoint_url, region="us-east-1"
    )
    return config.open()


def leftovers(store: ArtifactStore, request: pytest.FixtureRequest) -> list[str]:
    if store.kind == "local":
        root = Path(store.config.root)
        return [str(p) for p in (root / "tmp").iterdir()] + [
            str(p) for p in (root / "multipart").rglob("*.tmp")
        ]
    moto = request.getfixturevalue("moto_server")
    return list(moto.open_uploads(store.config.bucket))


def chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_streamed_write_reads_back_whole_and_in_ranges(
    store: ArtifactStore, request: pytest.FixtureRequest
) -> None:
    data = bytes(range(256)) * (20 * 4096 + 7)  # ~20 MiB: several S3 parts
    with store.writer() as out:
        out.write_all(chunks(data))
        blob = out.commit(hashlib.sha256(data).hexdigest(), len(data))
    assert (blob.sha256, blob.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.exists(blob.key) and store.size(blob.key) == len(data)
    assert b"".join(store.read(blob.key)) == data
    assert b"".join(store.read(blob.key, 5, 5 + MiB + 3)) == data[5 : 5 + MiB + 3]
    assert b"".join(store.read(blob.key, len(data) - 4)) == data[-4:]
    again = store.writer()
    again.write(data[:10])
    assert again.commit().key != blob.key  # every write its own key (the blobs table dedups)
    store.delete(blob.key)
    assert not store.exists(blob.key)
    with pytest.raises(FileNotFoundError):
        b"".join(store.read(blob.key))
    assert leftovers(store, request) == []


def test_wrong_bytes_and_too_many_bytes_keep_nothing(
    store: ArtifactStore, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    out = store.writer()
    out.write(b"abc")
    with pytest.raises(BadRequest) as wrong:
        out.commit(expect_sha256="0" * 64)
    assert wrong.value.details[0]["loc"] == ["body", "sha256"]
    out = store.writer(max_bytes=3 * MiB)
    with pytest.raises(PayloadTooLarge):
        out.write_all(chunks(b"x" * (10 * MiB)))  # refused on the chunk that crosses the limit
    with store.writer() as dropped:
        dropped.write(b"never committed")
    assert leftovers(store, request) == []
    path = tmp_path / "file.bin"
    path.write_bytes(b"y" * (3 * MiB + 1))
    blob = store.put_file(path)
    target = tmp_path / "copy.bin"
    store.download_to(blob.key, target)
    assert target.read_bytes() == path.read_bytes()
    assert blob.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_multipart_parts_in_any_order_and_an_interrupted_part_leaves_none(
    store: ArtifactStore, request: pytest.FixtureRequest
) -> None:
    data = b"".join(bytes([i]) * MiB for i in range(12))
    upload = store.begin_multipart()

    def broken() -> Iterator[bytes]:
        yield data[: 2 * MiB]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_part(upload, 2, broken(), 5 * MiB)
    parts = [
        store.put_part(upload, n, chunks(data[(n - 1) * 5 * MiB : n * 5 * MiB]), 5 * MiB)
        for n in (3, 1, 2)
    ]
    parts.sort(key=lambda p: p.n)
    assert [p.size for p in parts] == [5 * MiB, 5 * MiB, 2 * MiB]
    assert parts[0].sha256 == hashlib.sha256(data[: 5 * MiB]).hexdigest()
    blob = store.complete(upload, parts, hashlib.sha256(data).hexdigest(), len(data))
    assert b"".join(store.read(blob.key)) == data

    other = store.begin_multipart()
    part = store.put_part(other, 1, chunks(data[: 5 * MiB]), 5 * MiB)
    with pytest.raises(BadRequest):
        store.complete(other, [part], "0" * 64, None)
    third = store.begin_multipart()
    with pytest.raises(PayloadTooLarge):
        store.put_part(third, 1, chunks(data), 5 * MiB)
    store.abort_multipart(third)
    assert leftovers(store, request) == []


def test_the_config_travels_pickled_and_opens_the_same_store(store: ArtifactStore) -> None:
    with store.writer() as out:
        out.write(b"shared")
        blob = out.commit()
    elsewhere = pickle.loads(pickle.dumps(store.config)).open()
    assert b"".join(elsewhere.read(blob.key)) == b"shared"


def test_store_urls_and_settings(tmp_path: Path) -> None:
    assert parse_store_url("", tmp_path).root == str(tmp_path.resolve() / "artifacts")
    s3 = parse_store_url("s3://bucket/a/b/", tmp_path, "http://127.0.0.1:9000", "eu-west-1")
    assert (s3.kind, s3.bucket, s3.prefix, s3.endpoint_url) == (
        "s3",
        "bucket",
        "a/b",
        "http://127.0.0.1:9000",
    )
    assert s3.where == "s3://bucket/a/b"
    assert parse_store_url("/srv/artifacts", tmp_path).root == "/srv/artifacts"
    for bad in ("s3://", "relative/dir", "gs://bucket"):
        with pytest.raises(ConfigError, match="COMPUTALOT_ARTIFACT_STORE"):
            load_settings(artifact_store=bad)


def test_bridge_streams_bounded_and_stops_the_consumer_when_the_body_fails() -> None:
    seen: list[int] = []

    async def body(fail: bool) -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"z" * (256 * 1024)
        if fail:
            raise ConnectionResetError("gone")

    def consume(it: Iterator[bytes]) -> int:
        total = 0
        for chunk in it:
            seen.append(len(chunk))
            total += len(chunk)
        return total

    async def run() -> Any:
        ok = await bridge.consume(body(False), consume)
        with pytest.raises(ConnectionResetError):
            await bridge.consume(body(True), consume)
        return ok

    assert asyncio.run(run()) == 20 * 256 * 1024
    assert max(seen) <= bridge.BATCH_BYTES


def test_range_headers_read_as_rfc_9110_says() -> None:
    from serve_app.routes.artifacts import parse_range

    size = 100
    assert parse_range("bytes=0-9", size) == (0, 10)
    assert parse_range("bytes=90-500", size) == (90, 100)  # clipped to the end
    assert parse_range("bytes=-5", size) == (95, 100)
    assert parse_range("bytes=5-", size) == (5, 100)
    assert parse_range("bytes=100-", size) is False  # outside: 416
    assert parse_range("bytes=-0", size) is False
    assert parse_range("bytes=0-0", 0) is False
    for ignored in (None, "", "bytes=9-2", "bytes=a-b", "bytes=0-1,5-6", "items=0-1", "bytes=²-3"):
        assert parse_range(ignored, size) is None, ignored  # the whole file: 200
