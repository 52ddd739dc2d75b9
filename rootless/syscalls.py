"""The kernel-facing calls rsbox needs and Python 3.11 lacks.

Each wrapper is a few lines: make the call through rootless._syscalls (our C extension:
one call each, -errno on failure, but for the three fixed sequences said there; see
rootless/_syscalls.c for why not ctypes), check the result, raise `OSError(errno,
strerror, what)`. Nothing here decides anything; the
order of the calls (which is where the kernel bites) is explained where they are made
(rootless/launch/).

Python 3.11 is the floor (Debian 12), so `os.unshare`/`os.setns` (3.12+) are not there.

Where the extension is: next to this module in an installed rsbox (setup.py builds it).
A source checkout imports `rootless` from the checkout, where nothing is built: there
the copy installed in the environment is loaded by path, from a sys.path entry or,
under `python -S` (the environment shims), the environment's own site-packages
(reinstall after editing _syscalls.c: `./setup.sh venv`, or `python -m pip install .`).
A missing or stale build is one HostError with that hint, at the first call.
"""

from __future__ import annotations

import errno
import os
import sys

from rootless.errors import HostError

TYPE_CHECKING = False  # `exec` imports this module: no typing (rootless.record)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import ModuleType
    from typing import Any, Final

    from rootless import _syscalls as _c  # for mypy, its stub: _syscalls.pyi

INTERFACE: Final = 5  # the INTERFACE of the _syscalls.c this module speaks to
_NAME = "rootless._syscalls"
_REINSTALL = "reinstall rsbox: ./setup.sh venv (or python -m pip install .)"


def _installed_copies() -> list[str]:
    """Where a checkout finds the extension of the rsbox installed in its environment."""
    from _frozen_importlib_external import EXTENSION_SUFFIXES

    from fs.built import installed_copies

    names = ["_syscalls" + x for x in EXTENSION_SUFFIXES]
    return installed_copies(os.path.dirname(__file__), "rootless", names)


def _load() -> ModuleType:
    try:
        from rootless import _syscalls  # an installed rsbox: built next to this module

        module: ModuleType = _syscalls
    except ImportError:
        # importlib.machinery's own classes, from the frozen modules the import system is
        # made of (always loaded): importing importlib.machinery costs 0.5-2 ms more.
        from _frozen_importlib import ModuleSpec
        from _frozen_importlib_external import ExtensionFileLoader

        path = next((p for p in _installed_copies() if os.path.isfile(p)), None)
        if path is None:
            raise HostError(
                f"{_NAME} is not built: neither in {os.path.dirname(__file__)} nor in this "
                "Python's site-packages",
                hint=_REINSTALL,
            ) from None
        loader = ExtensionFileLoader(_NAME, path)
        module = loader.create_module(ModuleSpec(_NAME, loader, origin=path))
        loader.exec_module(module)
        sys.modules[_NAME] = module
    found = getattr(module, "INTERFACE", None)
    if found != INTERFACE:
        raise HostError(
            f"{module.__file__} has interface {found}, not {INTERFACE}: it was built from "
            "another version of rsbox",
            hint=_REINSTALL,
        )
    return module


class _Missing:
    """Stands for the extension when it cannot be loaded: the HostError is raised at the
    first call, where the caller reports errors, not as a traceback at import."""

    def __init__(self, error: HostError) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error


# Loaded at import, on the host: the first call may come after a process has joined a
# container's mount namespace (exec's E1) or pivoted into it (pid 1), where the file
# cannot be found, so no process of ours ever loads it lazily.
if not TYPE_CHECKING:
    try:
        _c = _load()
    except HostError as exc:
        _c = _Missing(exc)

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

