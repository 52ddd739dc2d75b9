"""Every ABI under one policy: the i386 and x32 ABIs of an x86_64 kernel.

The built-in profiles filter the native ABI only, and every i386 (`int $0x80`) or x32
(bit 0x40000000 in the number, same AUDIT_ARCH_X86_64) syscall gets ENOSYS: see
"One ABI per machine" in policies/_default_profile.py and compiler rule 7. A Docker-format
profile keeps its own verdicts for the ABIs it lists.

Checked twice: in the BPF interpreter for every syscall number of each ABI, and for real
with the static ABI probe (abi_probe.c) under an installed filter, in a subprocess.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyseccomp
import pytest

import policies
from policies import DEFAULT_CAPS, Host, compiler
from policies.profile import to_json_dict
from tests.policies.abi_probe_build import ALL, FOREIGN, I386, X32, abi_probe_or_skip
from tests.policies.bpf_eval import AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_BIT, Call, run
from tests.policies.probe_build import parse_output
from tests.shared import DOCKER_SECCOMP, unavailable

ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
HOST = Host(goarch="amd64", caps=DEFAULT_CAPS, kernel=(6, 18))
BUILTINS = ("default", "strict", "fakeroot")
INSTALLER = Path(__file__).with_name("seccomp_install.py")

AF_UNIX, AF_INET, AF_NETLINK, AF_VSOCK = 1, 2, 16, 40
SYS_SOCKET = 1  # socketcall's sub-call
I386_NR = {"getpid": 20, "socketcall": 102, "ipc": 117, "socket": 359}
X64_NR = {"getpid": 39, "socket": 41, "ioctl": 16, "clone": 56}
# Argument vectors the profiles' rules look at: socket families, ioctl commands (TIOCSTI),
# clone flags (CLONE_NEWUSER), socketcall sub-calls, personality values. All of them go to
# the syscalls with argument rules (ARG_CHECKED), a few to every number.
ARG_CHECKED = ("socket", "socketcall", "ioctl", "clone", "personality", "mknod", "mknodat")
ARGS = (
    (),
    (AF_UNIX, 1),
    (AF_NETLINK, 3),
    (AF_VSOCK, 1),
    (2**32 + AF_VSOCK, 1),
    (38, 5),
    (0, 0x5412),
    (0, 0x5401),
    (0x10000011,),
    (0x01200011,),
    (SYS_SOCKET, 0x1000),
    (0xFFFFFFFF,),
)
SWEEP_ARGS = ((), (AF_VSOCK, 1), (0x10000011, 0x5412))
# Past every syscall table (x32's own block ends at 547; the newest are in the 460s).
NUMBERS = range(0, 600)

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 ABIs")


def compiled(p: policies.Profile) -> bytes:
    program = policies.compile_profile(p, HOST)
    assert program is not None
    return program


def docker_profile() -> policies.Profile:
    if not DOCKER_SECCOMP.exists():
        unavailable(f"{DOCKER_SECCOMP} is missing (set RSBOX_SHARED)")
    return policies.load_file(DOCKER_SECCOMP)


def calls(arch: int, bit: int = 0) -> Iterator[Call]:
    """Every number of one ABI (x32: `bit`) with a few arguments, and the syscalls that
    have argument rules with all of ARGS."""
    token = pyseccomp.Arch.X32 if bit else arch
    checked = {pyseccomp.resolve_syscall(token, name) & ~X32_BIT for name in ARG_CHECKED}
    if arch == AUDIT_ARCH_I386:
        checked.add(I386_NR["socket"])  # libseccomp resolves socket to socketcall's alias
    for nr in NUMBERS:
        for args in ARGS if nr in checked else SWEEP_ARGS:
            yield Call(bit | nr, arch=arch, args=args)


# --------------------------------------------------------------------------- BPF verdicts


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profiles_filter_the_native_abi_only(name: str) -> None:
    p = policies.load_builtin(name)
    assert all(subs == () for _, subs in p.arch_map)
    assert compiler.target_arches(p, "SCMP_ARCH_X86_64") == ("SCMP_ARCH_X86_64",)
    assert compiler.target_arches(p, "SCMP_ARCH_AARCH64") == ("SCMP_ARCH_AARCH64",)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profiles_refuse_every_i386_and_x32_syscall_with_enosys(name: str) -> None:
    program = compiled(policies.load_builtin(name))
    wrong = [c for c in calls(AUDIT_ARCH_I386) if run(program, c) != ENOSYS]
    assert wrong == []
    # x32 arrives with the native arch token: only the number's bit tells it apart.
    wrong = [c for c in calls(AUDIT_ARCH_X86_64, X32_BIT) if run(program, c) != ENOSYS]
    assert wrong == []
    assert run(program, Call(X64_NR["getpid"])) == ALLOW  # the same number, natively


def test_the_socketcall_hole_is_closed() -> None:
    # socketcall(SYS_SOCKET, ptr): the family is behind the pointer, and libseccomp turns
    # strict's `family == AF_UNIX` into `sub-call == SYS_SOCKET` on i386: any family went
    # through. With i386 out of the filter there is no such rule to make.
    for name in BUILTINS:
        program = compiled(policies.load_builtin(name))
        sock = Call(I386_NR["socketcall"], arch=AUDIT_ARCH_I386, args=(SYS_SOCKET, 0x1000))
        assert run(program, sock) == ENOSYS, name
        direct = Call(I386_NR["socket"], arch=AUDIT_ARCH_I386, args=(AF_VSOCK, 1))
        assert run(program, direct) == ENOSYS, name
        assert run(program, Call(X64_NR["socket"], args=(AF_VSOCK, 1))) == EPERM, name


def _with_companions(name: str) -> policies.Profile:
    doc = to_json_dict(policies.load_builtin(name))
    for entry in doc["archMap"]:
        if entry["architecture"] == "SCMP_ARCH_X86_64":
            entry["subArchitectures"] = ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    return policies.from_json_dict(doc)


@pytest.mark.parametrize("name", BUILTINS)
def test_native_verdicts_do_not_depend_on_the_companion_abis(name: str) -> None:
    native_only = compiled(policies.load_builtin(name))
    with_companions = compiled(_with_companions(name))
    differ = [c for c in calls(AUDIT_ARCH_X86_64) if run(native_only, c) != run(with_companions, c)]
    assert differ == []
    # ... while the same profile with the companions listed does reach i386 (control).
    getpid32 = Call(I386_NR["getpid"], arch=AUDIT_ARCH_I386)
    assert run(with_companions, getpid32) == ALLOW
    assert run(native_only, getpid32) == ENOSYS


def _as_runc_would(p: policies.Profile, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The program with libseccomp's default bad-arch action (a SIGSYS kill), which is what
    runc installs: the only thing compiler rule 7 changes."""
    with monkeypatch.context() as m:
        m.setattr(compiler, "FOREIGN_ABI_ACTION", pyseccomp.KILL_THREAD)
        return compiled(p)


