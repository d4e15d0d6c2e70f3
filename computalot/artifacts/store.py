"""The artifact store: one synchronous, streaming interface over a local directory or S3.

Bytes move through it in chunks in both directions; nothing here ever holds a whole file in
memory. The interface is synchronous because boto3 is: callers on an event loop run it with
``asyncio.to_thread`` (docs/llms-full.md, "Artifacts").

Every write lands under a fresh, unique key (``Blob.key``); content addressing is the job of
the ``blobs`` table (:mod:`computalot.artifacts.service`), which maps a sha256 to the one key
that keeps those bytes and counts the artifacts referencing it, and deletes a second copy of
bytes it already has. Unique keys mean a delete can never remove bytes a concurrent upload of
the same content has just published.

A :class:`StoreConfig` is small and picklable: the API hands it to Ray workers, which open the
same store with :meth:`StoreConfig.open` and stream task files into it themselves.
"""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from computalot.errors import BadRequest, PayloadTooLarge
from computalot.settings import GiB, MiB

if TYPE_CHECKING:
    from computalot.settings import Settings

#: Bytes handed out per chunk by :meth:`ArtifactStore.read` and read per step from files.
CHUNK_BYTES = 1 * MiB
#: The default ceiling of one artifact (docs/llms-full.md, "Limits").
MAX_ARTIFACT_BYTES = 2 * GiB


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes published in the store: their sha256 (hex), size in bytes, and where they are."""

    sha256: str
    size: int
    key: str


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One stored part of a multipart upload (``n`` counts from 1)."""

    n: int
    sha256: str
    size: int
    etag: str = ""


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """A multipart upload in the store: ``key`` it will publish at, the backend's own id."""

    key: str
    backend_id: str


def new_token() -> str:
    """A random, URL-safe name part (128 bits)."""
    return secrets.token_urlsafe(16).replace("-", "a").replace("_", "b")


def mismatch(field: str, expected: object, got: object) -> BadRequest:
    """The 400 for bytes that are not what was promised (nothing is published)."""
    msg = f"the bytes received have {field} {got}, not the {expected} promised"
    return BadRequest(
        f"{field} mismatch: {msg}",
        details=[{"loc": ["body", field], "msg": msg}],
        recommended_action=f"send exactly the bytes whose {field} you declared, then retry",
    )


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"artifact is larger than the limit of {limit} bytes",
        details=[{"loc": ["body"], "msg": f"more than {limit} bytes"}],
        recommended_action=f"keep each artifact at or under {limit} bytes (split it)",
    )


def check_expected(
    sha256: str, size: int, expect_sha256: str | None, expect_size: int | None
) -> None:
    """Raise :func:`mismatch` when the bytes are not the ones promised."""
    if expect_size is not None and size != expect_size:
        raise mismatch("size", expect_size, size)
    if expect_sha256 is not None and sha256 != expect_sha256.lower():
        raise mismatch("sha256", expect_sha256.lower(), sha256)


