"""An attempt's files and the artifact store, on the worker that runs it (docs/llms-full.md,
"Runner protocol": "Artifacts" and "Artifact inputs").

Before the command starts, :func:`place_inputs` streams each input artifact from the store into
the attempt's copy of the revision. After it exits (and after the sandbox is closed: nothing of
the task runs any more), :func:`upload_artifacts` streams each regular file the task left in
``COMPUTALOT_ARTIFACT_DIR`` straight into the store and keeps only ``{path, size, sha256,
key}``: the bytes never travel through Ray nor through the dispatcher, which only writes the
rows.

Both directories were written (or could have been prepared) by an untrusted task or revision,
so no symlink is ever followed: files are opened with ``O_NOFOLLOW`` and inputs are placed
through directory descriptors opened one component at a time with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from computalot.artifacts.store import StoreConfig

#: The largest artifact file one task may leave (as for uploads: docs/llms-full.md, "Limits").
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
#: Files kept per attempt; more are skipped with a warning (each becomes a row).
MAX_FILES = 1000
CHUNK_BYTES = 1024 * 1024
PLACED_MODE = 0o644


class InputUnavailable(RuntimeError):
    """An input artifact could not be placed (the attempt fails without running)."""


def plain_files(directory: Path) -> list[Path]:
    """Regular files under ``directory``; links (to files or directories) are never followed,
    and a ``directory`` that is itself a link has none (the task may have replaced it)."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return []
    except OSError:
        return []
    found = []
    for parent, _dirs, files in os.walk(directory, followlinks=False):
        for name in files:
            path = Path(parent) / name
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(path).st_mode):
                    found.append(path)
    return sorted(found)


def _open_plain(path: Path) -> int | None:
    """A read descriptor of ``path`` if it is (still) a regular file, never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _chunks(fd: int) -> Iterator[bytes]:
    while chunk := os.read(fd, CHUNK_BYTES):
        yield chunk


class OutOfTime(Exception):
    """A transfer passed its deadline (``time.monotonic()`` seconds)."""


def _in_time(chunks: Iterator[bytes], deadline: float | None) -> Iterator[bytes]:
    for chunk in chunks:
        if deadline is not None and time.monotonic() > deadline:
            raise OutOfTime("out of time")
        yield chunk


def upload_artifacts(
    directory: Path,
    store: StoreConfig | None,
    max_bytes: int = MAX_FILE_BYTES,
    deadline: float | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Stream each regular file under ``directory`` into the store: (one ``{path, size,
    sha256, key}`` per file stored, warnings naming each file skipped and why; a file over
    ``max_bytes`` is one of them, and so is each one not stored by ``deadline``, a
    ``time.monotonic()`` value)."""
    files = plain_files(directory)
    if not files:
        return [], []
    if store is None:
        return [], [f"{len(files)} artifact file(s) not stored: no artifact store configured"]
    from computalot.artifacts.store import open_store

    opened = open_store(store)
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    for path in files:
        rel = path.relative_to(directory).as_posix()
        if len(out) >= MAX_FILES:
            warnings.append(f"artifact {rel} skipped: at most {MAX_FILES} files per attempt")
            continue
        fd = _open_plain(path)
        if fd is None:
            continue
        try:
            size = os.fstat(fd).st_size
            if size > max_bytes:
                warnings.append(f"artifact {rel} skipped: {size} bytes, over {max_bytes}")
                continue
            with opened.writer(max_bytes=max_bytes) as writer:
                for chunk in _in_time(_chunks(fd), deadline):
                    writer.write(chunk)
                blob = writer.commit()
        except OutOfTime:
            warnings.append(f"artifact {rel} not stored: the attempt ran out of time to store it")
            continue
        except Exception as exc:  # one file's failure (a full disk, S3 down) spares the rest
            warnings.append(f"artifact {rel} not stored: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        finally:
            os.close(fd)
        out.append({"path": rel, "size": blob.size, "sha256": blob.sha256, "key": blob.key})
    return out, warnings


def _open_dir(parent: int, name: str) -> int:
    """``name`` under the directory ``parent`` (made 0755 if missing), never through a link."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        return os.open(name, flags, dir_fd=parent)


def _create_below(root: Path, rel: str) -> int:
    """A new file at ``root/rel`` for writing (whatever was there replaced); every directory on
    the way is opened without following links, so the file cannot land outside ``root``."""
    parts = rel.split("/")
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise InputUnavailable(f"{rel!r} is not a path inside the working directory")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                inner = _open_dir(fd, name)
            except OSError as exc:
                raise InputUnavailable(f"{rel!r}: {name!r} is not a directory ({exc})") from None
            os.close(fd)
            fd = inner
        leaf = parts[-1]
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(leaf, dir_fd=fd).st_mode):
                raise InputUnavailable(f"{rel!r} is a directory of the revision")
            os.unlink(leaf, dir_fd=fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(leaf, flags, PLACED_MODE, dir_fd=fd)
    finally:
        os.close(fd)


def place_inputs(
    root: Path,
    downloads: list[tuple[str, str, str]],
    store: StoreConfig | None,
    deadline: float | None = None,
) -> None:
    """Stream each ``(artifact id, blob key, path)`` from the store to ``root/path``; raise
    :class:`InputUnavailable` naming the first that cannot be placed (by ``deadline``, a
    ``time.monotonic()`` value, too)."""
    if not downloads:
        return
    if store is None:
        raise InputUnavailable("the task names input artifacts but no artifact store is set")
    from computalot.artifacts.store import open_store

    opened = open_store(store)
    placed: dict[str, str] = {}
    for art_id, key, rel in downloads:
        if placed.get(rel, art_id) != art_id:
            raise InputUnavailable(f"{placed[rel]} and {art_id} are both placed at {rel!r}")
        placed[rel] = art_id
        if not key:
            raise InputUnavailable(
                f"artifact {art_id} (for {rel!r}) is not available: deleted, or not this account's"
            )
        fd = _create_below(root, rel)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                for chunk in _in_time(opened.read(key), deadline):
                    out.write(chunk)
        except InputUnavailable:
            raise
        except OutOfTime:
            raise InputUnavailable(
                f"artifact {art_id} was not placed at {rel!r} within the task's timeout_s"
            ) from None
        except Exception as exc:
            raise InputUnavailable(
                f"artifact {art_id} could not be placed at {rel!r}: "
                f"{type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        finally:
            os.close(fd)
