"""Safe tarball extraction: the happy path, content hashing, diffs and a malicious corpus."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from computalot.errors import BadRequest, PayloadTooLarge, UnsafeTarball
from computalot.projects import tarball
from computalot.projects.tarball import FileEntry, diff_trees, extract_tarball

Member = tuple[tarfile.TarInfo, bytes | None]


def reg(name: str, data: bytes = b"", mode: int = 0o644, mtime: int = 1_700_000_000) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def write_tar(path: Path, members: Iterable[Member], *, gz: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A sandbox holding the tarball and dest; nothing else may appear in it."""
    d = tmp_path / "box"
    d.mkdir()
    return d


def contents(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_refused(
    box: Path,
    members: list[Member],
    exc: type[Exception],
    *,
    gz: bool = True,
    match: str | None = None,
    **kwargs: int,
) -> Exception:
    src = write_tar(box / "in.tgz", members, gz=gz)
    dest = box / "dest"
    with pytest.raises(exc, match=match) as info:
        extract_tarball(src, dest, **kwargs)
    assert not dest.exists(), "dest must be removed on failure"
    assert contents(box) == {"in.tgz"}, "nothing may be written next to dest"
    return info.value


def test_extracts_files_dirs_and_modes(box: Path) -> None:
    src = write_tar(
        box / "in.tgz",
        [
            directory("./"),
            directory("./pkg"),
            reg("./job.py", b"print('hi')\n"),
            reg("pkg/run.sh", b"#!/bin/sh\n", mode=0o700),
            reg("pkg/data.bin", b"\x00" * 10, mode=0o4777 & ~0o111),
            directory("empty"),
        ],
    )
    tree = extract_tarball(src, box / "dest")
    dest = box / "dest"
    assert [f.path for f in tree.files] == ["job.py", "pkg/data.bin", "pkg/run.sh"]
    assert (dest / "job.py").read_bytes() == b"print('hi')\n"
    assert (dest / "empty").is_dir()
    # The owner's only (the data dir's rule); the executable bit is kept for the owner.
    assert (dest / "pkg/run.sh").stat().st_mode & 0o7777 == 0o700
    assert (dest / "pkg/data.bin").stat().st_mode & 0o7777 == 0o600
    assert (dest / "job.py").stat().st_mode & 0o7777 == 0o600
    for folder in (dest, dest / "pkg", dest / "empty"):
        assert folder.stat().st_mode & 0o7777 == 0o700
    assert tree.total_bytes == 12 + 10 + 10
    job = tree.files[0]
    assert job == FileEntry("job.py", 12, hashlib.sha256(b"print('hi')\n").hexdigest(), False)
    assert tree.files[2].executable


def test_accepts_uncompressed_tar(box: Path) -> None:
    src = write_tar(box / "in.tar", [reg("a.txt", b"x")], gz=False)
    assert [f.path for f in extract_tarball(src, box / "dest").files] == ["a.txt"]


def test_content_hash_ignores_order_and_mtime(box: Path) -> None:
    a = write_tar(box / "a.tgz", [reg("x", b"1", mtime=1), reg("d/y", b"2", mtime=2)])
    b = write_tar(box / "b.tgz", [reg("d/y", b"2", mtime=99), reg("./x", b"1", mtime=7)])
    ha = extract_tarball(a, box / "da").content_hash
    assert ha == extract_tarball(b, box / "db").content_hash
    c = write_tar(box / "c.tgz", [reg("x", b"1"), reg("d/y", b"2", mode=0o755)])
    assert extract_tarball(c, box / "dc").content_hash != ha, "exec bit is part of the content"
    d = write_tar(box / "d.tgz", [reg("x", b"1"), reg("d/y", b"3")])
    assert extract_tarball(d, box / "dd").content_hash != ha


def test_diff_trees() -> None:
    old = [FileEntry("a", 1, "h1"), FileEntry("b", 1, "h2"), FileEntry("c", 1, "h3")]
    new = [
        FileEntry("d", 1, "h4"),
        FileEntry("b", 1, "h2x"),
        FileEntry("c", 1, "h3", executable=True),
        FileEntry("a", 1, "h1"),
        FileEntry("0", 1, "h0"),
    ]
    assert diff_trees(old, new) == {
        "added": ["0", "d"],
        "removed": [],
        "modified": ["b", "c"],
        "unchanged": 1,
    }
    assert diff_trees(None, old) == {
        "added": ["a", "b", "c"],
        "removed": [],
        "modified": [],
        "unchanged": 0,
    }
    assert diff_trees(old, old[:1])["removed"] == ["b", "c"]


def test_dest_must_be_fresh(box: Path) -> None:
    src = write_tar(box / "in.tgz", [reg("a")])
    (box / "dest").mkdir()
    (box / "dest" / "keep").write_text("mine")
    with pytest.raises(ValueError):
        extract_tarball(src, box / "dest")
    assert (box / "dest" / "keep").read_text() == "mine", "a refused dest is left alone"


@pytest.mark.parametrize(
    ("members", "culprit"),
    [
        ([reg("ok"), reg("../evil", b"x")], "../evil"),
        ([reg("/etc/evil", b"x")], "/etc/evil"),
        ([reg("a/../../evil", b"x")], "a/../../evil"),
        ([reg("ok"), directory("../outside")], "../outside"),
        ([reg("ok"), special("passwd", tarfile.SYMTYPE, "/etc/passwd")], "passwd"),
        ([reg("ok"), special("up", tarfile.SYMTYPE, "../x")], "up"),
        ([reg("ok"), special("inner", tarfile.SYMTYPE, "ok")], "inner"),
        ([reg("ok"), special("hard", tarfile.LNKTYPE, "/etc/passwd")], "hard"),
        ([reg("ok"), special("hard2", tarfile.LNKTYPE, "../../x")], "hard2"),
        ([reg("ok"), special("tty", tarfile.CHRTYPE)], "tty"),
        ([reg("ok"), special("sda", tarfile.BLKTYPE)], "sda"),
        ([reg("ok"), special("fifo", tarfile.FIFOTYPE)], "fifo"),
        ([reg("ok"), special("cont", tarfile.GNUTYPE_SPARSE)], "cont"),
        ([reg("bad\nname")], "bad\nname"),
        ([reg("dup", b"1"), reg("./dup", b"2")], "./dup"),
        ([reg("f", b"1"), reg("f/g", b"2")], "f/g"),
        ([directory("d"), reg("d/x"), reg("d", b"now a file")], "d"),
    ],
)
def test_refuses_unsafe_members(box: Path, members: list[Member], culprit: str) -> None:
    err = assert_refused(box, members, UnsafeTarball)
    assert isinstance(err, UnsafeTarball) and err.status == 400
    assert repr(culprit) in err.message
    assert err.details[0]["loc"] == ["tarball", culprit]


def test_symlink_then_write_through_it_never_escapes(box: Path) -> None:
    # The classic two-step attack: link 'l' -> /tmp-ish dir, then write 'l/pwned'.
    target = box.parent / "victim"
    target.mkdir()
    members = [special("l", tarfile.SYMTYPE, str(target)), reg("l/pwned", b"x")]
    assert_refused(box, members, UnsafeTarball)
    assert list(target.iterdir()) == []


def test_too_many_members(box: Path) -> None:
    members = [reg(f"f{i:05d}") for i in range(20_001)]
    err = assert_refused(box, members, PayloadTooLarge, match="more than 20000 members")
    assert isinstance(err, PayloadTooLarge) and err.status == 413


def test_exactly_the_member_cap_is_fine(box: Path) -> None:
    src = write_tar(box / "in.tgz", [reg(f"f{i}") for i in range(50)])
    assert len(extract_tarball(src, box / "dest", max_members=50).files) == 50


def test_declared_size_over_cap(box: Path) -> None:
    # A header that claims more than the cap is refused before its data is even read.
    info = tarfile.TarInfo("huge")
    info.size = 3 * 1024**3
    raw = info.tobuf(tarfile.PAX_FORMAT) + b"\x00" * 1024
    (box / "in.tgz").write_bytes(gzip.compress(raw))
    with pytest.raises(PayloadTooLarge, match="more than 2147483648 bytes"):
        extract_tarball(box / "in.tgz", box / "dest")
    assert contents(box) == {"in.tgz"}


def test_sum_of_sizes_over_small_cap(box: Path) -> None:
    members = [reg("a", b"x" * 600), reg("b", b"y" * 600)]
    assert_refused(box, members, PayloadTooLarge, max_unpacked_bytes=1000)


def test_gzip_bomb(box: Path) -> None:
    # 8 MiB of zeros squeezes to a few KiB of gzip; a 1 MiB cap must refuse it.
    bomb = [reg("bomb", b"\x00" * (8 * 1024 * 1024))]
    assert write_tar(box / "probe.tgz", bomb).stat().st_size < 64 * 1024
    (box / "probe.tgz").unlink()
    assert_refused(box, bomb, PayloadTooLarge, max_unpacked_bytes=1024 * 1024)


def test_make_dirs_never_follows_a_symlink(box: Path) -> None:
    # extract_tarball only writes into an empty dest, but the helper must hold on its own.
    outside = box / "outside"
    outside.mkdir()
    root = box / "root"
    root.mkdir()
    (root / "l").symlink_to(outside)
    with pytest.raises(UnsafeTarball):
        tarball._make_dirs(str(root), "l/x")
    assert list(outside.iterdir()) == []


def test_long_names(box: Path) -> None:
    long_ok = "d/" + "n" * 255
    src = write_tar(box / "in.tgz", [reg(long_ok, b"x")])
    assert [f.path for f in extract_tarball(src, box / "dest").files] == [long_ok]
    (box / "in.tgz").unlink()
    shutil.rmtree(box / "dest")
    assert_refused(box, [reg("n" * 256, b"x")], UnsafeTarball, match="too long")


def test_written_bytes_guard_catches_a_lying_header(
    box: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Make the pre-scan believe every header claims 0 bytes: the write-time count must still stop.
    monkeypatch.setattr(tarball, "_declared_size", lambda member: 0)
    members = [reg("a", b"x" * 700), reg("b", b"y" * 700)]
    assert_refused(box, members, PayloadTooLarge, match="more bytes than", max_unpacked_bytes=1000)


def test_trailing_garbage_bomb_after_end_marker(box: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(reg("a", b"x")[0], io.BytesIO(b"x"))
    trailing = b"\x00" * (tarball.MAX_TRAILING_BYTES + 1024 * 1024)
    (box / "in.tgz").write_bytes(gzip.compress(buf.getvalue() + trailing, compresslevel=1))
    with pytest.raises(PayloadTooLarge, match="after its end marker"):
        extract_tarball(box / "in.tgz", box / "dest")
    assert contents(box) == {"in.tgz"}


BodyMaker = Callable[[bytes], bytes]


@pytest.mark.parametrize(
    "make_body",
    [
        pytest.param(lambda good: b"this is not a tarball at all" * 40, id="garbage"),
        pytest.param(lambda good: b"", id="empty-file"),
        pytest.param(lambda good: gzip.compress(b"not a tar either" * 100), id="gzip-not-tar"),
        pytest.param(lambda good: good[: len(good) // 2], id="truncated-gzip"),
        pytest.param(lambda good: good[:-4], id="gzip-missing-trailer"),
        pytest.param(lambda good: good[:12] + b"\xff" * 40 + good[52:], id="corrupt-gzip"),
        pytest.param(lambda good: gzip.decompress(good)[:1500], id="truncated-plain-tar"),
        pytest.param(lambda good: gzip.compress(b"\x00" * 10240), id="empty-archive"),
        pytest.param(lambda good: b"\x1f\x8b", id="gzip-magic-only"),
    ],
)
def test_refuses_unreadable_bodies(box: Path, make_body: BodyMaker) -> None:
    good = write_tar(
        box / "good.tgz", [reg("a", os.urandom(4000)), reg("b", os.urandom(4000))]
    ).read_bytes()
    (box / "good.tgz").unlink()
    (box / "in.tgz").write_bytes(make_body(good))
    with pytest.raises(BadRequest) as info:
        extract_tarball(box / "in.tgz", box / "dest")
    assert type(info.value) is BadRequest
    assert info.value.details[0]["loc"] == ["tarball"]
    assert contents(box) == {"in.tgz"}


def test_not_a_tarball_message(box: Path) -> None:
    (box / "in.tgz").write_bytes(b"PK\x03\x04 a zip file, say" * 50)
    with pytest.raises(BadRequest, match="body is not a gzip'd tar archive"):
        extract_tarball(box / "in.tgz", box / "dest")


def test_directories_only_is_empty(box: Path) -> None:
    src = write_tar(box / "in.tgz", [directory("."), directory("a")])
    with pytest.raises(BadRequest, match="no files"):
        extract_tarball(src, box / "dest")
    assert not (box / "dest").exists()


def test_dest_removed_when_disk_write_fails(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tarball._write_file
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(tarball, "_write_file", flaky)
    src = write_tar(box / "in.tgz", [reg("a", b"1"), reg("b", b"2")])
    with pytest.raises(OSError):
        extract_tarball(src, box / "dest")
    assert contents(box) == {"in.tgz"}
