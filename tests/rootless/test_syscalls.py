"""rootless.syscalls: the per-architecture numbers of the syscalls libc does not wrap."""

from __future__ import annotations

import errno
import os
import re
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
