"""Task checkpoints: ``COMPUTALOT_CHECKPOINT_DIR`` saved after every attempt and restored before
the next one (docs/llms-full.md, "Checkpointing").

Worker side (``engine.run_task``): before the command starts, :func:`restore_checkpoint` unpacks
the task's latest checkpoint into the attempt's checkpoint directory; after the command ended
(exit, failure, or the timeout's kill of its process group) and the sandbox is closed,
:func:`save_checkpoint` packs whatever the task left there into one tar and streams it into the
artifact store (local directory or S3, so any node can restore it). Only ``{key, size,
sha256}`` travels back in the outcome; settling writes ``Task.checkpoint``
(:func:`checkpoint_row`) and deletes the blob it replaces (in the background, like the
dispatcher's other unused keys: should that transaction roll back, the row names a deleted
blob, and the next attempt starts empty with a warning, which is the documented fallback). A
cancelled attempt, or one whose worker died, saves nothing: the previous checkpoint stays.
Every checkpoint blob has a key of its own (the artifact store never shares one between
writes), so deleting one never touches another task's; a finished job's go with it
(``maintenance.retention``).

The directory was written by an untrusted task, so packing never follows a link (only regular
files and directories are packed, files opened with ``O_NOFOLLOW``), and unpacking uses
tarfile's ``data`` filter (no absolute paths, no ``..``, no links out, no devices). A
checkpoint that cannot be read back (deleted, corrupt) is not a failure: the attempt starts
with an empty directory and a warning in its ``result_warnings``.

Dispatcher side: :func:`load_resume_keys` reads, for the attempts about to launch, the key of
their task's latest checkpoint when the job asked for ``resume_from_latest``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from computalot.engine.task_files import OutOfTime, _chunks, _in_time, _open_plain
from computalot.timeutil import iso

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from computalot.artifacts.store import StoreConfig

#: The largest checkpoint kept (bytes of the files packed); a bigger one is not saved.
MAX_CHECKPOINT_BYTES = 1024**3
#: Files packed per checkpoint at most.
MAX_CHECKPOINT_FILES = 10_000
DIR_NAME = "checkpoint"


def _entries(directory: Path) -> tuple[list[tuple[Path, bool]], list[str]]:
    """``(path, is_dir)`` under ``directory`` in walk order; links and special files are left
    out (with a warning naming the first), and so is a ``directory`` that is itself a link."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return [], []
    except OSError:
        return [], []
    found: list[tuple[Path, bool]] = []
    skipped: list[str] = []
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(parent) / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                found.append((path, stat.S_ISDIR(mode)))
            else:
                skipped.append(path.relative_to(directory).as_posix())
    warnings = []
    if skipped:
        warnings.append(
            f"checkpoint: {len(skipped)} link(s) or special file(s) not saved, e.g. {skipped[0]}"
        )
    return found, warnings


