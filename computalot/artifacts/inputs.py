"""Artifact inputs of project tasks (docs/llms-full.md, "Artifact inputs").

Two places name artifacts whose bytes a task finds in its working directory before its command
starts: a payload's ``{"_artifacts": {"download": [{"id": "art_…", "path": "inputs/x"}]}}``
(relative to the task's working directory, the manifest's ``runtime.workdir``) and the revision
manifest's ``data_sources`` (``artifact`` placed at ``mount``, relative to the tarball root).

At submit every id of the job (its payload, every ``fan_out.items`` element, the manifest) is
checked in one query per :data:`CHUNK_IDS` distinct ids: an id that is unknown, not
available or another account's is a 422 naming the field, and nothing is created. At launch the
dispatcher turns a task's inputs into :class:`Download` triples (id, blob key, path under the
revision root) that the worker streams from the artifact store (``engine.run_task``).
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.errors import field_error
from computalot.store.models import Artifact

ARTIFACTS_FIELD = "_artifacts"
#: The most downloads one payload (or one element) may name.
MAX_DOWNLOADS = 1000
#: Distinct ids per lookup query (below every backend's bound-parameter limit).
CHUNK_IDS = 5000
ID_RE = re.compile(r"^art_[A-Za-z0-9_-]{1,64}$")
AVAILABLE = "available"

Loc = list[str | int]


class Download(NamedTuple):
    """One input of an attempt: the artifact, its blob in the store, and where it goes
    (a relative POSIX path under the attempt's copy of the revision)."""

    artifact_id: str
    key: str
    path: str


class Ref(NamedTuple):
    """An artifact a submit names, and where in the request (or manifest) it does: ``base``
    then ``tail`` (kept apart so that 100,000 of them cost no list each)."""

    base: Loc
    tail: tuple[str | int, ...]
    artifact_id: str

    @property
    def loc(self) -> Loc:
        return [*self.base, *self.tail]


def safe_relative(value: Any) -> str | None:
    """``value`` as a normalised relative POSIX path below its base, or None when it is not
    one (absolute, ``..``, empty, the base itself, a backslash or a NUL)."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        return None
    return _safe_relative(value)


@functools.lru_cache(maxsize=4096)  # a big fan-out names the same few paths again and again
def _safe_relative(value: str) -> str | None:
    if value.startswith("/") or "\\" in value or "\x00" in value:
        return None
    if ".." in value.split("/"):
        return None
    norm = posixpath.normpath(value)
    if norm in (".", "") or norm.startswith("../"):
        return None
    return norm


@functools.lru_cache(maxsize=65536)
def _is_id(value: str) -> bool:
    return ID_RE.match(value) is not None


def parse_downloads(spec: Any, loc: Loc) -> list[tuple[int, str, str]]:
    """``(index, id, path)`` of each download in a payload's ``_artifacts`` value (at
    ``loc``); a malformed one is a 422 naming it."""
    if not isinstance(spec, dict):
        raise field_error(loc, 'must be an object: {"download": [{"id": "art_…", "path": "…"}]}')
    for key in spec:
        if key != "download":
            raise field_error([*loc, str(key)], "unknown field; allowed: download")
    items = spec.get("download", [])
    if not isinstance(items, list):
        raise field_error([*loc, "download"], "must be a list of {id, path} objects")
    if len(items) > MAX_DOWNLOADS:
        raise field_error([*loc, "download"], f"at most {MAX_DOWNLOADS} downloads")
    out: list[tuple[int, str, str]] = []
    paths: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 2 or "id" not in item or "path" not in item:
            raise field_error([*loc, "download", i], "must be an object with exactly id and path")
        art_id = item["id"]
        if not isinstance(art_id, str) or not _is_id(art_id):
            raise field_error([*loc, "download", i, "id"], "must be an artifact id (art_…)")
        path = safe_relative(item["path"])
        if path is None:
            raise field_error(
                [*loc, "download", i, "path"],
                "must be a relative path inside the task's working directory (no '..')",
            )
        if path in paths:
            raise field_error([*loc, "download", i, "path"], f"{path!r} is named twice")
        paths.add(path)
        out.append((i, art_id, path))
    return out


def _refs(spec: Any, loc: Loc) -> list[Ref]:
    return [Ref(loc, ("download", i, "id"), a) for i, a, _p in parse_downloads(spec, loc)]


def payload_refs(payload: dict[str, Any], fan_out: dict[str, Any] | None, kind: str) -> list[Ref]:
    """Every artifact a submit's payload names: the job payload's ``_artifacts`` and each
    ``fan_out.items`` element's (or each ``by`` element, when the job fans out by
    ``_artifacts`` itself). Cheap when there are none: one key test per element."""
    by = (fan_out or {}).get("by") if kind == "by" else None
    refs: list[Ref] = []
    if by == ARTIFACTS_FIELD:
        for i, element in enumerate(payload.get(ARTIFACTS_FIELD) or []):
            refs += _refs(element, ["payload", ARTIFACTS_FIELD, i])
    elif ARTIFACTS_FIELD in payload:
        refs += _refs(payload[ARTIFACTS_FIELD], ["payload", ARTIFACTS_FIELD])
    if kind == "items":
        for i, item in enumerate((fan_out or {}).get("items") or []):
            if isinstance(item, dict) and ARTIFACTS_FIELD in item:
                refs += _refs(item[ARTIFACTS_FIELD], ["fan_out", "items", i, ARTIFACTS_FIELD])
    return refs


def manifest_sources(manifest: dict[str, Any] | None) -> list[tuple[int, str, str]]:
    """``(index, artifact id, mount)`` of a revision manifest's ``data_sources`` (validated
    at push: ``projects.manifest``)."""
    sources = (manifest or {}).get("data_sources") or []
    return [
        (i, str(src["artifact"]), str(src["mount"]))
        for i, src in enumerate(sources)
        if isinstance(src, dict) and "artifact" in src and "mount" in src
    ]


def manifest_refs(manifest: dict[str, Any] | None) -> list[Ref]:
    return [
        Ref(["manifest", "data_sources"], (i, "artifact"), art_id)
        for i, art_id, _mount in manifest_sources(manifest)
    ]


async def artifact_keys(db: AsyncSession, account_id: str, ids: Iterable[str]) -> dict[str, str]:
    """``{id: blob key}`` of the account's available artifacts among ``ids`` (one query per
    :data:`CHUNK_IDS` distinct ids); an id missing from the answer is unknown, another
    account's, or not (or no longer) available."""
    wanted = sorted(set(ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), CHUNK_IDS):
        query = select(Artifact.id, Artifact.storage_key).where(
            Artifact.account_id == account_id,
            Artifact.id.in_(wanted[start : start + CHUNK_IDS]),
            Artifact.state == AVAILABLE,
        )
        for art_id, key in (await db.execute(query)).tuples():
            if key:
                found[art_id] = key
    return found


