"""The heavy part of a push, away from the API's event loop: extract and hash the tarball, read
the manifest, zip the revision into a Ray package.

Small pushes run on a worker thread. Large ones (at least SUBPROCESS_BYTES) run in a child
process at a lower CPU priority (``python -m computalot.projects.unpack``): hashing, inflating
and zipping hundreds of megabytes on a thread of the replica would still hold its GIL in small
slices thousands of times, and each slice delays every other request and stream the replica
serves (a 300 MB push measured 0.4 s of lateness on a live stream that way).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from computalot import errors
from computalot.projects.manifest import ManifestResult, load_manifest
from computalot.projects.tarball import ExtractedTree, FileEntry, extract_tarball

#: Uploads (or revisions, for zipping) at least this large are handled in a child process.
SUBPROCESS_BYTES = 16 * 1024 * 1024
#: The child's niceness: the API, the engine and running tasks come first.
CHILD_NICENESS = 10


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


def zip_revision(revision_dir: Path, target: Path) -> None:
    """The revision as the zip Ray unpacks into a task's working directory (blocking)."""
    from ray._private.runtime_env.packaging import create_package

    create_package(str(revision_dir), target, include_gitignore=False)


async def unpack_off_loop(
    upload: Path, staging: Path, max_members: int, max_unpacked_bytes: int
) -> Unpacked:
    args = [str(upload), str(staging), max_members, max_unpacked_bytes]
    if upload.stat().st_size < SUBPROCESS_BYTES:
        return await asyncio.to_thread(unpack, upload, staging, max_members, max_unpacked_bytes)
    answer = await _in_child("unpack", args)
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


async def zip_off_loop(revision_dir: Path, target: Path, size_bytes: int) -> None:
    if size_bytes < SUBPROCESS_BYTES:
        await asyncio.to_thread(zip_revision, revision_dir, target)
    else:
        await _in_child("zip", [str(revision_dir), str(target)])


async def _in_child(command: str, args: list[Any]) -> dict[str, Any]:
    """Run ``command`` in ``python -m computalot.projects.unpack``; its JSON answer, or the
    :class:`~computalot.errors.ComputalotError` it raised, raised here."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "computalot.projects.unpack",
        json.dumps([command, *args]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:
        raise RuntimeError(
            f"{command} child exited {child.returncode}: {err.decode(errors='replace')[-500:]}"
        ) from None
    if "error" in answer:
        raise _rebuild(answer["error"])
    return answer


def _rebuild(error: dict[str, Any]) -> errors.ComputalotError:
    cls = getattr(errors, str(error.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ComputalotError)):
        cls = errors.ComputalotError
    return cls(
        str(error.get("message")),
        details=error.get("details") or [],
        recommended_action=error.get("recommended_action"),
    )


def _main(argv: list[str]) -> int:
    os.nice(CHILD_NICENESS)
    command, *args = json.loads(argv[0])
    try:
        if command == "unpack":
            upload, staging, max_members, max_unpacked = args
            done = unpack(Path(upload), Path(staging), int(max_members), int(max_unpacked))
            answer: dict[str, Any] = asdict(done)
        elif command == "zip":
            zip_revision(Path(args[0]), Path(args[1]))
            answer = {"ok": True}
        else:
            raise ValueError(f"unknown command {command!r}")
    except errors.ComputalotError as exc:
        answer = {"error": {"class": type(exc).__name__, **exc.to_dict()["error"]}}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
