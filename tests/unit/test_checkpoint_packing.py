"""Checkpoint directories packed into the artifact store and restored (``engine.checkpoints``)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from computalot.artifacts.store import StoreConfig
from computalot.engine.checkpoints import (
    pack_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    wants_resume,
)


def _store(tmp_path: Path) -> StoreConfig:
    return StoreConfig("local", root=str(tmp_path / "store"))


def _attempt(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name / "checkpoint"
    directory.mkdir(parents=True)
    return directory


def test_save_then_restore_round_trips_files_and_subdirectories(tmp_path: Path) -> None:
    store = _store(tmp_path)
    source = _attempt(tmp_path, "a1")
    (source / "state.json").write_text('{"step": 7}')
    (source / "deep" / "er").mkdir(parents=True)
    (source / "deep" / "er" / "w.bin").write_bytes(os.urandom(70_000))
    (source / "empty-dir").mkdir()
    saved, warnings = save_checkpoint(source, store)
    assert warnings == []
    assert saved is not None and saved["size"] > 70_000 and len(saved["sha256"]) == 64
    target = _attempt(tmp_path, "a2")
    assert restore_checkpoint(target, saved["key"], store) == []
    assert (target / "state.json").read_text() == '{"step": 7}'
    assert (target / "deep/er/w.bin").read_bytes() == (source / "deep/er/w.bin").read_bytes()
    assert (target / "empty-dir").is_dir()


def test_an_empty_directory_saves_nothing(tmp_path: Path) -> None:
    source = _attempt(tmp_path, "a1")
    (source / "only-a-dir").mkdir()
    assert save_checkpoint(source, _store(tmp_path)) == (None, [])


def test_links_are_never_followed_nor_saved(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("do not pack me")
    source = _attempt(tmp_path, "a1")
    (source / "ok.txt").write_text("fine")
    (source / "leak").symlink_to(secret)
    out = tmp_path / "c.tar"
    packed, warnings = pack_checkpoint(source, out)
    assert packed and any("link" in w for w in warnings)
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["ok.txt"]


def test_a_directory_replaced_by_a_link_saves_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_text("x")
    link = tmp_path / "a1" / "checkpoint"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    assert save_checkpoint(link, _store(tmp_path)) == (None, [])


def test_over_the_size_cap_is_not_saved_with_a_warning(tmp_path: Path) -> None:
    source = _attempt(tmp_path, "a1")
    (source / "big").write_bytes(b"x" * 5000)
    saved, warnings = save_checkpoint(source, _store(tmp_path), max_bytes=1000)
    assert saved is None
    assert any("limit" in w for w in warnings)


def test_missing_or_corrupt_checkpoint_starts_empty_with_a_warning(tmp_path: Path) -> None:
    store = _store(tmp_path)
    target = _attempt(tmp_path, "a1")
    warnings = restore_checkpoint(target, "no/such/key", store)
    assert len(warnings) == 1 and "started empty" in warnings[0]
    assert list(target.iterdir()) == []
    opened = store.open()
    with opened.writer(max_bytes=None) as writer:
        writer.write(b"this is not a tar file" * 100)
        blob = writer.commit()
    warnings = restore_checkpoint(target, blob.key, store)
    assert len(warnings) == 1 and "started empty" in warnings[0]
    assert list(target.iterdir()) == []


def test_a_tar_escaping_its_directory_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    evil = tmp_path / "evil.tar"
    payload = tmp_path / "payload"
    payload.write_text("escaped")
    with tarfile.open(evil, "w") as tar:
        tar.add(payload, arcname="../../escaped.txt")
    blob = store.open().put_file(evil)
    target = _attempt(tmp_path, "a1")
    warnings = restore_checkpoint(target, blob.key, store)
    assert warnings and "started empty" in warnings[0]
    assert not (tmp_path / "escaped.txt").exists()


def test_resume_is_the_default_once_enabled() -> None:
    assert wants_resume({"checkpointing": {"enabled": True}})
    assert wants_resume({"checkpointing": {"enabled": True, "resume_from_latest": True}})
    assert not wants_resume({"checkpointing": {"enabled": True, "resume_from_latest": False}})
    assert not wants_resume({"checkpointing": None})
    assert not wants_resume({})
