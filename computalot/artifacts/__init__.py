"""Artifacts: the streamed, content-addressed store (local directory or S3) and the rows that
give its bytes an ``art_`` id, an owner and a name (docs/llms-full.md, "Artifacts")."""

from computalot.artifacts.store import (
    ArtifactStore,
    Blob,
    BlobWriter,
    MultipartUpload,
    PartInfo,
    StoreConfig,
    open_store,
    store_config,
)

__all__ = [
    "ArtifactStore",
    "Blob",
    "BlobWriter",
    "MultipartUpload",
    "PartInfo",
    "StoreConfig",
    "open_store",
    "store_config",
]
