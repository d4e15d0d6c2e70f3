"""Owner-only files and directories for the data dir (store, admin key, revisions, artifacts).

Directories the platform creates there are 0700 and its files 0600 (0700 where a project file
is executable: the bit is part of the revision). :func:`tighten_tree` brings an existing data
dir written with looser modes to the same at start. SQLite gives its ``-wal``/``-shm`` files the
mode of the database file, so :func:`private_sqlite_file` creates that file 0600 before the
first connection does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("computalot.files")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: Files SQLite keeps beside a database, which get the database file's mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_mode(mode: int) -> int:
    """``mode`` with every group and other bit dropped: a directory 0700, a file 0600 (0700
    when its owner may execute it)."""
    if stat.S_ISDIR(mode):
        return DIR_MODE
    return FILE_MODE | (stat.S_IMODE(mode) & stat.S_IXUSR)


def make_private_dirs(path: Path) -> Path:
    """Create ``path`` and any missing parents 0700 (existing ones are left as they are)."""
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            os.mkdir(folder, DIR_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as an 0600 file (an existing file is tightened first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), FILE_MODE)
        out.write(data)


def tighten(path: Path) -> None:
    """Drop the group and other bits of ``path`` (never following a symlink)."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return
    wanted = private_mode(mode)
    if stat.S_IMODE(mode) != wanted:
        os.chmod(path, wanted)


def tighten_tree(root: Path) -> None:
    """Make ``root`` and every directory under it 0700 and every file 0600 (0700 if owner-
    executable). Symlinks are not followed; what cannot be changed (another user's file) is
    logged and left."""

    _tighten_or_warn(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            _tighten_or_warn(Path(folder) / name)


def _tighten_or_warn(path: Path) -> None:
    """:func:`tighten`; a file gone meanwhile is fine, another failure is logged."""
    try:
        tighten(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not tighten the mode of %s: %s", path, exc)


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite`` SQLAlchemy URL; None for memory and URI databases."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


def private_sqlite_file(url: str) -> None:
    """Create the SQLite database behind ``url`` as an empty 0600 file when it does not exist
    yet, and tighten it and its side files when they do. Other URLs: nothing."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError:
        return  # SQLite will report it with its own words
    os.close(fd)
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_SIDE_FILES)):
        _tighten_or_warn(candidate)