def test_dockers_profile_keeps_dockers_verdicts_on_every_abi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docker = docker_profile()
    ours, runcs = compiled(docker), _as_runc_would(docker, monkeypatch)
    for arch, bit in ((AUDIT_ARCH_X86_64, 0), (AUDIT_ARCH_I386, 0), (AUDIT_ARCH_X86_64, X32_BIT)):
        differ = [c for c in calls(arch, bit) if run(ours, c) != run(runcs, c)]
        assert differ == [], hex(arch)
    # Docker's own verdicts, hole included: socketcall is allowed outright, the direct
    # socket(AF_VSOCK) is refused on all three ABIs.
    sock = Call(I386_NR["socketcall"], arch=AUDIT_ARCH_I386, args=(SYS_SOCKET, 0x1000))
    assert run(ours, sock) == ALLOW
    assert run(ours, Call(I386_NR["getpid"], arch=AUDIT_ARCH_I386)) == ALLOW
    assert run(ours, Call(I386_NR["socket"], arch=AUDIT_ARCH_I386, args=(AF_VSOCK, 1))) == EPERM
    assert run(ours, Call(X32_BIT | X64_NR["socket"], args=(AF_VSOCK, 1))) == EPERM
    assert run(ours, Call(X32_BIT | X64_NR["socket"], args=(AF_INET, 1))) == ALLOW
    # Control: the two programs do differ for an ABI Docker's profile does not list here.
    aarch64 = Call(X64_NR["getpid"], arch=pyseccomp.Arch.AARCH64)
    assert (run(ours, aarch64), run(runcs, aarch64)) == (ENOSYS, pyseccomp.KILL_THREAD)


def _profile(**extra: Any) -> policies.Profile:
    rules = [{"names": ["getpid", "socket"], "action": "SCMP_ACT_ALLOW"}]
    return policies.from_json_dict({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules, **extra})


