"""The S3 artifact store (``COMPUTALOT_ARTIFACT_STORE=s3://bucket/prefix``), through boto3.

Works with AWS and with any S3-compatible server (``COMPUTALOT_ARTIFACT_S3_ENDPOINT_URL``);
credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` …, a profile, an instance
role). Keys handed out are relative to the prefix: ``blobs/<token>`` for published bytes,
``staging/<token>`` for direct uploads not checked yet.

A streamed write is an S3 multipart upload fed part by part (:data:`PART_BYTES` each, a few in
flight on a small thread pool, so memory stays at a few parts whatever the size); a short one
is a single ``PutObject``. The whole-object sha256 S3 does not give us is computed as the bytes
pass (streamed writes) or by reading the object back once (multipart and direct uploads, whose
bytes never passed through one process in order).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from computalot.artifacts.store import (
    CHUNK_BYTES,
    MAX_ARTIFACT_BYTES,
    ArtifactStore,
    Blob,
    BlobWriter,
    MultipartUpload,
    PartInfo,
    StoreConfig,
    check_expected,
    hash_file,
    mismatch,
    new_token,
    too_large,
)
from computalot.errors import Conflict
from computalot.settings import MiB

#: Size of each part of a streamed write (S3 wants at least 5 MiB for every part but the last).
PART_BYTES = 8 * MiB
#: Parts of one streamed write uploading at once.
PARTS_IN_FLIGHT = 2

_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-parts")


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class S3Writer(BlobWriter):
    """Each part is gathered in an unnamed temporary file (gone with its descriptor, even on a
    crash) and uploaded from it, so the process's memory does not grow with the parts in
    flight: buffers of many MiB, freed on other threads, are what the allocator keeps."""

    def __init__(self, store: S3Store, max_bytes: int | None) -> None:
        super().__init__(max_bytes)
        self.store = store
        self.key = f"blobs/{new_token()}"
        self.spool: IO[bytes] | None = None
        self.spool_bytes = 0
        self.upload_id: str | None = None
        self.parts: list[Future[dict[str, Any]]] = []

    def _write(self, chunk: bytes | bytearray | memoryview) -> None:
        view = memoryview(chunk)
        while view.nbytes:
            if self.spool is None:
                self.spool = tempfile.TemporaryFile(prefix="computalot-s3-")  # noqa: SIM115
                self.spool_bytes = 0
            take = min(view.nbytes, PART_BYTES - self.spool_bytes)
            self.spool.write(view[:take])
            self.spool_bytes += take
            view = view[take:]
            if self.spool_bytes == PART_BYTES:
                self._send(self._take())

    def _take(self) -> IO[bytes]:
        spool = self.spool or tempfile.TemporaryFile(prefix="computalot-s3-")  # noqa: SIM115
        self.spool = None
        spool.seek(0)
        return spool

    def _send(self, body: IO[bytes]) -> None:
        store = self.store
        if self.upload_id is None:
            self.upload_id = store.client.create_multipart_upload(
                Bucket=store.bucket, Key=store.full(self.key)
            )["UploadId"]
        in_flight = [f for f in self.parts if not f.done()]
        if len(in_flight) >= PARTS_IN_FLIGHT:
            in_flight[0].result()
        n = len(self.parts) + 1
        upload_id = self.upload_id

        def send() -> dict[str, Any]:
            with body:
                answer = store.client.upload_part(
                    Bucket=store.bucket,
                    Key=store.full(self.key),
                    UploadId=upload_id,
                    PartNumber=n,
                    Body=body,
                )
            return {"ETag": answer["ETag"], "PartNumber": n}

        self.parts.append(_POOL.submit(send))

    def _publish(self, sha256: str) -> str:
        store = self.store
        if self.upload_id is None:
            with self._take() as body:
                store.client.put_object(Bucket=store.bucket, Key=store.full(self.key), Body=body)
        else:
            if self.spool is not None or not self.parts:
                self._send(self._take())
            done = [f.result() for f in self.parts]
            store.client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=store.full(self.key),
                UploadId=self.upload_id,
                MultipartUpload={"Parts": done},
            )
        return self.key

    def _discard(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        for f in self.parts:
            f.cancel()
        for f in self.parts:
            if not f.cancelled():
                with contextlib.suppress(Exception):  # aborting anyway
                    f.result()
        if self.upload_id is not None:
            try:
                self.store.client.abort_multipart_upload(
                    Bucket=self.store.bucket, Key=self.store.full(self.key), UploadId=self.upload_id
                )
            except ClientError:
                pass


class S3Store(ArtifactStore):
    kind = "s3"

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/")
        self._local = threading.local()

    @property
    def client(self) -> Any:
        """One boto3 client per thread (clients are thread-safe, sessions are not)."""
        client = getattr(self._local, "client", None)
        if client is None:
            options: dict[str, Any] = {
                "max_pool_connections": 32,
                "signature_version": "s3v4",
                # The whole-object sha256 is ours to check; a CRC per part on top costs CPU.
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
            if self.config.endpoint_url:
                options["s3"] = {"addressing_style": "path"}
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.config.endpoint_url,
                region_name=self.config.region,
                config=Config(**options),
            )
            self._local.client = client
        return client

    def full(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not a store key: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def writer(self, max_bytes: int | None = MAX_ARTIFACT_BYTES) -> BlobWriter:
        return S3Writer(self, max_bytes)

    def put_file(self, path: str | Path, max_bytes: int | None = MAX_ARTIFACT_BYTES) -> Blob:
        sha, size = hash_file(path)
        if max_bytes is not None and size > max_bytes:
            raise too_large(max_bytes)
        key = f"blobs/{new_token()}"
        self.client.upload_file(str(path), self.bucket, self.full(key))
        return Blob(sha, size, key)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.full(key)}
        if start or end is not None:
            if end is not None and end <= start:
                return iter(())
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(**params)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from exc
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK_BYTES)
            finally:
                body.close()

        return chunks()

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.full(key))
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from exc
            raise
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.full(key))

    def download_to(self, key: str, path: str | Path) -> None:
        try:
            self.client.download_file(self.bucket, self.full(key), str(path))
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from exc
            raise

    def _hash_object(self, key: str) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        for chunk in self.read(key):
            h.update(chunk)
            size += len(chunk)
        return h.hexdigest(), size

    def begin_multipart(self) -> MultipartUpload:
        key = f"blobs/{new_token()}"
        answer = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.full(key))
        return MultipartUpload(key=key, backend_id=answer["UploadId"])

    def put_part(
        self, upload: MultipartUpload, n: int, chunks: Iterable[bytes], max_bytes: int
    ) -> PartInfo:
        h = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile(prefix="computalot-part-") as spool:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes)
                h.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            try:
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.full(upload.key),
                    UploadId=upload.backend_id,
                    PartNumber=n,
                    Body=spool,
                    ContentLength=size,
                )
            except ClientError as exc:
                if _missing(exc):
                    raise FileNotFoundError(upload.backend_id) from exc
                raise
        return PartInfo(n=n, sha256=h.hexdigest(), size=size, etag=answer["ETag"])

    def complete(
        self,
        upload: MultipartUpload,
        parts: list[PartInfo],
        expect_sha256: str | None = None,
        expect_size: int | None = None,
    ) -> Blob:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.full(upload.key),
                UploadId=upload.backend_id,
                MultipartUpload={"Parts": [{"ETag": p.etag, "PartNumber": p.n} for p in parts]},
            )
        except ClientError as exc:
            self.abort_multipart(upload)
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            raise Conflict(
                f"S3 did not join the parts ({code}); the upload is discarded",
                details=[{"loc": ["upload_id"], "msg": code}],
                recommended_action="start a new multipart upload and send each part once",
            ) from None
        try:
            sha, size = self._hash_object(upload.key)
            check_expected(sha, size, expect_sha256, expect_size)
        except BaseException:
            self.delete(upload.key)
            raise
        return Blob(sha, size, upload.key)

    def abort_multipart(self, upload: MultipartUpload) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.full(upload.key), UploadId=upload.backend_id
            )
        except ClientError as exc:
            if not _missing(exc):
                raise

    def presigned_put(
        self, sha256: str, size: int, ttl_s: int
    ) -> tuple[str, str, dict[str, str]] | None:
        key = f"staging/{new_token()}"
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        url = self.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.full(key),
                "ContentLength": size,
                "ChecksumSHA256": checksum,
            },
            ExpiresIn=ttl_s,
            HttpMethod="PUT",
        )
        return key, url, {"x-amz-checksum-sha256": checksum, "Content-Length": str(size)}

    def finish_direct(self, staging_key: str, sha256: str, size: int) -> Blob:
        got = self.size(staging_key)  # FileNotFoundError while nothing has arrived
        try:
            if got != size:
                raise mismatch("size", size, got)
            digest, _ = self._hash_object(staging_key)
            check_expected(digest, got, sha256, size)
            key = f"blobs/{new_token()}"
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self.full(key),
                CopySource={"Bucket": self.bucket, "Key": self.full(staging_key)},
            )
        finally:
            self.delete(staging_key)
        return Blob(sha256.lower(), size, key)
