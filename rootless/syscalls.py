"""The kernel-facing calls rsbox needs and Python 3.11 lacks.

Each wrapper is a few lines: call libc through ctypes with `use_errno=True`, check the
return value, raise `OSError(errno, strerror, what)`. Nothing here decides anything; the
order of the calls (which is where the kernel bites) is explained in `rootless/spawn.py`.

Python 3.11 is the floor (Debian 12), so `os.unshare`/`os.setns` (3.12+) are not there.
"""

from __future__ import annotations

import ctypes
import errno
import os

TYPE_CHECKING = False  # `exec` imports this module: no typing (rootless.record)
if TYPE_CHECKING:
    from typing import Final

# CDLL(None): the libc already loaded; find_library() would fork /sbin/ldconfig.
_libc = ctypes.CDLL(None, use_errno=True)

# <linux/sched.h>
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000

# <sys/mount.h>
MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_BIND: Final = 4096
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18
MS_SLAVE: Final = 1 << 19
MNT_DETACH: Final = 2

# <linux/prctl.h>
PR_SET_PDEATHSIG: Final = 1
PR_SET_NO_NEW_PRIVS: Final = 38
PR_SET_CHILD_SUBREAPER: Final = 36

# <linux/seccomp.h>
SECCOMP_SET_MODE_FILTER: Final = 1

# Syscalls without a libc wrapper, by `uname -m`: x86_64 from the kernel's
# arch/x86/entry/syscalls/syscall_64.tbl, aarch64 from include/uapi/asm-generic/unistd.h.
SYSCALL_NUMBERS: Final[dict[str, dict[str, int]]] = {
    "x86_64": {"pivot_root": 155, "seccomp": 317, "keyctl": 250},
    "aarch64": {"pivot_root": 41, "seccomp": 277, "keyctl": 219},
}


def syscall_number(name: str, machine: str | None = None) -> int:
    """The number of syscall `name` on `machine` (default: this one); ENOSYS elsewhere."""
    machine = os.uname().machine if machine is None else machine
    try:
        return SYSCALL_NUMBERS[machine][name]
    except KeyError:
        msg = f"no {name} syscall number for {machine}: rsbox supports x86_64 and aarch64"
        raise OSError(errno.ENOSYS, msg, name) from None


def join_new_session_keyring() -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session keyring, ours
    and our children's from now on, in place of the one we inherited."""
    nr = syscall_number("keyctl")
    _check(_libc.syscall(nr, 1, None), "keyctl(KEYCTL_JOIN_SESSION_KEYRING)")


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        f"mount {target}",
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(
        _libc.syscall(
            ctypes.c_long(syscall_number("pivot_root")), new_root.encode(), put_old.encode()
        ),
        "pivot_root",
    )


def syncfs(fd: int) -> None:
    """Write back what the kernel caches for the filesystem `fd` is on (for a FUSE mount
    with the writeback cache: dirty pages and times go to the server)."""
    _check(_libc.syncfs(ctypes.c_int(fd)), "syncfs")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0, what: str = "prctl") -> None:
    _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        what,
    )


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1, "prctl(PR_SET_CHILD_SUBREAPER)")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(bpf: bytes) -> None:
    """no_new_privs, then the filter: the kernel refuses a filter from an unprivileged
    task without no_new_privs. The caller does this as the very last step before execve."""
    if len(bpf) % 8:
        raise ValueError("BPF program length is not a multiple of 8")
    nr = syscall_number("seccomp")  # before no_new_privs: an unknown arch changes nothing
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(
        _libc.syscall(
            ctypes.c_long(nr),
            ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
            ctypes.c_uint(0),
            ctypes.byref(prog),
        ),
        "seccomp",
    )


# --- capabilities and process attributes (policy and order: rootless/launch/caps.py) ---

# <linux/prctl.h>
PR_SET_DUMPABLE: Final = 4
PR_CAPBSET_DROP: Final = 24
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4

# <linux/capability.h>: version 3 takes two data structs, for caps 0-31 and 32-63.
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")


def set_dumpable(flag: bool) -> None:
    prctl(PR_SET_DUMPABLE, int(flag), "prctl(PR_SET_DUMPABLE)")


def capbset_drop(cap: int) -> None:
    """Remove `cap` from this thread's bounding set (needs CAP_SETPCAP)."""
    prctl(PR_CAPBSET_DROP, cap, f"prctl(PR_CAPBSET_DROP, {cap})")


def cap_ambient_clear_all() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """This thread's capability sets, each a mask with bit N for capability N."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)  # pid 0: the calling thread
    data = (_CapData * 2)(
        *(
            _CapData(
                effective >> s & 0xFFFFFFFF,
                permitted >> s & 0xFFFFFFFF,
                inheritable >> s & 0xFFFFFFFF,
            )
            for s in (0, 32)
        )
    )
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def statfs_type(path: str | os.PathLike[str]) -> int:
    """`f_type` of statfs(2) (os.statvfs does not report it): the magic number that
    names the filesystem holding `path` (<linux/magic.h>). `struct statfs` starts with
    `__fsword_t f_type`, a C long on every 64-bit Linux ABI we run on."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on x86_64/aarch64
    if _libc.statfs(os.fsencode(path), buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), f"statfs {os.fspath(path)}")
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF
