"""Projects and revisions: create/list/update/delete and the tarball push (docs/llms-full.md, "Projects").

A push streams the body to disk under a byte cap, extracts it safely, and publishes a
content-addressed revision: the same content always maps to the same revision. Each revision is
a directory under ``<data_dir>/revisions`` that becomes a Ray runtime_env ``working_dir``; its
tarball is also put in the artifact store once (``revisions.tarball_key``), so a node without
the directory restores it from there (``engine.packages.restore_revision``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, field_error
from computalot.ids import new_id
from computalot.private_files import make_private_dirs
from computalot.projects.events import write_project_event
from computalot.projects.tarball import FileEntry, diff_trees
from computalot.projects.unpack import Unpacked, unpack_off_loop
from computalot.settings import Settings
from computalot.states import OPEN_JOB
from computalot.store.models import Job, Project, Revision
from computalot.timeutil import iso, utcnow

if TYPE_CHECKING:
    from computalot.artifacts.store import Blob as StoredBlob

log = logging.getLogger("computalot.projects")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise field_error(
            ["name"], "must match ^[a-z0-9][a-z0-9_-]{0,62}$ (lowercase, digits, - and _)"
        )
    return name


def _not_found(name: str) -> NotFound:
    if not NAME_RE.match(name):
        return NotFound(f"project {name[:80]!r} not found (not a valid project name)")
    return NotFound(
        f"project {name!r} not found",
        recommended_action="create it with POST /api/v1/projects, or list yours with GET /api/v1/projects",
    )


async def get_project(db: AsyncSession, account_id: str, name: str) -> Project:
    """The caller's project by name; another account's project is simply not found."""
    if not NAME_RE.match(name):
        raise _not_found(name)
    query = select(Project).where(Project.account_id == account_id, Project.name == name)
    project = (await db.execute(query)).scalar_one_or_none()
    if project is None:
        raise _not_found(name)
    return project


async def get_project_with_revision(
    db: AsyncSession, account_id: str, name: str
) -> tuple[Project, Revision | None]:
    """The caller's project and its active revision (None before the first push), one query."""
    if not NAME_RE.match(name):
        raise _not_found(name)
    query = (
        select(Project, Revision)
        .outerjoin(Revision, Revision.id == Project.active_revision_id)
        .where(Project.account_id == account_id, Project.name == name)
    )
    row = (await db.execute(query)).first()
    if row is None:
        raise _not_found(name)
    return row[0], row[1]


async def list_projects(db: AsyncSession, account_id: str) -> list[tuple[Project, Revision | None]]:
    """The caller's projects by name, each with its active revision: one query, however many."""
    query = (
        select(Project, Revision)
        .outerjoin(Revision, Revision.id == Project.active_revision_id)
        .where(Project.account_id == account_id)
        .order_by(Project.name)
    )
    return [(project, revision) for project, revision in (await db.execute(query)).tuples()]


async def create_project(
    db: AsyncSession, account_id: str, *, name: str, remote_dir: str | None, description: str | None
) -> Project:
    now = utcnow()
    project = Project(
        id=new_id("prj"),
        account_id=account_id,
        name=check_name(name),
        remote_dir=remote_dir,
        description=description,
        warm_state={},
        created_at=now,
        updated_at=now,
    )
    db.add(project)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise Conflict(
            f"project {name!r} already exists",
            recommended_action="push to the existing project or choose another name",
        ) from None
    return project


async def delete_project(db: AsyncSession, project: Project) -> None:
    unfinished = await db.execute(
        select(func.count())
        .select_from(Job)
        .where(Job.project_id == project.id, Job.status.in_(OPEN_JOB))
    )
    if unfinished.scalar_one():
        raise Conflict(
            f"project {project.name!r} has unfinished jobs",
            recommended_action="cancel or wait for its jobs, then delete again",
        )
    await db.delete(project)
    await db.flush()


