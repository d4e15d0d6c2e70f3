"""Ship a project revision to every node as a Ray runtime_env (SPEC §4, DESIGN "projects").

Ray only accepts local directories in the *job's* runtime_env; per-task envs need a package
URI. We zip each revision once into Ray's GCS package store under a name derived from its
content hash, and re-upload on demand if Ray's package GC dropped it. Ray's per-node
runtime_env cache is then the project's "warm" state.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from ray._private.runtime_env.packaging import package_exists, upload_package_if_needed

EXISTS_CHECK_INTERVAL_S = 30.0


def package_uri(content_hash: str) -> str:
    return f"gcs://_ray_pkg_{content_hash[:32]}.zip"


class PackageCache:
    """Remembers which revision packages are known to be in GCS (checked every 30 s)."""

    def __init__(self) -> None:
        self._checked: dict[str, float] = {}

    def ensure(self, content_hash: str, path: str) -> str:
        uri = package_uri(content_hash)
        now = time.monotonic()
        if now - self._checked.get(uri, -1e9) < EXISTS_CHECK_INTERVAL_S:
            return uri
        if not package_exists(uri):
            with tempfile.TemporaryDirectory(prefix="computalot-pkg-") as tmp:
                upload_package_if_needed(uri, tmp, path, include_gitignore=False)
        self._checked[uri] = now
        return uri


def revision_runtime_env(
    uri: str, *, requirements: list[str] | None, env_vars: dict[str, str]
) -> dict[str, Any]:
    env: dict[str, Any] = {"working_dir": uri}
    if requirements:
        env["pip"] = {"packages": requirements, "pip_check": False}
    if env_vars:
        env["env_vars"] = env_vars
    return env
