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


# The state spawn() must not pass on: the caller's ignores (SIGINT, as a script's
# background job has; SIGPIPE, as Python sets), a blocked signal, a handler (SIGUSR2).
_SPAWN_PROBE = """
import os, signal, sys
from rootless import syscalls as sc
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGUSR2, lambda *_: None)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
argv = ["/bin/grep", "-E", "^(Pid|NSsid|Sig(Ign|Blk)):", "/proc/self/status"]
if sys.argv[1] == "spawn":
    pid = sc.spawn(argv[0], argv, {"PATH": "/usr/bin:/bin"}, -1)
else:  # the control: fork and exec as Python would, keeping the caller's state
    pid = os.fork()
    if pid == 0:
        os.execve(argv[0], argv, {"PATH": "/usr/bin:/bin"})
_, status = os.waitpid(pid, 0)
print("Caller:", os.getsid(0), sep=chr(9))
print("Status:", status, sep=chr(9))
"""


def _spawn_probe(how: str) -> dict[str, str]:
    """The exec'd command's /proc/self/status lines, and the caller's session and status."""
    out = subprocess.run(
        [sys.executable, "-c", _SPAWN_PROBE, how], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(":\t") for line in out.splitlines())


def test_spawn_starts_a_clean_session_leader() -> None:
    control = _spawn_probe("fork")
    # The probe sees what the caller set: SIGINT (bit 1) and SIGPIPE (bit 12) ignored,
    # SIGUSR1 (bit 9) blocked, and a session shared with the caller.
    assert int(control["SigIgn"], 16) & (1 << 1 | 1 << 12) == (1 << 1 | 1 << 12)
    assert int(control["SigBlk"], 16) & (1 << 9)
    assert control["NSsid"] == control["Caller"]
    spawned = _spawn_probe("spawn")
    assert int(spawned["SigIgn"], 16) == 0
    assert int(spawned["SigBlk"], 16) == 0
    assert spawned["NSsid"] == spawned["Pid"] != spawned["Caller"]
    assert spawned["Status"] == "0"


def test_spawn_that_cannot_execute_says_so_and_leaves_no_child(tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    for path, code in ((tmp_path / "missing", errno.ENOENT), (script, errno.EACCES)):
        with pytest.raises(OSError) as exc:
            sc.spawn(str(path), [path.name], {}, -1)
        assert (exc.value.errno, exc.value.filename) == (code, "execve")
        with pytest.raises(ChildProcessError):  # reaped already: no zombie for the caller
            os.waitpid(-1, os.WNOHANG)
    pid = sc.spawn("/bin/true", ["true"], {}, -1)  # the control: the same call works
    assert os.waitpid(pid, 0)[1] == 0


def test_setrlimit_sets_and_refuses_with_the_kernels_word() -> None:
    probe = (
        "import resource\nfrom rootless import syscalls as sc\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "sc.setrlimit(resource.RLIMIT_NOFILE, 64, hard)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE) == (64, hard))\n"
        "try:\n    sc.setrlimit(resource.RLIMIT_NOFILE, 64, resource.RLIM_INFINITY)\n"
        "except OSError as e:\n    print(e.errno, e.filename)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "True"
    if os.geteuid() != 0:  # root may raise its hard limit
        assert out[1:] == [str(errno.EPERM), f"setrlimit({__import__('resource').RLIMIT_NOFILE})"]


def test_ioprio_reads_what_ionice_set_and_sets_it() -> None:
    """In children (the suite keeps its own priority): under `ionice -c3` the value is of
    the idle class (3 << 13 | level), without it not; set_ioprio then changes it, as read
    back."""
    code = (
        "from rootless import syscalls as sc; a = sc.ioprio(); sc.set_ioprio(2 << 13 | 5);"
        " print(a, sc.ioprio())"
    )
    idle = subprocess.run(
        ["ionice", "-c3", sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    plain = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(idle[0]) >> 13 == 3 and idle[1] == str(2 << 13 | 5)
    assert int(plain[0]) >> 13 != 3 and plain[1] == str(2 << 13 | 5)  # CONTROL
