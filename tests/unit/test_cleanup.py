"""DirCleaner: attempt directories are removed off the caller's thread, all of them."""

from __future__ import annotations

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
