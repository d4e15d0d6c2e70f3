"""Ship a project revision to every node as a Ray runtime_env (docs/llms-full.md, "Projects").

Ray only accepts local directories in the *job's* runtime_env; per-task envs need a package
URI. Each revision is zipped once into Ray's GCS package store under a name derived from its
content hash, by the push that publishes it (``projects.service``). Ray pins an uploaded package
for a while and then drops it unless a running task holds it, so the dispatcher re-checks a
revision's package every EXISTS_CHECK_INTERVAL_S and uploads it again if it is gone. Either way
the work stays off the caller's event loop: a small revision is zipped and uploaded on a worker
thread, a large one in a child process (``computalot.offload``) with its own GCS client, since
even a thread would hold the caller's GIL while Ray copies hundreds of megabytes (a replica's
requests and streams, the dispatcher's completions, cancels and timeouts would wait). Ray's
per-node runtime_env cache is then the project's "warm" state.

A revision's tarball is also kept in the artifact store (``revisions.tarball_key``, put there at
push). Where the revision's directory is missing on the node that packages it (a head restarted
on a fresh disk, a cluster whose nodes share S3 and no disk), :func:`restore_revision` unpacks
it again from there, checked against the revision's content hash.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import ray
from ray._private.runtime_env.packaging import (
    GCS_STORAGE_MAX_SIZE,
    create_package,
    package_exists,
    upload_package_if_needed,
)

from computalot.errors import PayloadTooLarge
from computalot.offload import CHILD_BYTES, run_in_child
from computalot.private_files import make_private_dirs

if TYPE_CHECKING:
    from computalot.artifacts.store import StoreConfig

EXISTS_CHECK_INTERVAL_S = 30.0


def package_uri(content_hash: str) -> str:
    return f"gcs://_ray_pkg_{content_hash[:32]}.zip"


def upload_revision(content_hash: str, path: str) -> str:
    """Upload the revision at ``path`` unless its package is in GCS (blocking: a thread's job)."""
    uri = package_uri(content_hash)
    if not package_exists(uri):
        with tempfile.TemporaryDirectory(prefix="computalot-pkg-") as tmp:
            try:
                upload_package_if_needed(uri, tmp, path, include_gitignore=False)
            except ValueError as exc:  # Ray refuses a package over its size limit
                raise _too_large(str(exc)) from None
    return uri


def package_command(path: str, uri: str, gcs_address: str) -> dict[str, Any]:
    """Zip the revision at ``path`` and store it under ``uri`` through a GCS client of this
    process (a ``computalot.offload`` command: no Ray driver needed)."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory(prefix="computalot-pkg-") as tmp:
        target = Path(tmp) / "revision.zip"
        create_package(path, target, include_gitignore=False)
        size = target.stat().st_size
        if size >= GCS_STORAGE_MAX_SIZE:
            raise _too_large(
                f"it packs to {size / 2**20:.0f} MiB, over the cluster's "
                f"{GCS_STORAGE_MAX_SIZE / 2**20:.0f} MiB package limit"
            )
        GcsClient(address=gcs_address).internal_kv_put(
            uri.encode(), target.read_bytes(), True, None, timeout=300
        )
    return {"uri": uri, "size": size}


def _too_large(why: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the project cannot be shipped to the cluster's nodes: {why}"[:500],
        recommended_action="leave large data out of the tarball; upload it as an artifact "
        "and place it with _artifacts.download",
    )


class Source(NamedTuple):
    """Where a revision's tree is: its directory (``size`` bytes) and, to restore a missing
    directory from, its tarball's key in the artifact ``store``."""

    path: str
    size: int
    tarball_key: str | None = None
    store: StoreConfig | None = None


async def ensure_uploaded(
    content_hash: str, path: str, size_bytes: int, source: Source | None = None
) -> str:
    """The revision's package URI, uploading it first if GCS does not hold it (off the event
    loop: a thread for a small revision, a child process for a large one); a directory that is
    missing then is restored from ``source``'s tarball first."""
    uri = package_uri(content_hash)
    if await asyncio.to_thread(package_exists, uri):
        return uri
    if source is not None and source.tarball_key and source.store is not None:
        await asyncio.to_thread(
            restore_revision, path, content_hash, source.tarball_key, source.store
        )
    if size_bytes < CHILD_BYTES:
        return await asyncio.to_thread(upload_revision, content_hash, path)
    await run_in_child("package", path, uri, ray.get_runtime_context().gcs_address)
    return uri


class PackageUnavailable(RuntimeError):
    """A revision's package could not be checked or uploaded (its tasks fail to launch)."""


class PackageCache:
    """Which revision packages are known to be in GCS, checked at most every 30 s each."""

    def __init__(self) -> None:
        self._checked: dict[str, float] = {}
        self._errors: dict[str, str] = {}

    async def ensure(self, revisions: dict[str, Source]) -> None:
        """Check (and upload where missing, restoring a missing directory from the artifact
        store) the packages of ``{content_hash: source}`` whose check is due, off the event
        loop; failures are kept for :meth:`uri` to raise."""
        now = time.monotonic()
        due = {
            h: p
            for h, p in revisions.items()
            if now - self._checked.get(h, -1e9) >= EXISTS_CHECK_INTERVAL_S
        }
        if not due:
            return
        answers = await asyncio.gather(
            *(ensure_uploaded(h, src.path, src.size, src) for h, src in due.items()),
            return_exceptions=True,
        )
        for content_hash, answer in zip(due, answers, strict=True):
            if isinstance(answer, BaseException):
                self._checked.pop(content_hash, None)
                self._errors[content_hash] = f"{type(answer).__name__}: {answer}"[:300]
            else:
                self._checked[content_hash] = time.monotonic()
                self._errors.pop(content_hash, None)

    def uri(self, content_hash: str) -> str:
        """The package URI of a revision :meth:`ensure` has checked (no I/O)."""
        error = self._errors.get(content_hash)
        if error is not None or content_hash not in self._checked:
            raise PackageUnavailable(f"the revision's package is not available: {error}")
        return package_uri(content_hash)


class RevisionUnavailable(RuntimeError):
    """A revision's directory is missing and cannot be restored from the artifact store."""


def restore_revision(path: str, content_hash: str, tarball_key: str, store: StoreConfig) -> bool:
    """Put the revision's tree back at ``path`` from its tarball in the artifact store when the
    directory is missing (blocking: a thread's job); True when it restored it.

    The tarball is streamed to a temporary file, extracted with the push's own safe reader
    into a sibling directory, checked against ``content_hash`` and renamed into place, so a
    concurrent reader sees either no directory or the whole tree."""
    target = Path(path)
    if target.is_dir():
        return False
    from computalot.artifacts.store import open_store
    from computalot.projects.tarball import extract_tarball

    make_private_dirs(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=target.parent))
    try:
        fd, name = tempfile.mkstemp(prefix=".tarball-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in open_store(store).read(tarball_key):
                    out.write(chunk)
            shutil.rmtree(staging)
            tree = extract_tarball(Path(name), staging)
        finally:
            Path(name).unlink(missing_ok=True)
        if tree.content_hash != content_hash:
            raise RevisionUnavailable(
                f"the stored tarball unpacks to {tree.content_hash[:12]}…, "
                f"not the revision's {content_hash[:12]}…"
            )
        if target.is_dir():  # restored meanwhile by another process
            return False
        staging.rename(target)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def revision_runtime_env(
    uri: str, *, requirements: list[str] | None, env_vars: dict[str, str]
) -> dict[str, Any]:
    env: dict[str, Any] = {"working_dir": uri}
    if requirements:
        env["pip"] = {"packages": requirements, "pip_check": False}
    if env_vars:
        env["env_vars"] = env_vars
    return env
