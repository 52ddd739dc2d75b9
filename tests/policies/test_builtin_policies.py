"""`strict` and `fakeroot`, installed for real on a child process (probe and python)."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import policies
from tests.policies.probe_build import parse_output

INSTALLER = Path(__file__).with_name("seccomp_install.py")


@pytest.fixture(scope="module")
def filters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bpf")
    paths = {}
    for name in ("default", "strict", "fakeroot"):
        program = policies.compile_profile(policies.load_builtin(name))
        assert program is not None
        paths[name] = out / f"{name}.bpf"
        paths[name].write_bytes(program)
    return paths


def probe_under(bpf: Path | None, probe: Path, *names: str) -> dict[str, int]:
    argv = [str(probe), *names]
    if bpf is not None:
        argv = [sys.executable, str(INSTALLER), str(bpf), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return parse_output(proc.stdout)


STRICT_DENIES = (
    "ptrace",
    "process_vm_readv",
    "socket_netlink",
    "socket_packet",
    "socket_alg",
    "socket_vsock",
    "socket_vsock_high",
    "personality_linux",
    "personality_linux32",
    "personality_no_aslr",
    "unshare_user",
    "unshare_ns",
    "clone_newuser",
    "setns",
    "keyctl",
    "add_key",
)
STRICT_ALLOWS = ("socket_unix", "socket_inet", "socket_inet6", "personality_query", "fork")


def test_strict_denies_debugging_odd_sockets_personas_namespaces_keyrings(
    filters: dict[str, Path], probe: Path
) -> None:
    got = probe_under(filters["strict"], probe, *STRICT_DENIES, *STRICT_ALLOWS)
    assert {n: got[n] for n in STRICT_DENIES if got[n] != errno.EPERM} == {}
    assert {n: got[n] for n in STRICT_ALLOWS if got[n] != 0} == {}
    # The same probes, unfiltered, are not refused by seccomp (the kernel's own answers).
    free = probe_under(None, probe, "ptrace", "socket_netlink", "personality_linux", "add_key")
    assert errno.EPERM not in free.values()
    # `default` keeps ptrace and netlink for gdb, strace and ip.
    dflt = probe_under(filters["default"], probe, "ptrace", "socket_netlink", "socket_vsock")
    assert dflt["ptrace"] != errno.EPERM and dflt["socket_netlink"] == 0
    assert dflt["socket_vsock"] == errno.EPERM


FAKEROOT_SCRIPT = r"""
import os, stat, sys
d = sys.argv[1]
f = os.path.join(d, "file"); open(f, "w").close()
before = os.stat(f)
os.chown(f, 4242, 4242)                # success, no effect
os.lchown(f, 4243, 4243)
os.setgroups([4242])
os.setresgid(4242, 4242, 4242)
os.setresuid(4242, 4242, 4242)
after = os.stat(f)
os.mknod(os.path.join(d, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
os.mknod(os.path.join(d, "blk"), stat.S_IFBLK | 0o666, os.makedev(7, 0))
os.mknod(os.path.join(d, "fifo"), stat.S_IFIFO | 0o600)
print(after.st_uid == before.st_uid, os.getuid() == before.st_uid,
      sorted(os.listdir(d)), stat.S_ISFIFO(os.stat(os.path.join(d, "fifo")).st_mode))
"""


def test_fakeroot_makes_ownership_and_id_changes_succeed_without_effect(
    filters: dict[str, Path], tmp_path: Path
) -> None:
    argv = ["/usr/bin/python3", "-c", FAKEROOT_SCRIPT]
    (tmp_path / "a").mkdir()
    proc = subprocess.run(
        [sys.executable, str(INSTALLER), str(filters["fakeroot"]), *argv, str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # No device node exists (success without effect); the FIFO is real.
    assert proc.stdout.split("\n")[0] == "True True ['fifo', 'file'] True"
    # The same script unfiltered: the kernel refuses (we are not root, or not mapped).
    (tmp_path / "b").mkdir()
    bare = subprocess.run(
        [*argv, str(tmp_path / "b")], capture_output=True, text=True, timeout=60, check=False
    )
    assert bare.returncode != 0 and "PermissionError" in bare.stderr