class BlobWriter(ABC):
    """A streamed write: :meth:`write` chunks, then :meth:`commit` or :meth:`abort`.

    The sha256 and byte count grow as chunks arrive; passing ``max_bytes`` raises
    :class:`PayloadTooLarge` on the chunk that crosses it (the write is aborted then). Usable as
    a context manager: leaving the block without a commit aborts.
    """

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        self.done = False

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.done:
            raise RuntimeError("write after commit or abort")
        n = len(chunk)
        if self.max_bytes is not None and self.size + n > self.max_bytes:
            self.abort()
            raise too_large(self.max_bytes)
        self.hasher.update(chunk)
        self.size += n
        self._write(chunk)

    def write_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def commit(self, expect_sha256: str | None = None, expect_size: int | None = None) -> Blob:
        """Publish the bytes and answer their :class:`Blob`; when they are not the ones
        promised, raise :func:`mismatch` and keep nothing."""
        if self.done:
            raise RuntimeError("commit after commit or abort")
        sha = self.hasher.hexdigest()
        try:
            check_expected(sha, self.size, expect_sha256, expect_size)
        except BadRequest:
            self.abort()
            raise
        self.done = True
        try:
            return Blob(sha, self.size, self._publish(sha))
        except BaseException:
            self._discard()
            raise

    def abort(self) -> None:
        """Forget everything written; safe to call twice."""
        if not self.done:
            self.done = True
            self._discard()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    @abstractmethod
    def _write(self, chunk: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def _publish(self, sha256: str) -> str:
        """Make the bytes durable under their final key and answer it."""

    @abstractmethod
    def _discard(self) -> None: ...


class ArtifactStore(ABC):
    """Where artifact bytes live. Keys are opaque strings the store handed out."""

    kind: str
    config: StoreConfig

    @abstractmethod
    def writer(self, max_bytes: int | None = MAX_ARTIFACT_BYTES) -> BlobWriter: ...

    def put_file(self, path: str | Path, max_bytes: int | None = MAX_ARTIFACT_BYTES) -> Blob:
        """Stream the file at ``path`` into the store."""
        with self.writer(max_bytes) as out, open(path, "rb") as src:
            while chunk := src.read(CHUNK_BYTES):
                out.write(chunk)
            return out.commit()

    @abstractmethod
    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start`` up to (not including) ``end`` (default: the end), in chunks."""

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the bytes at ``key``; a missing key is fine."""

    @abstractmethod
    def download_to(self, key: str, path: str | Path) -> None:
        """Write the bytes at ``key`` to the file ``path`` (replaced if present)."""

    # Multipart uploads: parts stored as they come, any order, then joined.
    @abstractmethod
    def begin_multipart(self) -> MultipartUpload: ...

    @abstractmethod
    def put_part(
        self, upload: MultipartUpload, n: int, chunks: Iterable[bytes], max_bytes: int
    ) -> PartInfo:
        """Store part ``n`` (1-based) from ``chunks``; an exception while reading them leaves no
        part ``n`` behind. Storing a part again replaces it."""

    @abstractmethod
    def complete(
        self,
        upload: MultipartUpload,
        parts: list[PartInfo],
        expect_sha256: str | None = None,
        expect_size: int | None = None,
    ) -> Blob:
        """Join ``parts`` (in order) into one blob; on a sha256 or size mismatch nothing is
        kept (the upload is aborted)."""

    @abstractmethod
    def abort_multipart(self, upload: MultipartUpload) -> None: ...

    # Direct uploads: the client sends the bytes somewhere else than through the API.
    def presigned_put(
        self, sha256: str, size: int, ttl_s: int
    ) -> tuple[str, str, dict[str, str]] | None:
        """``(staging key, URL, headers)`` of a presigned PUT, or None where this store has
        none (the API then signs a URL on itself)."""
        return None

    def finish_direct(self, staging_key: str, sha256: str, size: int) -> Blob:
        """Check the bytes a presigned PUT left at ``staging_key`` and publish them; a missing
        object raises ``FileNotFoundError``, other bytes raise :func:`mismatch` (and are
        removed)."""
        raise NotImplementedError


StoreKind = Literal["local", "s3"]


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Everything needed to open a store anywhere in the cluster (picklable)."""

    kind: StoreKind
    root: str = ""
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    def open(self) -> ArtifactStore:
        if self.kind == "local":
            from computalot.artifacts.local import LocalStore

            return LocalStore(self)
        from computalot.artifacts.s3 import S3Store

        return S3Store(self)

    @property
    def where(self) -> str:
        """Where the bytes are, for logs and docs (no credentials in it)."""
        if self.kind == "local":
            return self.root
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_store_url(
    url: str, data_dir: Path, endpoint_url: str | None = None, region: str | None = None
) -> StoreConfig:
    """``""`` -> the local directory ``<data_dir>/artifacts``; ``s3://bucket/prefix`` -> S3;
    ``/path`` or ``file:///path`` -> that local directory."""
    url = url.strip()
    if not url:
        return StoreConfig("local", root=str(data_dir.resolve() / "artifacts"))
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise ValueError("s3:// needs a bucket: s3://bucket/prefix")
        return StoreConfig(
            "s3",
            bucket=bucket,
            prefix=prefix.strip("/"),
            endpoint_url=endpoint_url or None,
            region=region or None,
        )
    if url.startswith("file://"):
        url = url[7:]
    if not url.startswith("/"):
        raise ValueError("use s3://bucket/prefix, an absolute directory, or leave it empty")
    return StoreConfig("local", root=str(Path(url)))


def store_config(settings: Settings) -> StoreConfig:
    """The store these settings name (``COMPUTALOT_ARTIFACT_STORE``)."""
    return parse_store_url(
        settings.artifact_store,
        settings.data_dir,
        settings.artifact_s3_endpoint_url,
        settings.artifact_s3_region,
    )


_OPEN: dict[StoreConfig, ArtifactStore] = {}


def open_store(settings_or_config: Settings | StoreConfig) -> ArtifactStore:
    """The store for these settings (or config), opened once per process."""
    config = (
        settings_or_config
        if isinstance(settings_or_config, StoreConfig)
        else store_config(settings_or_config)
    )
    store = _OPEN.get(config)
    if store is None:
        store = _OPEN[config] = config.open()
    return store


def hash_file(path: str | Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def hash_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


__all__: list[str] = [
    "CHUNK_BYTES",
    "MAX_ARTIFACT_BYTES",
    "ArtifactStore",
    "Blob",
    "BlobWriter",
    "MultipartUpload",
    "PartInfo",
    "StoreConfig",
    "check_expected",
    "hash_chunks",
    "hash_file",
    "mismatch",
    "new_token",
    "open_store",
    "parse_store_url",
    "store_config",
    "too_large",
]
