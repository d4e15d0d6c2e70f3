"""Ship a project revision to every node as a Ray runtime_env (SPEC §4, DESIGN "projects").

Ray only accepts local directories in the *job's* runtime_env; per-task envs need a package
URI. Each revision is zipped once into Ray's GCS package store under a name derived from its
content hash, by the push that publishes it (``projects.service``, on a worker thread). Ray pins
an uploaded package for a while and then drops it unless a running task holds it, so the
dispatcher re-checks a revision's package every EXISTS_CHECK_INTERVAL_S and uploads it again if
it is gone: on a worker thread too (zipping a large revision takes seconds, and the dispatcher's
event loop records completions, cancels and timeouts). Ray's per-node runtime_env cache is then
the project's "warm" state.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from ray._private.runtime_env.packaging import (
    package_exists,
    upload_package_if_needed,
    upload_package_to_gcs,
)

EXISTS_CHECK_INTERVAL_S = 30.0


def package_uri(content_hash: str) -> str:
    return f"gcs://_ray_pkg_{content_hash[:32]}.zip"


def upload_revision(content_hash: str, path: str) -> str:
    """Upload the revision at ``path`` unless its package is in GCS (blocking: a thread's job)."""
    uri = package_uri(content_hash)
    if not package_exists(uri):
        with tempfile.TemporaryDirectory(prefix="computalot-pkg-") as tmp:
            upload_package_if_needed(uri, tmp, path, include_gitignore=False)
    return uri


def upload_zip(uri: str, zip_path: Path) -> None:
    """Store an already zipped revision under ``uri`` (blocking: a thread's job)."""
    upload_package_to_gcs(uri, zip_path.read_bytes())


class PackageUnavailable(RuntimeError):
    """A revision's package could not be checked or uploaded (its tasks fail to launch)."""


class PackageCache:
    """Which revision packages are known to be in GCS, checked at most every 30 s each."""

    def __init__(self) -> None:
        self._checked: dict[str, float] = {}
        self._errors: dict[str, str] = {}

    async def ensure(self, revisions: dict[str, str]) -> None:
        """Check (and upload where missing) the packages of ``{content_hash: path}`` whose check
        is due, on worker threads; failures are kept for :meth:`uri` to raise."""
        now = time.monotonic()
        due = {
            h: p
            for h, p in revisions.items()
            if now - self._checked.get(h, -1e9) >= EXISTS_CHECK_INTERVAL_S
        }
        if not due:
            return
        answers = await asyncio.gather(
            *(asyncio.to_thread(upload_revision, h, p) for h, p in due.items()),
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


def revision_runtime_env(
    uri: str, *, requirements: list[str] | None, env_vars: dict[str, str]
) -> dict[str, Any]:
    env: dict[str, Any] = {"working_dir": uri}
    if requirements:
        env["pip"] = {"packages": requirements, "pip_check": False}
    if env_vars:
        env["env_vars"] = env_vars
    return env
