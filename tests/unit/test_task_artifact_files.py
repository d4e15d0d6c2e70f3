"""A worker's side of task artifacts (``engine.task_files``) against a real local store: files
streamed in and named by key, the per-file cap, links never followed, inputs placed only inside
the working directory."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from computalot.artifacts.store import StoreConfig, open_store
from computalot.engine.task_files import InputUnavailable, place_inputs, upload_artifacts


@pytest.fixture
def store(tmp_path: Path) -> StoreConfig:
    return StoreConfig("local", root=str(tmp_path / "store"))


def read_blob(config: StoreConfig, key: str) -> bytes:
    return b"".join(open_store(config).read(key))


def test_files_are_streamed_into_the_store_and_only_their_keys_come_back(
    tmp_path: Path, store: StoreConfig
) -> None:
    art = tmp_path / "artifacts"
    (art / "sub").mkdir(parents=True)
    (art / "a.txt").write_bytes(b"alpha")
    (art / "sub" / "b.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    stored, warnings = upload_artifacts(art, store)
    assert warnings == []
    assert [s["path"] for s in stored] == ["a.txt", "sub/b.bin"]
    for item in stored:
        assert set(item) == {"path", "size", "sha256", "key"}
        data = (art / item["path"]).read_bytes()
        assert item["size"] == len(data)
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
        assert read_blob(store, item["key"]) == data


def test_a_file_over_the_cap_is_skipped_with_a_warning_naming_it(
    tmp_path: Path, store: StoreConfig
) -> None:
    art = tmp_path / "artifacts"
    art.mkdir()
    (art / "small").write_bytes(b"x" * 10)
    (art / "big").write_bytes(b"x" * 11)
    stored, warnings = upload_artifacts(art, store, max_bytes=10)
    assert [s["path"] for s in stored] == ["small"]
    assert len(warnings) == 1 and "big" in warnings[0] and "over 10" in warnings[0]


def test_links_in_the_artifact_directory_are_never_followed(
    tmp_path: Path, store: StoreConfig
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not the task's")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_text("nor this")
    art = tmp_path / "artifacts"
    art.mkdir()
    (art / "link").symlink_to(secret)
    (art / "dirlink").symlink_to(tmp_path / "elsewhere")
    (art / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(art / "fifo")
    (art / "ok").write_text("mine")
    stored, _warnings = upload_artifacts(art, store)
    assert [s["path"] for s in stored] == ["ok"]
    # An artifact directory the task replaced with a link has no files at all.
    swapped = tmp_path / "swapped"
    swapped.symlink_to(tmp_path / "elsewhere")
    assert upload_artifacts(swapped, store) == ([], [])


def test_no_store_means_a_warning_not_a_failure(tmp_path: Path) -> None:
    art = tmp_path / "artifacts"
    art.mkdir()
    (art / "a").write_text("x")
    stored, warnings = upload_artifacts(art, None)
    assert stored == [] and "no artifact store" in warnings[0]


def put(store: StoreConfig, data: bytes) -> str:
    with open_store(store).writer() as w:
        w.write(data)
        return w.commit().key


def test_inputs_are_placed_by_streaming_from_the_store(tmp_path: Path, store: StoreConfig) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").mkdir()
    (work / "data" / "old").write_text("replaced")
    data = os.urandom(2 * 1024 * 1024 + 1)
    key = put(store, data)
    place_inputs(work, [("art_a", key, "inputs/deep/d.bin"), ("art_a", key, "data/old")], store)
    assert (work / "inputs" / "deep" / "d.bin").read_bytes() == data
    assert (work / "data" / "old").read_bytes() == data


def test_an_input_never_lands_through_a_link_of_the_revision(
    tmp_path: Path, store: StoreConfig
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "inputs").symlink_to(outside)
    key = put(store, b"payload")
    with pytest.raises(InputUnavailable, match="not a directory"):
        place_inputs(work, [("art_a", key, "inputs/x")], store)
    assert list(outside.iterdir()) == []
    # A link at the file's own place is replaced, never written through.
    target = outside / "victim"
    target.write_text("keep")
    (work / "f").symlink_to(target)
    place_inputs(work, [("art_a", key, "f")], store)
    assert target.read_text() == "keep"
    assert not (work / "f").is_symlink() and (work / "f").read_bytes() == b"payload"


def test_an_unavailable_input_names_the_artifact(tmp_path: Path, store: StoreConfig) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InputUnavailable, match="art_gone"):
        place_inputs(work, [("art_gone", "", "x")], store)
    with pytest.raises(InputUnavailable, match="art_gone"):
        place_inputs(work, [("art_gone", "blobs/00/nothing", "x")], store)
    key = put(store, b"a")
    with pytest.raises(InputUnavailable, match="both placed"):
        place_inputs(work, [("art_1", key, "y"), ("art_2", key, "y")], store)


def test_transfers_past_their_deadline_stop_with_a_reason(
    tmp_path: Path, store: StoreConfig
) -> None:
    art = tmp_path / "artifacts"
    art.mkdir()
    (art / "late.bin").write_bytes(b"x" * 100)
    past = time.monotonic() - 1
    stored, warnings = upload_artifacts(art, store, deadline=past)
    assert stored == [] and "late.bin" in warnings[0] and "out of time" in warnings[0]
    assert upload_artifacts(art, store, deadline=time.monotonic() + 60)[0] != []
    work = tmp_path / "work"
    work.mkdir()
    key = put(store, b"bytes")
    with pytest.raises(InputUnavailable, match="timeout_s"):
        place_inputs(work, [("art_a", key, "x")], store, deadline=past)
