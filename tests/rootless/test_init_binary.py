"""rsbox-init (rootless/launch/init.c), the installed binary run directly on the host.

No container is needed: its duties as the pid 1 of `rsbox run --init` (exit status,
signal forwarding, reaping orphans, non-dumpable) all show on the host. Pid 1 is played
by exec()ing it from a process that made itself a child subreaper (the flag survives
execve), which is what pid 1 is to orphans. Every "blocked" or "reaped" assertion has a
control that shows the same observation going the other way.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rootless.launch.initbin import init_binary

SH = "/bin/sh"
PR_SET_CHILD_SUBREAPER = 36
# A Python subreaper that never reaps orphans: waits for its own child only.
LAZY_SUBREAPER = (
    "import ctypes, subprocess, sys\n"
    f"ctypes.CDLL(None).prctl({PR_SET_CHILD_SUBREAPER}, 1, 0, 0, 0)\n"
    "sys.exit(subprocess.call(sys.argv[1:]))\n"
)
# rsbox-init as pid 1 sees orphans: made a subreaper, then exec()ed (the flag survives).
AS_PID1 = (
    "import ctypes, os, sys\n"
    f"ctypes.CDLL(None).prctl({PR_SET_CHILD_SUBREAPER}, 1, 0, 0, 0)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


@pytest.fixture
def init() -> str:
    return str(init_binary())


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started processes, each in a session of its own: at teardown every process still
    in that session (a failed test's descendants too) is SIGKILLed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        for pid in session_members(p.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
            p.wait(5)
        for pipe in (p.stdin, p.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids of descendants that a test may leave behind (SIGKILLed at teardown)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start(procs: list[subprocess.Popen[bytes]], *argv: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, start_new_session=True
    )
    procs.append(p)
    return p


def line(p: subprocess.Popen[bytes], timeout: float = 2.0) -> str:
    """One line of p's stdout, read unbuffered, or fail after timeout."""
    assert p.stdout is not None
    fd, buf, deadline = p.stdout.fileno(), b"", time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line within {timeout}s (so far {buf!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"end of output (so far {buf!r})")
        buf += chunk
    return buf.decode().rstrip("\n")


def stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of pid, None once it is reaped."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


def session_members(sid: int) -> list[int]:
    """Pids of the processes in session sid (field 6 of /proc/PID/stat)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                text = (entry / "stat").read_text()
                if int(text[text.rindex(")") + 2 :].split()[3]) == sid:
                    members.append(int(entry.name))
    return members


def until(pred: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- exit status ------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 3", 3), ("kill -TERM $$", 143)])
def test_exit_status_is_the_commands(init: str, script: str, code: int) -> None:
    assert subprocess.run([init, SH, "sh", "-c", script], timeout=5).returncode == code


def test_killed_command_is_128_plus_signal_not_a_signal_death() -> None:
    # control for the 143 above: the same sh, run directly, dies by the signal itself
    assert subprocess.run([SH, "-c", "kill -TERM $$"], timeout=5).returncode == -signal.SIGTERM


def test_exec_failures_are_127_and_126(init: str, tmp_path: Path) -> None:
    missing = subprocess.run([init, "/nonexistent/cmd", "cmd"], capture_output=True, timeout=5)
    assert missing.returncode == 127
    assert missing.stderr == b"rsbox-init: /nonexistent/cmd: No such file or directory\n"
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    denied = subprocess.run([init, str(plain), "x"], capture_output=True, timeout=5)
    assert (denied.returncode, denied.stderr) == (
        126,
        f"rsbox-init: {plain}: Permission denied\n".encode(),
    )


def test_usage_errors_are_125(init: str) -> None:
    for argv in ([init], [init, SH]):
        r = subprocess.run(argv, capture_output=True, timeout=5)
        assert r.returncode == 125 and r.stderr.startswith(b"usage: rsbox-init"), argv


# --- signals ----------------------------------------------------------------------------


def test_signals_sent_to_it_reach_the_command(
    init: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    script = (
        'trap "echo got USR1" USR1; trap "echo got TERM; exit 7" TERM; echo ready;'
        " while :; do sleep 0.01; done"
    )
    p = start(procs, init, SH, "sh", "-c", script)
    assert line(p) == "ready"
    p.send_signal(signal.SIGUSR1)  # to rsbox-init's pid only, not to its group
    assert line(p) == "got USR1"
    p.send_signal(signal.SIGTERM)
    assert line(p) == "got TERM"
    assert p.wait(5) == 7


# --- reaping ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pid1", "control-lazy-subreaper"])
def test_orphans_reparented_to_it_are_reaped(
    init: str, procs: list[subprocess.Popen[bytes]], strays: list[int], mode: str
) -> None:
    # The subshell starts a short sleep and exits: the sleep, orphaned, goes to the
    # nearest subreaper. rsbox-init reaps it when it exits; the control subreaper does
    # not, and the same observation shows the zombie.
    script = "(sleep 0.2 >/dev/null & echo $!); read x || exit 0"
    cmd = [SH, "sh", "-c", script]
    argv = {
        "pid1": [sys.executable, "-c", AS_PID1, init, *cmd],
        "control-lazy-subreaper": [sys.executable, "-c", LAZY_SUBREAPER, SH, "-c", script],
    }[mode]
    p = start(procs, *argv)
    orphan = int(line(p))
    strays.append(orphan)
    assert until(lambda: (stat(orphan) or ("", 0))[1] == p.pid), stat(orphan)
    if mode.startswith("control"):
        assert until(lambda: stat(orphan) == ("Z", p.pid)), stat(orphan)
    else:
        assert until(lambda: stat(orphan) is None), stat(orphan)
    assert p.stdin is not None
    p.stdin.close()
    assert p.wait(5) == 0


# --- non-dumpable -----------------------------------------------------------------------


def _has_cap_sys_ptrace() -> bool:
    for text in Path("/proc/self/status").read_text().splitlines():
        if text.startswith("CapEff:"):
            return bool(int(text.split()[1], 16) & (1 << 19))
    return False


@pytest.mark.skipif(_has_cap_sys_ptrace(), reason="CAP_SYS_PTRACE reads non-dumpable processes")
def test_it_is_not_dumpable(init: str, procs: list[subprocess.Popen[bytes]]) -> None:
    p = start(procs, init, SH, "sh", "-c", "echo $$; read x || exit 0")
    child = int(line(p))
    # control: its child, an ordinary process of the same user, is open to us
    assert Path(f"/proc/{child}/environ").read_bytes() is not None
    assert os.readlink(f"/proc/{child}/exe") == os.path.realpath(SH)
    with pytest.raises(PermissionError):
        Path(f"/proc/{p.pid}/environ").read_bytes()
    with pytest.raises(PermissionError):
        os.readlink(f"/proc/{p.pid}/exe")
    assert p.stdin is not None
    p.stdin.close()
    assert p.wait(5) == 0
