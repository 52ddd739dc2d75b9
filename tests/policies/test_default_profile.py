"""rsbox's own default profile: what it must block and allow, checked in the BPF interpreter."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

import policies
from policies import DEFAULT_CAPS, Host, _default_profile
from policies._default_profile import DENIED_IOCTLS, TIOCLINUX, TIOCSTI, ioctl_allow_blocks
from tests.policies.bpf_eval import AUDIT_ARCH_I386, X32_BIT, Call, run

DEFAULT_JSON = Path(policies.__file__).with_name("profiles") / "default.json"
ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
HOST = Host(goarch="amd64", caps=DEFAULT_CAPS, kernel=(6, 18))

# x86_64 numbers
X64 = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "unshare": 272, "setns": 308,
    "keyctl": 250, "add_key": 248, "request_key": 249, "kexec_load": 246,
    "kexec_file_load": 320, "open_by_handle_at": 304, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "fsopen": 430, "move_mount": 429,
}  # fmt: skip
ORDINARY = {
    "read": 0, "write": 1, "openat": 257, "close": 3, "mmap": 9, "execve": 59, "wait4": 61,
    "rt_sigaction": 13, "futex": 202, "getdents64": 217, "newfstatat": 262, "statx": 332,
    "faccessat2": 439, "socket": 41, "connect": 42, "epoll_pwait2": 441, "rseq": 334,
    "pidfd_open": 434, "getrandom": 318, "pipe2": 293, "dup3": 292, "fchmodat2": 452,
    "prlimit64": 302, "sched_getaffinity": 204, "vfork": 58, "chroot": 161, "ptrace": 101,
}  # fmt: skip
CLONE = 56
IOCTL = 16
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 numbers")


@pytest.fixture(scope="module")
def program() -> bytes:
    compiled = policies.compile_profile(policies.load_builtin("default"), HOST)
    assert compiled is not None
    return compiled


@pytest.mark.parametrize("name", ["default", "strict", "fakeroot"])
def test_builtin_json_is_generated_from_its_source(name: str) -> None:
    assert DEFAULT_JSON.with_name(f"{name}.json").read_text() == _default_profile.render(name)


def test_default_profile_has_no_unknown_names() -> None:
    assert policies.load_builtin("default").warnings == ()


def test_default_profile_fits_in_a_bpf_program(program: bytes) -> None:
    assert len(program) // 8 < 4096


@pytest.mark.parametrize("name", sorted(X64))
def test_dangerous_syscalls_get_eperm(program: bytes, name: str) -> None:
    assert run(program, Call(X64[name])) == EPERM


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_ordinary_syscalls_are_allowed(program: bytes, name: str) -> None:
    assert run(program, Call(ORDINARY[name], args=(0, 0x5401))) == ALLOW


def test_clone_without_namespace_flags_only(program: bytes) -> None:
    thread_flags = 0x003D0F00  # glibc pthread_create
    assert run(program, Call(CLONE, args=(thread_flags,))) == ALLOW
    assert run(program, Call(CLONE, args=(0x01200011,))) == ALLOW  # glibc fork
    for flag in (CLONE_NEWUSER, CLONE_NEWNS, 0x40000000, 0x20000000, 0x02000000):
        assert run(program, Call(CLONE, args=(0x11 | flag,))) == EPERM


def test_clone3_gets_enosys(program: bytes) -> None:
    assert run(program, Call(435)) == ENOSYS


def test_ioctl_tiocsti_tioclinux_blocked_on_the_low_32_bits(program: bytes) -> None:
    for cmd in (TIOCSTI, TIOCLINUX, 0x1_0000_0000 | TIOCSTI, 0xFFFF_FFFF_0000_0000 | TIOCLINUX):
        assert run(program, Call(IOCTL, args=(0, cmd))) == EPERM, hex(cmd)
    for cmd in (0x5401, 0x5411, 0x5413, 0x541B, 0x541D, 0x8004_667E, 0xC020_660B, 0, 2**32 - 1):
        assert run(program, Call(IOCTL, args=(0, cmd))) == ALLOW, hex(cmd)


def test_ioctl_allow_blocks_tile_everything_but_the_denied_commands() -> None:
    blocks = ioctl_allow_blocks(DENIED_IOCTLS)
    sizes = [(~mask & 0xFFFFFFFF) + 1 for mask, _ in blocks]
    assert sum(sizes) == 2**32 - len(DENIED_IOCTLS)
    assert all(value & ~mask & 0xFFFFFFFF == 0 for mask, value in blocks)  # aligned
    rng = random.Random(4)
    samples = [rng.randrange(2**32) for _ in range(2000)] + [TIOCSTI + d for d in range(-3, 12)]
    for cmd in samples:
        hits = sum(1 for mask, value in blocks if cmd & mask == value)
        assert hits == (0 if cmd in DENIED_IOCTLS else 1), hex(cmd)


def test_compat_abis_get_enosys(program: bytes) -> None:
    # One ABI per machine (_default_profile.py; every number: test_abi.py).
    assert run(program, Call(21, arch=AUDIT_ARCH_I386)) == ENOSYS  # mount
    assert run(program, Call(3, arch=AUDIT_ARCH_I386)) == ENOSYS  # read
    assert run(program, Call(54, arch=AUDIT_ARCH_I386, args=(0, TIOCSTI))) == ENOSYS
    assert run(program, Call(X32_BIT | 165)) == ENOSYS
    assert run(program, Call(X32_BIT | 0)) == ENOSYS


def test_newer_syscalls_get_enosys_known_ones_eperm(program: bytes) -> None:
    # 456 (futex_requeue) is the highest the profile names; 457.. are newer.
    assert run(program, Call(456)) == ALLOW
    for nr in (457, 462, 470, 600):
        assert run(program, Call(nr)) == ENOSYS
        assert run(program, Call(nr, arch=AUDIT_ARCH_I386)) == ENOSYS
    # Gaps inside the known range stay EPERM (the profile's era).
    assert run(program, Call(400)) == EPERM


def test_caps_gate_chroot() -> None:
    no_caps = Host(goarch="amd64", caps=frozenset(), kernel=(6, 18))
    compiled = policies.compile_profile(policies.load_builtin("default"), no_caps)
    assert compiled is not None
    assert run(compiled, Call(161)) == EPERM
