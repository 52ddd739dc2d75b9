"""rsbox-init (rootless/launch/init.c), the installed binary run directly on the host.

No container is needed: its duties (exit status, signal forwarding, reaping as a
subreaper, non-dumpable, the -s subtree kill on parent death) all show on the host. Pid 1
is played by exec()ing it from a process that made itself a child subreaper (the flag
survives execve), which is what pid 1 is to orphans. One test (userns) puts it in a pid
namespace with its parent outside, as `rsbox exec` does. Every "blocked" or "killed"
assertion has a control that shows the same observation going the other way.
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
from tests.shared import unavailable

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
# A parent that the test can SIGKILL: it starts its arguments and waits.
PARENT = "import subprocess, sys\nsys.exit(subprocess.call(sys.argv[1:]))\n"


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


def lines_within(p: subprocess.Popen[bytes], seconds: float) -> list[str]:
    """Every line p prints during the next `seconds`."""
    got, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(line(p, left))
        except AssertionError:
            break
    return got


def stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of pid, None once it is reaped."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


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


def alive(pid: int) -> bool:
    s = stat(pid)
    return s is not None and s[0] != "Z"


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
    for argv in ([init], [init, SH], [init, "-x", SH, "sh"]):
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


@pytest.mark.parametrize("group", [True, False], ids=["-g", "control-child-only"])
def test_g_forwards_to_the_process_group(
    init: str, procs: list[subprocess.Popen[bytes]], group: bool
) -> None:
    script = (
        "trap 'echo main USR1' USR1; trap 'kill $sub 2>/dev/null; exit 0' TERM;"
        ' (trap "echo sub USR1; exit 0" USR1; echo sub ready; while :; do sleep 0.01; done) &'
        " sub=$!; echo main ready; while :; do sleep 0.01; done"
    )
    p = start(procs, init, *(["-g"] if group else []), SH, "sh", "-c", script)
    assert sorted([line(p), line(p)]) == ["main ready", "sub ready"]
    p.send_signal(signal.SIGUSR1)
    got = [line(p), line(p)] if group else lines_within(p, 0.5)
    assert sorted(got) == (["main USR1", "sub USR1"] if group else ["main USR1"])
    p.send_signal(signal.SIGTERM)
    assert p.wait(5) == 0


def test_s_forwards_the_death_signal_when_the_parent_lives(
    init: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    # -s reserves SIGRTMAX as its parent-death signal; sent by anyone else (the parent,
    # this test, is alive) it is forwarded like any other: sleep dies of it, 128 + 64.
    p = start(procs, init, "-s", SH, "sh", "-c", "echo ready; exec sleep 5")
    assert line(p) == "ready"
    p.send_signal(signal.SIGRTMAX)
    assert p.wait(5) == 128 + signal.SIGRTMAX


# --- reaping ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["-s", "pid1", "control-lazy-subreaper"])
def test_orphans_reparented_to_it_are_reaped(
    init: str, procs: list[subprocess.Popen[bytes]], strays: list[int], mode: str
) -> None:
    # The subshell starts a short sleep and exits: the sleep, orphaned, goes to the
    # nearest subreaper. rsbox-init reaps it when it exits; the control subreaper does
    # not, and the same observation shows the zombie.
    script = "(sleep 0.2 >/dev/null & echo $!); read x || exit 0"
    cmd = [SH, "sh", "-c", script]
    argv = {
        "-s": [init, "-s", *cmd],
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


def test_s_exits_with_the_command_leaving_its_descendants(
    init: str, procs: list[subprocess.Popen[bytes]], strays: list[int]
) -> None:
    p = start(procs, init, "-s", SH, "sh", "-c", "(sleep 30 >/dev/null & echo $!); exit 5")
    orphan = int(line(p))
    strays.append(orphan)
    assert p.wait(2) == 5
    assert alive(orphan)  # as docker exec: the command's leftovers keep running


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


# --- -s: the parent's death kills the subtree -------------------------------------------


@pytest.mark.parametrize("wrapper", [True, False], ids=["-s", "control-without-s"])
def test_s_parent_death_kills_a_setsid_grandchild(
    init: str, procs: list[subprocess.Popen[bytes]], strays: list[int], wrapper: bool
) -> None:
    # The grandchild double-forks and setsid()s away (new session, new process group):
    # only the subreaper + parent-death signal of -s can still find it.
    script = "echo $$; (setsid sh -c 'echo $$; exec sleep 30 >/dev/null' &); exec sleep 30"
    flags = ["-s"] if wrapper else []
    parent = start(procs, sys.executable, "-c", PARENT, init, *flags, SH, "sh", "-c", script)
    child, grandchild = int(line(parent)), int(line(parent))
    strays.extend([child, grandchild])
    (rsbox_init,) = children(parent.pid)
    strays.append(rsbox_init)
    if wrapper:  # reparented to rsbox-init, the subreaper, once the subshell is gone
        assert until(lambda: (stat(grandchild) or ("", 0))[1] == rsbox_init), stat(grandchild)
    parent.kill()
    parent.wait(5)
    if wrapper:
        assert until(lambda: stat(grandchild) is None and stat(child) is None), stat(grandchild)
        assert until(lambda: not alive(rsbox_init))
    else:
        time.sleep(0.5)
        assert alive(grandchild) and alive(child) and alive(rsbox_init)


@pytest.mark.userns
@pytest.mark.parametrize("wrapper", [True, False], ids=["-s", "control-without-s"])
def test_s_parent_outside_the_pid_namespace(
    init: str, procs: list[subprocess.Popen[bytes]], wrapper: bool
) -> None:
    # As under `rsbox exec`: the parent (nsenter here) stays outside the pid namespace
    # that rsbox-init is forked into, so getppid() reads 0 there, before the parent's
    # death and after it (the orphan goes to a reaper outside, invisible too).
    ns = start(procs, "unshare", "-U", "--map-root-user", "-p", "-f", "--mount-proc", "sleep", "30")
    if not until(lambda: len(children(ns.pid)) == 1):
        unavailable(f"unshare -U -p (a user + pid namespace) failed: {ns.poll()}")
    (ns_pid1,) = children(ns.pid)
    enter = ["nsenter", "-t", str(ns_pid1), "-U", "-p", "-m", "--preserve-credentials", "--"]
    script = "(setsid sh -c 'exec sleep 30' &); echo ready; exec sleep 30"
    flags = ["-s"] if wrapper else []
    parent = start(procs, *enter, init, *flags, SH, "sh", "-c", script)
    assert line(parent) == "ready"
    (rsbox_init,) = children(parent.pid)
    # the command and the setsid'd grandchild: under rsbox-init with -s, else the
    # grandchild went to the namespace's pid 1
    subtree = children(rsbox_init) + children(ns_pid1)
    assert len(subtree) == 2 and len(children(rsbox_init)) == (2 if wrapper else 1)
    parent.kill()
    parent.wait(5)
    if wrapper:
        assert until(lambda: all(stat(pid) is None for pid in subtree)), subtree
    else:
        time.sleep(0.5)
        assert all(alive(pid) for pid in subtree)
