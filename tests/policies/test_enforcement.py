"""The default profile, installed for real on a child process, against the static probe.

Each probe name runs in its own process (some probes change process state when allowed,
e.g. unshare_user). The filter is installed by seccomp_install.py, which then execs the
probe; the test runs unprivileged (NO_NEW_PRIVS makes that legal).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import policies
from policies.profile import parse_kernel
from tests.policies.probe_build import ALL, ALLOWED, DANGEROUS, NEWER, parse_output

INSTALLER = Path(__file__).with_name("seccomp_install.py")


@pytest.fixture(scope="module")
def default_filter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    program = policies.compile_cached(
        policies.load_builtin("default"), tmp_path_factory.mktemp("bpf-cache")
    )
    assert program is not None
    out = tmp_path_factory.mktemp("bpf") / "default.bpf"
    out.write_bytes(program)
    return out


def run_probe(probe: Path, name: str, bpf: Path | None) -> int:
    argv = [str(probe), name]
    if bpf is not None:
        argv = [sys.executable, str(INSTALLER), str(bpf), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    results = parse_output(proc.stdout)
    assert list(results) == [name]
    return results[name]


def test_probe_knows_every_listed_name(probe: Path) -> None:
    proc = subprocess.run([str(probe), "--list"], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == list(ALL)
    bad = subprocess.run([str(probe), "no_such_probe"], capture_output=True, check=False)
    assert bad.returncode == 2


@pytest.mark.parametrize("name", DANGEROUS)
def test_default_profile_blocks(probe: Path, default_filter: Path, name: str) -> None:
    got = run_probe(probe, name, default_filter)
    expected = errno.ENOSYS if name == "clone3" else errno.EPERM
    assert got == expected, f"{name}: {errno.errorcode.get(got, got)}"


@pytest.mark.parametrize("name", ALLOWED)
def test_default_profile_allows(probe: Path, default_filter: Path, name: str) -> None:
    assert run_probe(probe, name, default_filter) == 0


@pytest.mark.parametrize("name", NEWER)
def test_syscalls_newer_than_the_profile_get_enosys(
    probe: Path, default_filter: Path, name: str
) -> None:
    assert run_probe(probe, name, default_filter) == errno.ENOSYS
    # ... while the kernel itself knows them (mseal: Linux 6.10).
    if parse_kernel(os.uname().release) >= (6, 10):
        assert run_probe(probe, name, None) != errno.ENOSYS


@pytest.mark.parametrize("name", ["unshare_user", "keyctl", "ioctl_tiocsti", "ioctl_tiocsti_high"])
def test_without_a_filter_the_probe_is_not_blocked(probe: Path, name: str) -> None:
    # Proves the blocking tests can fail: the same calls, unfiltered, are not EPERM.
    assert policies.compile_profile(policies.load_builtin("unconfined")) is None
    assert run_probe(probe, name, None) != errno.EPERM