async def check_submit_inputs(
    db: AsyncSession,
    account_id: str,
    payload: dict[str, Any],
    fan_out: dict[str, Any] | None,
    kind: str,
    manifest: dict[str, Any] | None,
) -> None:
    """Refuse (422, naming the first failing field) a submit whose payload, fan-out elements
    or revision manifest name an artifact the account cannot read."""
    refs = manifest_refs(manifest) + payload_refs(payload, fan_out, kind)
    if not refs:
        return
    known = await artifact_keys(db, account_id, (ref.artifact_id for ref in refs))
    for ref in refs:
        if ref.artifact_id not in known:
            raise field_error(
                ref.loc,
                f"artifact {ref.artifact_id} not found (unknown, not available, or not this "
                "account's): upload it with POST /api/v1/artifacts and use the id it returns",
            )


def task_inputs(payload: dict[str, Any], workdir: str) -> list[tuple[str, str]]:
    """``(artifact id, path under the revision root)`` of a launched task's payload downloads
    (each element's, for a batched task). Already checked at submit; anything malformed is
    skipped here rather than failing the launch."""
    elements = payload.get("batch") if isinstance(payload.get("batch"), list) else [payload]
    out: list[tuple[str, str]] = []
    for element in elements or []:
        if not isinstance(element, dict) or ARTIFACTS_FIELD not in element:
            continue
        spec = element[ARTIFACTS_FIELD]
        items = spec.get("download") if isinstance(spec, dict) else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            path = safe_relative(item.get("path"))
            art_id = item.get("id")
            if path is None or not isinstance(art_id, str):
                continue
            full = safe_relative(posixpath.join(workdir, path))
            if full is not None and (art_id, full) not in out:
                out.append((art_id, full))
    return out
