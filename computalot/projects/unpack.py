"""The heavy part of a push, away from the API's event loop: extract and hash the tarball and
read its manifest, on a worker thread for small tarballs and in a child process for large ones
(``computalot.offload``: a thread would still hold the replica's GIL in thousands of slices)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from computalot.offload import CHILD_BYTES, run_in_child
from computalot.projects.manifest import ManifestResult, load_manifest
from computalot.projects.tarball import ExtractedTree, FileEntry, extract_tarball


@dataclass
class Unpacked:
    tree: ExtractedTree
    manifest: dict[str, Any]  # the validated manifest, as JSON
    runtime_kind: str
    warnings: list[str]


def unpack(upload: Path, staging: Path, max_members: int, max_unpacked_bytes: int) -> Unpacked:
    """Extract ``upload`` into ``staging`` and read its manifest (blocking)."""
    tree = extract_tarball(
        upload, staging, max_members=max_members, max_unpacked_bytes=max_unpacked_bytes
    )
    result: ManifestResult = load_manifest(staging, [f.path for f in tree.files])
    return Unpacked(
        tree, result.manifest.model_dump(mode="json"), result.runtime_kind, result.warnings
    )


def unpack_command(upload: str, staging: str, max_members: int, max_unpacked: int) -> Any:
    """:func:`unpack` as a ``computalot.offload`` command."""
    return asdict(unpack(Path(upload), Path(staging), int(max_members), int(max_unpacked)))


async def unpack_off_loop(
    upload: Path, staging: Path, max_members: int, max_unpacked_bytes: int
) -> Unpacked:
    if upload.stat().st_size < CHILD_BYTES:
        return await asyncio.to_thread(unpack, upload, staging, max_members, max_unpacked_bytes)
    answer = await run_in_child(
        "unpack", str(upload), str(staging), max_members, max_unpacked_bytes
    )
    tree = answer["tree"]
    return Unpacked(
        ExtractedTree(
            files=[FileEntry(**f) for f in tree["files"]],
            content_hash=tree["content_hash"],
            total_bytes=tree["total_bytes"],
        ),
        answer["manifest"],
        answer["runtime_kind"],
        answer["warnings"],
    )