def pack_checkpoint(
    directory: Path, out: Path, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> tuple[bool, list[str]]:
    """Pack ``directory`` into the tar file ``out``: (whether there was anything to save,
    warnings). Nothing is written when the directory holds no file, or its files pass
    ``max_bytes`` or :data:`MAX_CHECKPOINT_FILES` (a warning says so)."""
    entries, warnings = _entries(directory)
    files = [p for p, is_dir in entries if not is_dir]
    if not files:
        return False, warnings
    if len(files) > MAX_CHECKPOINT_FILES:
        return False, [
            *warnings,
            f"checkpoint not saved: {len(files)} files, at most {MAX_CHECKPOINT_FILES}",
        ]
    total = 0
    with tarfile.open(out, "w") as tar:
        for path, is_dir in entries:
            rel = path.relative_to(directory).as_posix()
            if is_dir:
                info = tarfile.TarInfo(rel)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            fd = _open_plain(path)
            if fd is None:  # replaced by a link meanwhile: left out
                continue
            try:
                size = os.fstat(fd).st_size
                total += size
                if total > max_bytes:
                    return False, [
                        *warnings,
                        f"checkpoint not saved: its files pass the {max_bytes} byte limit",
                    ]
                info = tarfile.TarInfo(rel)
                info.size = size
                info.mode = 0o644
                info.mtime = int(os.fstat(fd).st_mtime)
                with os.fdopen(os.dup(fd), "rb") as handle:
                    tar.addfile(info, handle)
            finally:
                os.close(fd)
    return True, warnings


def save_checkpoint(
    directory: Path,
    store: StoreConfig | None,
    deadline: float | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Pack ``directory`` and stream it into the store: (``{key, size, sha256}`` or None when
    nothing was saved, warnings). ``deadline`` is a ``time.monotonic()`` value."""
    if not any(True for _ in _iter_files(directory)):
        return None, []
    if store is None:
        return None, ["checkpoint not saved: no artifact store configured"]
    from computalot.artifacts.store import open_store

    fd, name = tempfile.mkstemp(prefix="checkpoint-", suffix=".tar", dir=directory.parent)
    os.close(fd)
    tar_path = Path(name)
    try:
        packed, warnings = pack_checkpoint(directory, tar_path, max_bytes)
        if not packed:
            return None, warnings
        opened = open_store(store)
        with open(tar_path, "rb") as handle, opened.writer(max_bytes=None) as writer:
            for chunk in _in_time(_chunks(handle.fileno()), deadline):
                writer.write(chunk)
            blob = writer.commit()
        return {"key": blob.key, "size": blob.size, "sha256": blob.sha256}, warnings
    except OutOfTime:
        return None, ["checkpoint not saved: the attempt ran out of time to store it"]
    except Exception as exc:  # a full disk, S3 down: the attempt's verdict stands
        return None, [f"checkpoint not saved: {type(exc).__name__}: {str(exc)[:200]}"]
    finally:
        with contextlib.suppress(OSError):
            tar_path.unlink()


def _iter_files(directory: Path) -> Iterable[Path]:
    entries, _warnings = _entries(directory)
    return (p for p, is_dir in entries if not is_dir)


def restore_checkpoint(
    directory: Path, key: str, store: StoreConfig | None, deadline: float | None = None
) -> list[str]:
    """Unpack the checkpoint at ``key`` into the (empty) ``directory``; warnings. A checkpoint
    that cannot be read or unpacked leaves the directory empty, with a warning."""
    if not key:
        return []
    if store is None:
        return ["checkpoint not restored: no artifact store configured; starting empty"]
    from computalot.artifacts.store import open_store

    fd, name = tempfile.mkstemp(prefix="restore-", suffix=".tar", dir=directory.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _in_time(open_store(store).read(key), deadline):
                out.write(chunk)
        with tarfile.open(name, "r") as tar:
            tar.extractall(directory, filter="data")
        return []
    except Exception as exc:
        _empty(directory)
        reason = "out of time" if isinstance(exc, OutOfTime) else type(exc).__name__
        return [f"checkpoint not restored ({reason}: {str(exc)[:200]}); started empty"]
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _empty(directory: Path) -> None:
    """Remove whatever a failed restore left in ``directory`` (it stays, empty)."""
    for child in list(directory.iterdir()) if directory.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def checkpoint_row(saved: dict[str, Any], attempt: int, saved_at: datetime) -> dict[str, Any]:
    """``Task.checkpoint``: the blob of the attempt's saved directory."""
    return {
        "key": saved["key"],
        "size": int(saved["size"]),
        "sha256": saved["sha256"],
        "attempt": attempt,
        "saved_at": iso(saved_at),
    }


def wants_resume(spec: dict[str, Any]) -> bool:
    """Whether a job spec (``jobs.submit``) asks to restore the latest checkpoint."""
    ckpt = spec.get("checkpointing") or {}
    return bool(ckpt.get("enabled")) and bool(ckpt.get("resume_from_latest", True))


def enabled(spec: dict[str, Any]) -> bool:
    return bool((spec.get("checkpointing") or {}).get("enabled"))


async def load_resume_keys(db: AsyncSession, task_ids: list[str]) -> dict[str, str]:
    """``{task id: blob key}`` of the tasks' latest checkpoints (tasks without one left out)."""
    if not task_ids:
        return {}
    from sqlalchemy import select

    from computalot.store.models import Task

    query = select(Task.id, Task.checkpoint).where(Task.id.in_(task_ids))
    out: dict[str, str] = {}
    for task_id, value in (await db.execute(query)).all():
        if isinstance(value, dict) and isinstance(value.get("key"), str):
            out[str(task_id)] = value["key"]
    return out


async def replaced_keys(db: AsyncSession, task_ids: list[str]) -> dict[str, str]:
    """The blob keys of these tasks' current checkpoints (to delete once replaced)."""
    return await load_resume_keys(db, task_ids)


async def job_checkpoint_keys(db: AsyncSession, job_ids: list[str]) -> list[str]:
    """Every checkpoint blob key of these jobs' tasks (retention deletes them with the jobs)."""
    from sqlalchemy import select

    from computalot.store.models import Task

    query = select(Task.checkpoint).where(Task.job_id.in_(job_ids), Task.checkpoint.is_not(None))
    keys = []
    for (value,) in (await db.execute(query)).all():
        if isinstance(value, dict) and isinstance(value.get("key"), str):
            keys.append(value["key"])
    return keys