# Syscalls without a libc wrapper, by `uname -m`: x86_64 from the kernel's
# arch/x86/entry/syscalls/syscall_64.tbl, aarch64 from include/uapi/asm-generic/unistd.h.
SYSCALL_NUMBERS: Final[dict[str, dict[str, int]]] = {
    "x86_64": {
        "pivot_root": 155,
        "seccomp": 317,
        "keyctl": 250,
        "ioprio_set": 251,
        "ioprio_get": 252,
    },
    "aarch64": {
        "pivot_root": 41,
        "seccomp": 277,
        "keyctl": 219,
        "ioprio_set": 30,
        "ioprio_get": 31,
    },
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
    _check(_c.join_session_keyring(nr), "keyctl(KEYCTL_JOIN_SESSION_KEYRING)")


def default_signals() -> None:
    """Every ignored or handled signal (32 and 33 too, which glibc's sigaction refuses) to
    its default action, then none blocked: for a process about to execve."""
    _check(_c.default_signals(), "rt_sigaction")


def take_terminal(tty: int) -> None:
    """The pty slave `tty` becomes our controlling terminal (we lead a session that has
    none) and our stdin, stdout and stderr; `tty` itself is closed if above 2."""
    _check(_c.take_terminal(tty), "TIOCSCTTY")


def spawn(path: str, argv: Sequence[str], env: Mapping[str, str], terminal: int) -> int:
    """A child in its own session (with `terminal`, if >= 0, as its controlling terminal
    and stdio), every signal at its default action and none blocked, executing `path`:
    its pid. OSError(errno, strerror, step) when a step failed; `step` is "execve" when
    the command could not be executed (the child is reaped)."""
    pid, err, step = _c.spawn(
        os.fsencode(path),
        [os.fsencode(a) for a in argv],
        [os.fsencode(f"{k}={v}") for k, v in env.items()],
        terminal,
    )
    if err:
        raise OSError(err, os.strerror(err), step)
    return pid


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2); -1 is RLIM_INFINITY (as in Python's resource module)."""
    _check(_c.setrlimit(resource, soft, hard), f"setrlimit({resource})")


def ioprio() -> int:
    """This process's I/O priority (ioprio_get(IOPRIO_WHO_PROCESS, 0)): class << 13 |
    level, as ionice sets it."""
    return _check(_c.ioprio_get(syscall_number("ioprio_get")), "ioprio_get")


def set_ioprio(value: int) -> None:
    _check(_c.ioprio_set(syscall_number("ioprio_set"), value), "ioprio_set")


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret), what)
    return ret


def _opt(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def unshare(flags: int) -> None:
    _check(_c.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_c.setns(fd, nstype), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    raw = (_opt(source), target.encode(), _opt(fstype), flags, _opt(data))
    _check(_c.mount(*raw), f"mount {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_c.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = syscall_number("pivot_root")
    _check(_c.pivot_root(nr, new_root.encode(), put_old.encode()), "pivot_root")


def syncfs(fd: int) -> None:
    """Write back what the kernel caches for the filesystem `fd` is on (for a FUSE mount
    with the writeback cache: dirty pages and times go to the server)."""
    _check(_c.syncfs(fd), "syncfs")


def sethostname(name: str) -> None:
    _check(_c.sethostname(name.encode()), "sethostname")


def prctl(option: int, arg2: int = 0, what: str = "prctl") -> None:
    _check(_c.prctl(option, arg2), what)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1, "prctl(PR_SET_CHILD_SUBREAPER)")


def install_seccomp(bpf: bytes) -> None:
    """no_new_privs, then the filter: the kernel refuses a filter from an unprivileged
    task without no_new_privs. The caller does this as the very last step before execve."""
    if len(bpf) % 8:
        raise ValueError("BPF program length is not a multiple of 8")
    nr = syscall_number("seccomp")  # before no_new_privs: an unknown arch changes nothing
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(_c.seccomp_filter(nr, bpf), "seccomp")


# --- capabilities and process attributes (policy and order: rootless/launch/caps.py) ---

# <linux/prctl.h>
PR_SET_DUMPABLE: Final = 4
PR_CAPBSET_DROP: Final = 24
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4


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
    _check(_c.capset(effective, permitted, inheritable), "capset")


def statfs_type(path: str | os.PathLike[str]) -> int:
    """`f_type` of statfs(2) (os.statvfs does not report it): the magic number that
    names the filesystem holding `path` (<linux/magic.h>), as an unsigned 32-bit value."""
    return _check(_c.statfs_type(os.fsencode(path)), f"statfs {os.fspath(path)}")
