"""A seccomp filter that refuses new user namespaces inside the sandbox (docs/sandbox.md).

Where the workers are root, bubblewrap runs without a user namespace of its own (so it can
mount an interpreter under a 0700 ``/root``) and the command drops to the task's uid; the task
could then still create user namespaces itself, and with them a kernel's worth of code that
only root could reach before. This classic-BPF program, handed to bubblewrap (``--seccomp``),
makes ``unshare`` and ``clone`` with ``CLONE_NEWUSER`` fail with EPERM, and ``clone3`` (whose
flags live in memory a filter cannot read) fail with ENOSYS, which C libraries answer by
falling back to ``clone``. Other ABIs on the same machine (i386, x32), which have their own
syscall numbers, are refused outright.

Written for x86_64 only: :func:`program` returns None elsewhere, and the sandbox then goes
without the filter.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
CLONE_NEWUSER = 0x10000000
NR_CLONE, NR_UNSHARE, NR_CLONE3 = 56, 272, 435

# BPF instruction classes and fields (linux/filter.h, linux/seccomp.h).
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # struct seccomp_data (little-endian)


def _filter() -> list[tuple[int, int, int, int]]:
    """(code, jump if true, jump if false, k) instructions; jumps count from the next one."""
    allow, eperm, enosys = 9, 10, 11  # indices of the three returns at the end
    program = [
        (LD_W_ABS, 0, 0, OFFSET_ARCH),  # 0
        (JEQ_K, 0, eperm - 2, AUDIT_ARCH_X86_64),  # 1: another ABI: refused
        (LD_W_ABS, 0, 0, OFFSET_NR),  # 2
        (JGE_K, eperm - 4, 0, X32_SYSCALL_BIT),  # 3: x32 numbers: refused
        (JEQ_K, enosys - 5, 0, NR_CLONE3),  # 4
        (JEQ_K, 7 - 6, 0, NR_UNSHARE),  # 5
        (JEQ_K, 0, allow - 7, NR_CLONE),  # 6
        (LD_W_ABS, 0, 0, OFFSET_ARG0),  # 7: flags (their low 32 bits)
        (JSET_K, eperm - 9, 0, CLONE_NEWUSER),  # 8
        (RET_K, 0, 0, RET_ALLOW),  # 9
        (RET_K, 0, 0, RET_ERRNO | errno.EPERM),  # 10
        (RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),  # 11
    ]
    return program


_PROGRAM: list[bytes | None] = []


def program() -> bytes | None:
    """The filter as bubblewrap reads it (``struct sock_filter`` array), or None off x86_64."""
    if not _PROGRAM:
        machine = platform.machine()
        _PROGRAM.append(
            b"".join(struct.pack("<HBBI", *insn) for insn in _filter())
            if machine in ("x86_64", "AMD64")
            else None
        )
    return _PROGRAM[0]


def program_fd() -> int | None:
    """A pipe's read end holding :func:`program`, for one ``--seccomp`` (bubblewrap reads it
    to the end); None where there is no filter. The caller closes it after the spawn."""
    data = program()
    if data is None:
        return None
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)  # far below a pipe's buffer
    finally:
        os.close(write_fd)
    return read_fd
