"""Every ABI under one policy, inside real containers: the static ABI probe
(tests/policies/abi_probe.c) makes the same socket calls through the x86_64, i386
(`int $0x80`, socketcall and the direct socket syscall) and x32 ABIs.

- `default`, `strict`, `fakeroot`: every i386 and x32 syscall gets ENOSYS (the built-ins
  filter the native ABI only; policies/README.md, "One ABI per machine"), while the
  native socket rules still hold (AF_VSOCK refused; AF_NETLINK too under `strict`);
- `unconfined`: the same i386 probes succeed, so the refusals above are seccomp's
  (AF_VSOCK and AF_NETLINK sockets need no capability);
- Docker's profile: its own verdicts, its socketcall hole included.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox
from tests.policies.abi_probe_build import ABI_PROBE_NAME, ALL, FOREIGN, I386, abi_probe_or_skip
from tests.policies.probe_build import parse_output
from tests.shared import DOCKER_SECCOMP, unavailable

# The Done-when probes of issue 11: vsock through socketcall, netlink too under strict.
SOCKETCALL_ESCAPES = {
    "default": ("i386_socketcall_vsock", "i386_socket_vsock", "x32_socket_vsock"),
    "strict": (
        "i386_socketcall_vsock",
        "i386_socketcall_netlink",
        "i386_socket_vsock",
        "i386_socket_netlink",
        "x32_socket_vsock",
        "x32_socket_netlink",
    ),
}


@pytest.fixture(scope="module")
def abi_probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("abi-probe")
    abi_probe_or_skip(out)
    out.chmod(0o755)
    return out


def abi_battery(
    rsbox: Rsbox, image: str, probe_dir: Path, policy: str, *, userns: str = "auto"
) -> dict[str, int]:
    res = rsbox.run(
        "--rm",
        "-v",
        f"{probe_dir}:/probe:ro",
        "--userns",
        userns,
        "--security-opt",
        f"seccomp={policy}",
        image,
        f"/probe/{ABI_PROBE_NAME}",
        *ALL,
    )
    assert res.returncode == 0, res.stderr
    got = parse_output(res.stdout)
    assert list(got) == list(ALL)
    return got


@pytest.mark.parametrize("policy", ["default", "strict", "fakeroot"])
def test_builtin_profiles_refuse_the_32bit_abis(
    rsbox: Rsbox, busybox: str, abi_probe_dir: Path, userns: str, policy: str
) -> None:
    got = abi_battery(rsbox, busybox, abi_probe_dir, policy, userns=userns)
    assert {n: errno.errorcode.get(got[n], got[n]) for n in FOREIGN if got[n] != errno.ENOSYS} == {}
    for name in SOCKETCALL_ESCAPES.get(policy, ()):
        assert got[name] == errno.ENOSYS, name
    # The native ABI: the profile's own rules, as before.
    assert got["x86_64_getpid"] == 0 and got["x86_64_socket_unix"] == 0
    assert got["x86_64_socket_vsock"] == errno.EPERM
    assert got["x86_64_socket_netlink"] == (errno.EPERM if policy == "strict" else 0)


def test_unconfined_the_same_32bit_probes_succeed(
    rsbox: Rsbox, busybox: str, abi_probe_dir: Path
) -> None:
    got = abi_battery(rsbox, busybox, abi_probe_dir, "unconfined")
    if got["x86_64_socket_vsock"] == errno.EAFNOSUPPORT:
        unavailable("this kernel has no AF_VSOCK")
    assert {n: errno.errorcode.get(got[n], got[n]) for n in I386 if got[n] != 0} == {}
    assert got["x86_64_socket_vsock"] == 0 and got["x86_64_socket_netlink"] == 0
    # x32 is the kernel's to answer: ENOSYS unless built with CONFIG_X86_X32_ABI.
    assert got["x32_getpid"] in (0, errno.ENOSYS)
    assert got["x32_socket_vsock"] == got["x32_getpid"]


def test_dockers_profile_keeps_its_verdicts(
    rsbox: Rsbox, busybox: str, abi_probe_dir: Path
) -> None:
    if not DOCKER_SECCOMP.exists():
        unavailable(f"{DOCKER_SECCOMP} is missing (set RSBOX_SHARED)")
    got = abi_battery(rsbox, busybox, abi_probe_dir, str(DOCKER_SECCOMP))
    assert got["i386_getpid"] == 0  # Docker's profile lists i386
    assert got["i386_socketcall_vsock"] == 0  # it allows socketcall outright: its verdict
    assert got["i386_socket_vsock"] == errno.EPERM  # its family rule on the direct call
    assert got["x32_socket_vsock"] == errno.EPERM  # and on x32, judged before the kernel
    assert got["x86_64_socket_vsock"] == errno.EPERM
