"""DirCleaner: attempt directories are removed off the caller's thread, all of them."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from computalot.engine import cleanup
from computalot.engine.cleanup import DirCleaner


def _tree(root: Path, name: str) -> Path:
    path = root / name
    (path / "work" / "sub").mkdir(parents=True)
    (path / "work" / "sub" / "file.txt").write_text("x" * 1000)
    (path / "payload.json").write_text("{}")
    (path / "link").symlink_to(root)  # a link is removed, not followed
    return path


def test_removes_every_tree_handed_over(tmp_path: Path) -> None:
    cleaner = DirCleaner()
    paths = [_tree(tmp_path, f"attempt-{i}") for i in range(20)]
    for path in paths:
        cleaner.remove(path)
    cleaner.drain(timeout_s=10)
    assert not [p for p in paths if p.exists()]
    assert tmp_path.exists()  # the link's target is untouched


def test_removal_runs_on_another_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = cleanup.shutil.rmtree

    def spy(path: Path, ignore_errors: bool = False) -> None:
        seen.append(threading.current_thread().name)
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(cleanup.shutil, "rmtree", spy)
    cleaner = DirCleaner()
    cleaner.remove(_tree(tmp_path, "a"))
    cleaner.drain(timeout_s=10)
    assert seen == ["computalot-cleanup"]


def test_a_thread_that_falls_behind_makes_the_caller_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cleanup, "MAX_PENDING", 0)
    cleaner = DirCleaner()
    path = _tree(tmp_path, "a")
    cleaner.remove(path)
    assert not path.exists()  # removed inline, before remove() returned


def test_a_failing_path_does_not_stop_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cleanup.shutil.rmtree

    def flaky(path: Path, ignore_errors: bool = False) -> None:
        if Path(path).name == "bad":
            raise OSError("disk on fire")
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(cleanup.shutil, "rmtree", flaky)
    cleaner = DirCleaner()
    bad, good = _tree(tmp_path, "bad"), _tree(tmp_path, "good")
    cleaner.remove(bad)
    cleaner.remove(good)
    cleaner.drain(timeout_s=10)
    assert bad.exists() and not good.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _named(root: Path, namespace: int, pid: int) -> Path:
    path = root / f"tsk_x-y-1-w{namespace}.{pid}-abc_123"
    (path / "work").mkdir(parents=True)
    (path / "work" / "f").write_text("x")
    return path


def test_orphans_are_attempts_of_dead_workers_in_this_pid_namespace(tmp_path: Path) -> None:
    namespace = os.stat("/proc/self/ns/pid").st_ino
    dead = _named(tmp_path, namespace, _dead_pid())
    mine = _named(tmp_path, namespace, os.getpid())
    elsewhere = _named(tmp_path, namespace + 1, _dead_pid())  # another container's
    unnamed = tmp_path / "tsk_x-y-1-abc_123"  # no owner in the name
    unnamed.mkdir()
    assert cleanup.orphans(tmp_path) == [dead]
    assert mine.exists() and elsewhere.exists() and unnamed.exists()


def test_sweeps_orphans_first_then_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = os.stat("/proc/self/ns/pid").st_ino
    cleaner = DirCleaner()
    dead = _named(tmp_path, namespace, _dead_pid())
    mine = _named(tmp_path, namespace, os.getpid())
    cleaner.sweep(tmp_path)
    cleaner.drain(timeout_s=10)
    assert not dead.exists() and mine.exists()
    later = _named(tmp_path, namespace, _dead_pid())
    cleaner.sweep(tmp_path)  # swept a moment ago: nothing queued
    cleaner.drain(timeout_s=10)
    assert later.exists()
    monkeypatch.setattr(cleanup, "SWEEP_INTERVAL_S", 0.0)
    cleaner.sweep(tmp_path)
    cleaner.drain(timeout_s=10)
    assert not later.exists()


def test_owner_tag_names_this_process() -> None:
    tag = cleanup.owner_tag()
    match = cleanup.OWNER.search(f"tsk_a-b-2-{tag}q1w2_e3r")
    assert match is not None and int(match[2]) == os.getpid()
