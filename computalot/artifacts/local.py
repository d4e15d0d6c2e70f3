"""The local-directory artifact store (the default: ``<data_dir>/artifacts``).

Layout under the root: ``tmp/`` holds writes in progress (renamed into place on commit, so a
blob is never seen half-written), ``blobs/<sha256[:2]>/<sha256>.<token>`` the published bytes,
``multipart/<upload>/<n>`` the stored parts of multipart uploads. Every directory is 0700 and
every file 0600 (:mod:`computalot.private_files`). A blob is fsynced, then renamed into place,
then its directory fsynced: an artifact the API has answered for survives a power cut.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from computalot.artifacts.store import (
    CHUNK_BYTES,
    MAX_ARTIFACT_BYTES,
    ArtifactStore,
    Blob,
    BlobWriter,
    MultipartUpload,
    PartInfo,
    StoreConfig,
    new_token,
    too_large,
)
from computalot.private_files import FILE_MODE, make_private_dirs


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter(BlobWriter):
    def __init__(self, store: LocalStore, max_bytes: int | None) -> None:
        super().__init__(max_bytes)
        self.store = store
        self.tmp = store.tmp_dir / f"{new_token()}.part"
        self.file = os.fdopen(_create(self.tmp), "wb", buffering=0)

    def _write(self, chunk: bytes | bytearray | memoryview) -> None:
        view = memoryview(chunk)
        while view.nbytes:
            n = self.file.write(view)
            view = view[n or 0 :]

    def _publish(self, sha256: str) -> str:
        """Durable before it is published: the bytes are on disk before the rename, and the
        rename is on disk before the caller records the artifact (as S3 acknowledges a PUT)."""
        os.fsync(self.file.fileno())
        self.file.close()
        key = f"blobs/{sha256[:2]}/{sha256}.{new_token()}"
        dest = self.store.path(key)
        make_private_dirs(dest.parent)
        os.replace(self.tmp, dest)
        _fsync_dir(dest.parent)
        return key

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.tmp.unlink(missing_ok=True)


class LocalStore(ArtifactStore):
    kind = "local"

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.root = Path(config.root)
        self.tmp_dir = make_private_dirs(self.root / "tmp")
        make_private_dirs(self.root / "blobs")
        self.multipart_dir = make_private_dirs(self.root / "multipart")

    def path(self, key: str) -> Path:
        """The file of ``key``; a key that would leave the root is refused."""
        rel = Path(key)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"not a store key: {key!r}")
        return self.root / rel

    def writer(self, max_bytes: int | None = MAX_ARTIFACT_BYTES) -> BlobWriter:
        return LocalWriter(self, max_bytes)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        src = open(self.path(key), "rb")  # noqa: SIM115 - opened now: a missing key fails here

        def chunks() -> Iterator[bytes]:
            with src:
                src.seek(start)
                left = None if end is None else max(0, end - start)
                while left is None or left > 0:
                    want = CHUNK_BYTES if left is None else min(CHUNK_BYTES, left)
                    chunk = src.read(want)
                    if not chunk:
                        return
                    if left is not None:
                        left -= len(chunk)
                    yield chunk

        return chunks()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def download_to(self, key: str, path: str | Path) -> None:
        shutil.copyfile(self.path(key), path)

    def begin_multipart(self) -> MultipartUpload:
        token = new_token()
        make_private_dirs(self.multipart_dir / token)
        return MultipartUpload(key="", backend_id=token)

    def _part_dir(self, upload: MultipartUpload) -> Path:
        folder = self.multipart_dir / Path(upload.backend_id).name
        if not folder.is_dir():
            raise FileNotFoundError(upload.backend_id)
        return folder

    def put_part(
        self, upload: MultipartUpload, n: int, chunks: Iterable[bytes], max_bytes: int
    ) -> PartInfo:
        folder = self._part_dir(upload)
        tmp = folder / f".{n}.{new_token()}.tmp"
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(_create(tmp), "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise too_large(max_bytes)
                    h.update(chunk)
                    out.write(chunk)
            os.replace(tmp, folder / str(n))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return PartInfo(n=n, sha256=h.hexdigest(), size=size)

    def complete(
        self,
        upload: MultipartUpload,
        parts: list[PartInfo],
        expect_sha256: str | None = None,
        expect_size: int | None = None,
    ) -> Blob:
        folder = self._part_dir(upload)
        with self.writer(max_bytes=None) as out:
            for part in parts:
                with open(folder / str(part.n), "rb") as src:
                    while chunk := src.read(CHUNK_BYTES):
                        out.write(chunk)
            try:
                return out.commit(expect_sha256, expect_size)
            finally:
                self.abort_multipart(upload)

    def abort_multipart(self, upload: MultipartUpload) -> None:
        shutil.rmtree(self.multipart_dir / Path(upload.backend_id).name, ignore_errors=True)
