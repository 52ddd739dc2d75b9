"""Build the static ABI probe (`abi_probe.c`): one syscall through the x86_64, i386
(`int $0x80`) or x32 ABI per probe name. Shared by the policies and e2e tests; a sibling
of probe_build.py, built the same way."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.shared import unavailable

ABI_PROBE_SOURCE = Path(__file__).with_name("abi_probe.c")
ABI_PROBE_NAME = "abi-probe"

# Every probe name the binary knows, in its order (a test checks it).
X86_64 = (
    "x86_64_getpid",
    "x86_64_socket_unix",
    "x86_64_socket_vsock",
    "x86_64_socket_netlink",
)
I386 = (
    "i386_getpid",
    "i386_socketcall_unix",
    "i386_socketcall_vsock",
    "i386_socketcall_netlink",
    "i386_socket_vsock",
    "i386_socket_netlink",
)
X32 = ("x32_getpid", "x32_socket_vsock", "x32_socket_netlink")
ALL = (*X86_64, *I386, *X32)
FOREIGN = (*I386, *X32)


def build_abi_probe(outdir: Path) -> Path:
    """Compile abi_probe.c with `gcc -static -O2` into `outdir`; return the binary's path.

    Raises RuntimeError (with gcc's output) if gcc is missing or the build fails.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: the ABI probe cannot be built")
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / ABI_PROBE_NAME
    proc = subprocess.run(
        [gcc, "-static", "-O2", "-Wall", "-Werror", "-o", str(out), str(ABI_PROBE_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the ABI probe failed:\n{proc.stderr}")
    return out


def abi_probe_or_skip(outdir: Path) -> Path:
    """For fixtures: the built probe. Off x86_64 a skip (the probe is x86_64 code); without
    gcc, `unavailable` (a failure in CI, where setup.sh installs it)."""
    if os.uname().machine != "x86_64":
        pytest.skip("the ABI probe covers the x86_64 kernel's i386 and x32 ABIs")
    if shutil.which("gcc") is None:
        unavailable("gcc is needed to build the ABI probe (setup.sh PACKAGES)")
    return build_abi_probe(outdir)
