"""Safe extraction of a user-pushed project tarball (docs/llms-full.md, "Projects").

The body of ``POST /projects/:name/push`` is untrusted. Python's ``tarfile.extractall`` follows
links, creates devices and trusts header sizes, so this module never calls it. Instead:

1. **Pre-scan** every member before anything is written: refuse absolute paths, ``..``, links of
   any kind, devices, FIFOs and other special types (400 :class:`UnsafeTarball`, naming the
   member), and refuse more than ``max_members`` members or more than ``max_unpacked_bytes``
   declared bytes (413). The whole compressed stream is read to its end, so a truncated or
   corrupt gzip is refused before the first byte lands on disk.
2. **Extract** each regular file by hand: directories are made one component at a time and
   checked with ``lstat`` (an existing symlink is never followed), files are opened with
   ``O_EXCL | O_NOFOLLOW``, the resolved parent must stay under ``dest``, and the bytes actually
   written are counted against the cap again, in case a header lied.
3. On any failure ``dest`` is removed, so a refused push leaves nothing behind.

What lands in the data dir is the owner's only: directories 0700, files 0600, or 0700 when the
member carries an executable bit (:mod:`computalot.private_files`).

The result carries a content hash over (path, sha256, executable bit) of every file, sorted by
path, so the same content gives the same revision whatever the member order or mtimes. Empty
directories are created but are not part of the hash.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from computalot.errors import BadRequest, PayloadTooLarge, UnsafeTarball
from computalot.private_files import DIR_MODE, FILE_MODE, make_private_dirs

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1024 * 1024
MAX_NAME_BYTES = 255  # one path component, as on Linux filesystems
MAX_PATH_BYTES = 4096  # a whole relative path
# Bytes allowed after the tar end marker (record padding; GNU tar's largest blocking factor
# pads to well under this). More is refused, so trailing junk cannot be a decompression bomb.
MAX_TRAILING_BYTES = 16 * 1024 * 1024
NOT_A_TARBALL = "body is not a gzip'd tar archive"
# Errors raised while *reading* a damaged archive; anything else (disk full, ...) is ours.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    UnicodeError,
)


@dataclass(frozen=True)
class FileEntry:
    """One regular file of a revision: its relative POSIX ``path``, ``size`` in bytes, hex
    ``sha256`` of its content, and whether it carries an executable bit."""

    path: str
    size: int
    sha256: str
    executable: bool = False


@dataclass
class ExtractedTree:
    """What :func:`extract_tarball` wrote: ``files`` sorted by path, the order-independent
    ``content_hash`` (sha256 hex) and ``total_bytes`` of file content."""

    files: list[FileEntry] = field(default_factory=list)
    content_hash: str = ""
    total_bytes: int = 0


def _unsafe(name: str, msg: str) -> UnsafeTarball:
    return UnsafeTarball(
        f"tarball member {name!r}: {msg}", details=[{"loc": ["tarball", name], "msg": msg}]
    )


def _too_large(msg: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"tarball {msg}", details=[{"loc": ["tarball"], "msg": msg}])


def _not_a_tarball(why: str = NOT_A_TARBALL) -> BadRequest:
    return BadRequest(why, details=[{"loc": ["tarball"], "msg": why}])


def _declared_size(member: tarfile.TarInfo) -> int:
    """The size a header claims, in bytes (a seam so tests can make a header lie)."""
    return member.size


def _normalize(name: str) -> str:
    """Member name → clean relative POSIX path ('' for the archive root), or raise."""
    if name.startswith(("/", "\\")):
        raise _unsafe(name, "absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(name, "'..' path components are not allowed")
    rel = "/".join(parts)
    try:
        encoded = rel.encode("utf-8")
    except UnicodeError:
        raise _unsafe(name, "path is not valid UTF-8") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise _unsafe(name, "path contains control characters")
    if len(encoded) > MAX_PATH_BYTES or any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise _unsafe(name, "path is too long")
    return rel


def _check_type(member: tarfile.TarInfo) -> None:
    if member.type == tarfile.GNUTYPE_SPARSE or getattr(member, "sparse", None) is not None:
        raise _unsafe(member.name, "sparse files are not supported")
    if member.isdir() or member.isreg():
        return
    if member.issym() or member.islnk():
        raise _unsafe(member.name, "symlinks and hardlinks are not allowed")
    if member.ischr() or member.isblk():
        raise _unsafe(member.name, "device files are not allowed")
    if member.isfifo():
        raise _unsafe(member.name, "FIFOs are not allowed")
    raise _unsafe(member.name, f"unsupported member type {member.type!r}")


def _scan(
    tf: tarfile.TarFile, max_members: int, max_bytes: int
) -> list[tuple[tarfile.TarInfo, str]]:
    """Validate every member; return (member, relative path) pairs to create, in archive order."""
    plan: list[tuple[tarfile.TarInfo, str]] = []
    files: set[str] = set()
    dirs: set[str] = set()
    count = declared = 0
    for member in tf:
        count += 1
        if count > max_members:
            raise _too_large(f"has more than {max_members} members")
        _check_type(member)
        rel = _normalize(member.name)
        if member.isreg():
            declared += _declared_size(member)
            if declared > max_bytes:
                raise _too_large(f"unpacks to more than {max_bytes} bytes")
        if not rel:
            if member.isreg():
                raise _unsafe(member.name, "a file cannot be the archive root")
            continue
        parents = [posixpath.dirname(rel)]
        while parents[-1]:
            parents.append(posixpath.dirname(parents[-1]))
        if rel in files or (member.isreg() and rel in dirs) or any(p in files for p in parents):
            raise _unsafe(member.name, "path is duplicated or clashes with another member")
        (files if member.isreg() else dirs).add(rel)
        dirs.update(p for p in parents if p)
        plan.append((member, rel))
    if not count:
        raise _not_a_tarball("tarball is empty")
    if not files:
        raise _not_a_tarball("tarball contains no files")
    return plan


def _drain(stream: IO[bytes]) -> None:
    """Read the rest of ``stream`` so a truncated or corrupt gzip fails now, tolerating at most
    ``MAX_TRAILING_BYTES`` after the tar end marker."""
    seen = 0
    while chunk := stream.read(CHUNK_BYTES):
        seen += len(chunk)
        if seen > MAX_TRAILING_BYTES:
            raise _too_large(f"has more than {MAX_TRAILING_BYTES} bytes after its end marker")


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _make_dirs(root: str, rel: str) -> str:
    """Create ``root/rel`` one component at a time, refusing anything that is not a real
    directory (never following a symlink); return the absolute path."""
    current = root
    for part in rel.split("/") if rel else []:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, DIR_MODE)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise _unsafe(rel, "path clashes with an existing non-directory") from None
    if not _is_under(os.path.realpath(current), root):
        raise _unsafe(rel, "path resolves outside the project directory")
    return current


def _write_file(
    tf: tarfile.TarFile, member: tarfile.TarInfo, root: str, rel: str, budget: int
) -> tuple[FileEntry, int]:
    """Copy one member to ``root/rel``; return its entry and the bytes written. Raise 413 if
    more than ``budget`` bytes come out."""
    parent = _make_dirs(root, posixpath.dirname(rel))
    target = os.path.join(parent, posixpath.basename(rel))
    executable = bool(member.mode & 0o111)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    digest = hashlib.sha256()
    written = 0
    fd = os.open(target, flags, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        try:
            source = tf.extractfile(member)
            if source is None:  # pragma: no cover - isreg() members always have data
                raise _not_a_tarball()
            while chunk := source.read(CHUNK_BYTES):
                written += len(chunk)
                if written > budget:
                    raise _too_large("unpacks to more bytes than its headers declare")
                digest.update(chunk)
                out.write(chunk)
        except _READ_ERRORS:
            raise _not_a_tarball() from None
        os.fchmod(out.fileno(), (FILE_MODE | stat.S_IXUSR) if executable else FILE_MODE)
    return FileEntry(rel, written, digest.hexdigest(), executable), written


def content_hash(files: list[FileEntry]) -> str:
    """sha256 hex over the path-sorted (path, sha256, executable bit) entries. NUL cannot occur
    in a path, so the framing is unambiguous."""
    h = hashlib.sha256()
    for entry in sorted(files, key=lambda e: e.path):
        h.update(f"{entry.path}\0{entry.sha256}\0{'x' if entry.executable else '-'}\n".encode())
    return h.hexdigest()


def _open_tar(raw: IO[bytes]) -> tuple[tarfile.TarFile, IO[bytes], bool]:
    """Open ``raw`` as gzip'd tar when it starts with the gzip magic, else as plain tar."""
    is_gzip = raw.read(2) == GZIP_MAGIC
    raw.seek(0)
    stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if is_gzip else raw
    try:
        return tarfile.open(fileobj=stream, mode="r:"), stream, is_gzip
    except _READ_ERRORS:
        raise _not_a_tarball() from None