def test_an_abi_a_profile_does_not_list_gets_enosys_not_sigsys() -> None:
    only_native = compiled(_profile(architectures=["SCMP_ARCH_X86_64"]))
    assert run(only_native, Call(X64_NR["getpid"])) == ALLOW
    assert run(only_native, Call(I386_NR["getpid"], arch=AUDIT_ARCH_I386)) == ENOSYS
    assert run(only_native, Call(X32_BIT | X64_NR["getpid"])) == ENOSYS
    with_i386 = compiled(_profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]))
    assert run(with_i386, Call(I386_NR["getpid"], arch=AUDIT_ARCH_I386)) == ALLOW
    assert run(with_i386, Call(X32_BIT | X64_NR["getpid"])) == ENOSYS
    # A profile naming no ABI gets them all, as a Docker daemon would give it.
    bare = compiled(_profile())
    assert run(bare, Call(I386_NR["getpid"], arch=AUDIT_ARCH_I386)) == ALLOW
    assert run(bare, Call(X32_BIT | X64_NR["getpid"])) == ALLOW


# --------------------------------------------------------------------------- for real


@pytest.fixture(scope="module")
def abi_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return abi_probe_or_skip(tmp_path_factory.mktemp("abi-probe"))


@pytest.fixture(scope="module")
def filters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("abi-bpf")
    paths = {}
    for name in BUILTINS:
        paths[name] = out / f"{name}.bpf"
        paths[name].write_bytes(compiled(policies.load_builtin(name)))
    if DOCKER_SECCOMP.exists():
        paths["docker"] = out / "docker.bpf"
        paths["docker"].write_bytes(compiled(policies.load_file(DOCKER_SECCOMP)))
    return paths


def run_abi_probe(probe: Path, bpf: Path | None, *names: str) -> dict[str, int]:
    argv = [str(probe), *names]
    if bpf is not None:
        argv = [sys.executable, str(INSTALLER), str(bpf), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    got = parse_output(proc.stdout)
    assert list(got) == list(names)
    return got


def test_abi_probe_knows_every_listed_name(abi_probe: Path) -> None:
    proc = subprocess.run([str(abi_probe), "--list"], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == list(ALL)
    bad = subprocess.run([str(abi_probe), "no_such_probe"], capture_output=True, check=False)
    assert bad.returncode == 2


def test_without_a_filter_the_i386_probes_succeed(abi_probe: Path) -> None:
    """The control: the kernel runs i386 syscalls from this 64-bit process and creates
    the sockets, so a refusal under a filter is the filter's."""
    got = run_abi_probe(abi_probe, None, *ALL)
    if got["x86_64_socket_vsock"] == errno.EAFNOSUPPORT:
        unavailable("this kernel has no AF_VSOCK")
    assert {n: got[n] for n in ("x86_64_getpid", *I386) if got[n] != 0} == {}
    # x32 is the kernel's to answer: ENOSYS unless built with CONFIG_X86_X32_ABI (and on).
    assert got["x32_getpid"] in (0, errno.ENOSYS)
    assert {n: got[n] for n in X32 if got[n] != got["x32_getpid"]} == {}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_filters_refuse_the_foreign_abis(
    abi_probe: Path, filters: dict[str, Path], name: str
) -> None:
    got = run_abi_probe(abi_probe, filters[name], *ALL)
    assert {n: got[n] for n in FOREIGN if got[n] != errno.ENOSYS} == {}
    # The native ABI keeps the profile's rules.
    assert got["x86_64_getpid"] == 0 and got["x86_64_socket_unix"] == 0
    assert got["x86_64_socket_vsock"] == errno.EPERM
    assert got["x86_64_socket_netlink"] == (errno.EPERM if name == "strict" else 0)


def test_dockers_profile_installed_keeps_dockers_verdicts(
    abi_probe: Path, filters: dict[str, Path]
) -> None:
    if "docker" not in filters:
        unavailable(f"{DOCKER_SECCOMP} is missing (set RSBOX_SHARED)")
    got = run_abi_probe(abi_probe, filters["docker"], *ALL)
    unfiltered = run_abi_probe(abi_probe, None, "x32_getpid")["x32_getpid"]
    assert got == {
        "x86_64_getpid": 0,
        "x86_64_socket_unix": 0,
        "x86_64_socket_vsock": errno.EPERM,
        "x86_64_socket_netlink": 0,
        "i386_getpid": 0,
        "i386_socketcall_unix": 0,
        "i386_socketcall_vsock": 0,  # Docker allows socketcall: its verdict, kept
        "i386_socketcall_netlink": 0,
        "i386_socket_vsock": errno.EPERM,
        "i386_socket_netlink": 0,
        "x32_getpid": unfiltered,  # allowed: the kernel answers
        "x32_socket_vsock": errno.EPERM,  # Docker's x32 rule, judged before the kernel
        "x32_socket_netlink": unfiltered,
    }