async def get_revision(db: AsyncSession, revision_id: str | None) -> Revision | None:
    return await db.get(Revision, revision_id) if revision_id else None


def revision_out(rev: Revision | None) -> dict[str, Any] | None:
    if rev is None:
        return None
    return {
        "id": rev.id,
        "content_hash": rev.content_hash,
        "pushed_at": iso(rev.pushed_at),
        "size_bytes": rev.size_bytes,
        "files": len(rev.files),
        "runtime_kind": rev.runtime_kind,
        "warnings": rev.warnings,
    }


def project_out(project: Project, rev: Revision | None) -> dict[str, Any]:
    return {
        "name": project.name,
        "description": project.description,
        "remote_dir": project.remote_dir,
        "created_at": iso(project.created_at),
        "updated_at": iso(project.updated_at),
        "active_revision": revision_out(rev),
    }


async def receive_upload(chunks: AsyncIterator[bytes], dest_dir: Path, limit: int) -> Path:
    """Stream a request body to a temp file, refusing it once it passes ``limit`` bytes."""
    make_private_dirs(dest_dir)
    fd, name = tempfile.mkstemp(prefix="push-", suffix=".tar.gz", dir=dest_dir)  # 0600
    path = Path(name)
    size = 0
    try:
        with open(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"tarball is over the {limit} byte limit")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise BadRequest(
            "empty body: send the gzip'd tarball as the raw request body",
            recommended_action="curl --data-binary @code.tar.gz (not -F / multipart)",
        )
    return path


def _place(staging: Path, final: Path, keep_existing: bool) -> None:
    """Move the extracted tree to its content-addressed place (blocking: a thread's job)."""
    if keep_existing:
        shutil.rmtree(staging, ignore_errors=True)
        return
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


async def _package(content_hash: str, path: Path, size_bytes: int) -> None:
    """Upload the revision as a Ray runtime_env package once, at push (off the event loop).
    Without a Ray connection (the API under plain uvicorn), or if the cluster's package store
    does not answer now, the dispatcher does it before the revision's first launch."""
    import ray

    if not ray.is_initialized():
        return
    from computalot.engine.packages import ensure_uploaded

    try:
        await ensure_uploaded(content_hash, str(path), size_bytes)
    except PayloadTooLarge:
        raise
    except Exception as exc:
        log.warning("revision %s not packaged at push (%s); launching will", content_hash, exc)


async def push_revision(
    db: AsyncSession, project: Project, upload: Path, settings: Settings
) -> dict[str, Any]:
    """Extract ``upload`` and publish it as the project's active revision.

    Everything that reads or writes files (extracting and hashing up to 2 GiB, moving the tree,
    putting the tarball in the artifact store, zipping it into a Ray package) runs off the event
    loop, and all of it before the first write to the store: SQLite has one writer at a time,
    so a transaction open across seconds of file work would hold up every other writer of the
    platform (the hub's live events, the dispatcher) for as long."""
    root = settings.data_dir.resolve() / "revisions" / project.account_id / project.id
    make_private_dirs(root)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    shutil.rmtree(staging)
    try:
        try:
            unpacked = await unpack_off_loop(
                upload, staging, settings.max_tarball_members, settings.max_unpacked_bytes
            )
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise
        tree = unpacked.tree
        final = root / tree.content_hash
        existing = await _revision_with_hash(db, project, tree.content_hash)
        keep = existing is not None and await asyncio.to_thread(Path(existing.path).is_dir)
        await asyncio.to_thread(_place, staging, final, keep)
        path = Path(existing.path) if existing is not None and keep else final
        blob = None
        if existing is None or existing.tarball_key is None:
            blob = await _put_tarball(upload, settings)
    finally:
        upload.unlink(missing_ok=True)
    await _package(tree.content_hash, path, tree.total_bytes)

    # The writes: a few rows, in one short transaction (the route commits it).
    previous = await get_revision(db, project.active_revision_id)
    revision = await _publish(db, project, unpacked, path)
    if revision.tarball_key is None and blob is not None:
        revision.tarball_key = await _reference_tarball(db, blob, settings)
    project.active_revision_id = revision.id
    project.updated_at = utcnow()
    await db.flush()
    old_files = [FileEntry(**f) for f in previous.files] if previous is not None else None
    diff = diff_trees(old_files, tree.files)
    await write_project_event(
        db,
        project.id,
        project.account_id,
        "push",
        {
            "revision_id": revision.id,
            "content_hash": revision.content_hash,
            "tarball_diff": {
                "added": len(diff["added"]),
                "removed": len(diff["removed"]),
                "modified": len(diff["modified"]),
                "unchanged": diff["unchanged"],
            },
        },
    )
    return {
        "project": project.name,
        "revision": revision_out(revision),
        "tarball_diff": diff,
        "warnings": list(revision.warnings) + await _missing_sources(db, revision),
        "can_accept_new_jobs": True,
    }


