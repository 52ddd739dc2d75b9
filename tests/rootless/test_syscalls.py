"""rootless.syscalls: the per-architecture numbers of the syscalls libc does not wrap."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rootless import syscalls as sc

# The kernel's uapi headers as linux-libc-dev installs them: x86_64's own table, and the
# generic table that aarch64 (and every newer port) numbers its syscalls by.
_HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}


def test_table_numbers_for_both_architectures() -> None:
    assert sc.syscall_number("pivot_root", "x86_64") == 155
    assert sc.syscall_number("seccomp", "x86_64") == 317
    assert sc.syscall_number("pivot_root", "aarch64") == 41
    assert sc.syscall_number("seccomp", "aarch64") == 277
    assert set(sc.SYSCALL_NUMBERS) == {"x86_64", "aarch64"}


@pytest.mark.parametrize("machine", sorted(_HEADERS))
def test_table_matches_the_kernel_headers(machine: str) -> None:
    header = _HEADERS[machine]
    if not header.exists():
        pytest.skip(f"{header} is not installed (linux-libc-dev)")
    text = header.read_text()
    for name, nr in sc.SYSCALL_NUMBERS[machine].items():
        m = re.search(rf"^#define __NR_{name}\s+(\d+)\s*$", text, re.MULTILINE)
        assert m is not None, f"__NR_{name} not in {header}"
        assert int(m.group(1)) == nr, name


def test_this_machine_is_in_the_table() -> None:
    machine = os.uname().machine
    if machine not in sc.SYSCALL_NUMBERS:
        pytest.skip(f"rsbox does not run on {machine}")
    assert sc.syscall_number("seccomp") == sc.SYSCALL_NUMBERS[machine]["seccomp"]


def test_unknown_machine_raises_enosys_naming_the_supported_ones() -> None:
    with pytest.raises(OSError) as exc:
        sc.syscall_number("pivot_root", "riscv64")
    assert exc.value.errno == errno.ENOSYS
    assert exc.value.strerror is not None
    assert "riscv64" in exc.value.strerror
    assert "rsbox supports x86_64 and aarch64" in exc.value.strerror


def _no_new_privs() -> str:
    status = Path("/proc/self/status").read_text()
    m = re.search(r"^NoNewPrivs:\s*(\d)", status, re.MULTILINE)
    assert m is not None
    return m.group(1)


def test_wrappers_raise_at_use_time_on_an_unknown_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = os.uname_result(("Linux", "host", "6.1.0", "#1", "s390x"))
    monkeypatch.setattr(os, "uname", lambda: fake)
    before = _no_new_privs()
    with pytest.raises(OSError) as pivot:
        sc.pivot_root("/nonexistent", "/nonexistent")
    with pytest.raises(OSError) as seccomp:
        sc.install_seccomp(b"\0" * 8)
    assert pivot.value.errno == seccomp.value.errno == errno.ENOSYS
    assert "s390x" in str(seccomp.value)
    # the number is looked up before no_new_privs is set: nothing changed in this process
    assert _no_new_privs() == before


def test_a_failed_call_is_an_oserror_naming_the_call() -> None:
    """The C half returns -errno; the wrapper raises OSError(errno, strerror, what). The
    same calls succeed on arguments the kernel accepts."""
    with pytest.raises(OSError) as bad_fd:
        sc.setns(-1, sc.CLONE_NEWUTS)
    assert (bad_fd.value.errno, bad_fd.value.filename) == (errno.EBADF, "setns")
    assert bad_fd.value.strerror == os.strerror(errno.EBADF)
    with pytest.raises(FileNotFoundError) as missing:
        sc.statfs_type("/nonexistent/rsbox")
    assert missing.value.filename == "statfs /nonexistent/rsbox"
    assert sc.statfs_type("/proc") == 0x9FA0  # PROC_SUPER_MAGIC


def test_a_seccomp_program_too_long_for_the_kernel_is_refused_not_cut(tmp_path: Path) -> None:
    """sock_fprog counts instructions in 16 bits: 65536 + 1 must not load as 1. In a
    child: no_new_privs stays set in the process that tries."""
    allow = (0x06).to_bytes(2, "little") + b"\0\0" + (0x7FFF0000).to_bytes(4, "little")
    probe = (
        "import sys\nfrom rootless import syscalls as sc\n"
        "try:\n    sc.install_seccomp(bytes.fromhex(sys.argv[1]) * int(sys.argv[2]))\n"
        "except OSError as e:\n    print(e.errno)\nelse:\n    print('loaded')\n"
    )

    def run(count: int) -> str:
        argv = [sys.executable, "-c", probe, allow.hex(), str(count)]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    assert run(65537) == str(errno.EINVAL)
    assert run(1) == "loaded"  # one RET ALLOW: the same call, a program the kernel takes


def test_exec_path_loads_the_extension_not_ctypes() -> None:
    """Under `python -IS` from this checkout (as the shims run): the build installed in
    the environment is found by path; a Python without rsbox installed gets one HostError
    with the reinstall hint, at the first call, not at import."""
    probe = (
        "import sys\nsys.path.insert(0, sys.argv[1])\n"
        "from rootless import syscalls\nfrom rootless.errors import HostError\n"
        "try:\n    syscalls.set_dumpable(True)\n"
        "except HostError as e:\n    print(e.line())\n"
        "else:\n    print('ctypes' in sys.modules, sys.modules['rootless._syscalls'].INTERFACE)\n"
    )
    source = str(Path(__file__).resolve().parents[2])
    assert sys.prefix != sys.base_prefix, "run the tests in rsbox's venv (./setup.sh venv)"

    def run(python: str) -> str:
        argv = [python, "-IS", "-c", probe, source]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    assert run(sys.executable) == f"False {sc.INTERFACE}"
    bare = run(os.path.realpath(sys.executable))  # the venv's base interpreter: no rsbox
    assert bare.startswith("rsbox: error: rootless._syscalls is not built"), bare
    assert bare.endswith("(hint: reinstall rsbox: ./setup.sh venv (or python -m pip install .))")
