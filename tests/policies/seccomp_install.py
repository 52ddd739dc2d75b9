"""A test-only seccomp installer: `python seccomp_install.py FILTER.bpf PROGRAM [ARGS...]`.

Installs the BPF program from FILTER.bpf on this process, then execs PROGRAM. The real
launcher does the same two steps (in rootless/); this copy keeps the policies tests
independent of it. Works unprivileged: PR_SET_NO_NEW_PRIVS is what lets a process
without CAP_SYS_ADMIN install a filter.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "s390x": 348, "ppc64le": 358}


class SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def install(program: bytes) -> None:
    if len(program) % 8 or not program:
        raise ValueError(f"not a BPF program: {len(program)} bytes")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), "prctl(PR_SET_NO_NEW_PRIVS)")
    n = len(program) // 8
    insns = (SockFilter * n).from_buffer_copy(program)
    prog = SockFprog(n, ctypes.cast(insns, ctypes.POINTER(SockFilter)))
    rc = libc.syscall(
        ctypes.c_long(SYS_SECCOMP[platform.machine()]),
        ctypes.c_long(SECCOMP_SET_MODE_FILTER),
        ctypes.c_long(0),
        ctypes.byref(prog),
    )
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), "seccomp(SECCOMP_SET_MODE_FILTER)")


def main(argv: list[str]) -> None:
    with open(argv[1], "rb") as f:
        install(f.read())
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv)
