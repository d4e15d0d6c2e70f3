"""The data dir's owner-only modes: helpers that create, write and tighten."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from computalot.platform import secure_data_dir
from computalot.private_files import (
    make_private_dirs,
    private_mode,
    private_sqlite_file,
    sqlite_path,
    tighten_tree,
    write_private,
)
from computalot.settings import load_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def _loose_umask() -> object:
    """The helpers' modes must not depend on a strict umask of whoever runs the tests."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_private_mode_drops_group_and_other_bits() -> None:
    assert private_mode(stat.S_IFDIR | 0o755) == 0o700
    assert private_mode(stat.S_IFREG | 0o644) == 0o600
    assert private_mode(stat.S_IFREG | 0o755) == 0o700
    assert private_mode(stat.S_IFREG | 0o444) == 0o600


def test_make_private_dirs_creates_every_missing_level_0700(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir(mode=0o755)
    os.chmod(tmp_path / "old", 0o755)
    target = make_private_dirs(tmp_path / "old" / "a" / "b" / "c")
    assert target.is_dir()
    for rel in ("old/a", "old/a/b", "old/a/b/c"):
        assert mode(tmp_path / rel) == 0o700, rel
    assert mode(tmp_path / "old") == 0o755  # an existing parent is left as it is
    make_private_dirs(target)  # already there: nothing to do


def test_write_private_creates_and_tightens(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_private(path, b"one")
    assert mode(path) == 0o600 and path.read_bytes() == b"one"
    path.chmod(0o644)
    write_private(path, b"two")
    assert mode(path) == 0o600 and path.read_bytes() == b"two"


def test_tighten_tree_fixes_an_existing_loose_tree(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "revisions" / "acct").mkdir(parents=True)
    for folder in (root, root / "revisions", root / "revisions" / "acct"):
        folder.chmod(0o755)
    (root / "computalot.db").write_bytes(b"")
    (root / "computalot.db").chmod(0o644)
    script = root / "revisions" / "acct" / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o775)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (root / "link").symlink_to(outside)

    tighten_tree(root)

    assert mode(root) == 0o700
    assert mode(root / "revisions") == 0o700
    assert mode(root / "revisions" / "acct") == 0o700
    assert mode(root / "computalot.db") == 0o600
    assert mode(script) == 0o700  # executable for its owner still
    assert mode(outside) == 0o644  # a symlink is never followed


def test_secure_data_dir_creates_or_tightens(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh" / "data"
    secure_data_dir(load_settings(data_dir=fresh))
    assert mode(fresh) == 0o700 and mode(fresh.parent) == 0o700

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    (loose / "admin_key").write_text("flk_x")
    (loose / "admin_key").chmod(0o666)
    secure_data_dir(load_settings(data_dir=loose))
    assert mode(loose) == 0o700
    assert mode(loose / "admin_key") == 0o600


def test_sqlite_file_is_made_0600_before_sqlite_opens_it(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "computalot.db"
    private_sqlite_file(f"sqlite+aiosqlite:///{db}")
    assert db.exists() and mode(db) == 0o600
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    # SQLite gives its side files the database file's mode.
    for side in ("computalot.db-wal", "computalot.db-shm"):
        assert mode(tmp_path / side) == 0o600, side
    conn.close()

    db.chmod(0o644)
    private_sqlite_file(f"sqlite+aiosqlite:///{db}")  # an existing loose one is tightened
    assert mode(db) == 0o600


def test_sqlite_path_ignores_memory_and_other_backends(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite+aiosqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
    assert sqlite_path("sqlite+aiosqlite://") is None
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("postgresql+asyncpg://u:p@db/x") is None
    private_sqlite_file(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    assert not (tmp_path / "missing").exists()  # no folder is made for it