async def _missing_sources(db: AsyncSession, revision: Revision) -> list[str]:
    """A warning per manifest ``data_sources`` artifact the account cannot read now: every
    job of the revision is refused (422) until it exists."""
    from computalot.artifacts.inputs import artifact_keys, manifest_refs

    refs = manifest_refs(revision.manifest)
    if not refs:
        return []
    known = await artifact_keys(db, revision.account_id, (r.artifact_id for r in refs))
    return [
        f"{'.'.join(str(p) for p in ref.loc[1:])}: artifact {ref.artifact_id} not found; jobs "
        "of this revision are refused until it is uploaded to this account"
        for ref in refs
        if ref.artifact_id not in known
    ]


async def _put_tarball(upload: Path, settings: Settings) -> StoredBlob | None:
    """Put the pushed tarball in the artifact store (off the event loop, no store row yet);
    None when the store refuses it now (the revision then lives in its directory only)."""
    from computalot.artifacts.store import open_store

    try:
        return await asyncio.to_thread(open_store(settings).put_file, upload, None)
    except Exception as exc:
        log.warning(
            "a pushed tarball was not put in the artifact store: %s: %s",
            type(exc).__name__,
            str(exc)[:300],
        )
        return None


async def _reference_tarball(db: AsyncSession, blob: StoredBlob, settings: Settings) -> str:
    """The key that keeps the tarball's bytes, content-addressed: the same bytes already in the
    store are referenced once more and the copy just put is dropped."""
    from computalot.artifacts.service import add_reference
    from computalot.artifacts.store import open_store

    key = await add_reference(db, blob)
    if key != blob.key:  # a copy of bytes the store already had: nothing else names it
        await asyncio.to_thread(open_store(settings).delete, blob.key)
    return key


async def _revision_with_hash(
    db: AsyncSession, project: Project, content_hash: str
) -> Revision | None:
    found: Revision | None = (
        await db.execute(
            select(Revision).where(
                Revision.project_id == project.id, Revision.content_hash == content_hash
            )
        )
    ).scalar_one_or_none()
    return found


async def _publish(db: AsyncSession, project: Project, unpacked: Unpacked, path: Path) -> Revision:
    """The revision of this content, its tree at ``path`` (placed already): the project's
    existing one (read again here: a push of the same content beside this one may have made it
    meanwhile), or a new row."""
    tree = unpacked.tree
    existing = await _revision_with_hash(db, project, tree.content_hash)
    if existing is not None:
        existing.path = str(path)  # its tree put back where it had gone (else unchanged)
        return existing
    revision = Revision(
        id=new_id("rev"),
        project_id=project.id,
        account_id=project.account_id,
        content_hash=tree.content_hash,
        size_bytes=tree.total_bytes,
        files=[asdict(f) for f in tree.files],
        manifest=unpacked.manifest,
        runtime_kind=unpacked.runtime_kind,
        warnings=unpacked.warnings,
        path=str(path),
        pushed_at=utcnow(),
    )
    db.add(revision)
    return revision