def _plan(
    tf: tarfile.TarFile, stream: IO[bytes], is_gzip: bool, max_members: int, max_bytes: int
) -> list[tuple[tarfile.TarInfo, str]]:
    """Scan all members and read the stream to its end, so damage shows before any write."""
    try:
        plan = _scan(tf, max_members, max_bytes)  # tarfile itself notices a short plain tar
        if is_gzip:
            _drain(stream)
    except _READ_ERRORS:
        raise _not_a_tarball() from None
    return plan


def extract_tarball(
    src: Path,
    dest: Path,
    *,
    max_members: int = 20_000,
    max_unpacked_bytes: int = 2 * 1024**3,
) -> ExtractedTree:
    """Safely unpack the (gzip'd or plain) tar at ``src`` into ``dest``.

    ``dest`` must not exist or be an empty directory; on any failure it is removed. Raises
    :class:`UnsafeTarball` (400), :class:`PayloadTooLarge` (413) or :class:`BadRequest` (400).
    ``max_unpacked_bytes`` caps the sum of file sizes in bytes, both declared and written.
    """
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise ValueError(f"extraction target {dest} must be absent or an empty directory")
    files: list[FileEntry] = []
    total = 0
    try:
        with open(src, "rb") as raw:
            tf, stream, is_gzip = _open_tar(raw)
            with tf:
                plan = _plan(tf, stream, is_gzip, max_members, max_unpacked_bytes)
                make_private_dirs(dest)
                root = os.path.realpath(dest)
                for member, rel in plan:
                    if member.isdir():
                        _make_dirs(root, rel)
                        continue
                    budget = max_unpacked_bytes - total
                    entry, written = _write_file(tf, member, root, rel, budget)
                    files.append(entry)
                    total += written
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    files.sort(key=lambda e: e.path)
    return ExtractedTree(files=files, content_hash=content_hash(files), total_bytes=total)


def _identity(entry: FileEntry) -> tuple[str, bool]:
    return entry.sha256, entry.executable


def diff_trees(old: list[FileEntry] | None, new: list[FileEntry]) -> dict[str, Any]:
    """Compare two revisions' file lists: ``added``/``removed``/``modified`` path lists (sorted)
    and the ``unchanged`` count. A changed executable bit counts as modified."""
    before = {e.path: e for e in old or []}
    after = {e.path: e for e in new}
    common = [p for p in after if p in before]
    modified = [p for p in common if _identity(before[p]) != _identity(after[p])]
    return {
        "added": sorted(p for p in after if p not in before),
        "removed": sorted(p for p in before if p not in after),
        "modified": sorted(modified),
        "unchanged": len(common) - len(modified),
    }
