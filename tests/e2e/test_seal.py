"""Sealing the process tree (issue 10): an attacker inside a container, against `rsbox
exec`, the user's terminal, capabilities, the container's lifetime and `--init`.

Each class is tried from inside real containers with commands of the static probe
(tests/policies/probe.c, built by the suite), under `default` and, where the class does not
depend on seccomp, under `unconfined` too, with both id maps (`userns`). Every test that
shows something is refused also shows the same probe succeeding where it is allowed (a
CONTROL), so that none of them can pass by being blind:

- exec: a watcher inside attaches to every new pid with ptrace and reads its environ and
  exe; it catches nothing of `rsbox exec`'s making (the caller's environment, a host
  binary), while it does catch a sibling of its own and a process exec'd with a marker
  given to it on purpose (`-e`);
- terminal: without `-t` no container process has a controlling terminal and TIOCSTI/
  TIOCLINUX types nothing into the user's terminal (a pty the test hands to rsbox as its
  controlling terminal, as a shell would); the same probe run on the host does type into
  it, and with `-t` it types into the container's own pty;
- capabilities: Docker's default set, `--cap-add`/`--cap-drop`/`--privileged`, no
  effective capabilities for a non-root user, `inspect` naming what is in force;
- lifetime: a pid 1 that clears its parent-death signal and ignores signals, a
  double-forked daemon and a process in a new session (also started through `exec`) die
  within a second of `kill -9` of the rsbox process that owns them;
- signals: the command of `run` and `exec` starts with none ignored or blocked, whatever
  rsbox or its caller ignores;
- `--init`: pid 1 holds nothing of the host and cannot be traced, while the command keeps
  its environment, gets its signals and has its orphans reaped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import termios
import time
import tty
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox, processes_of
from tests.shared import need_tools, wait_until

PROBE = "/probe/seccomp-probe"
POLICIES = ("default", "unconfined")
TIMEOUT = 60  # a guard on every subprocess, never a measurement

# Linux capability numbers (include/uapi/linux/capability.h).
CAP_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
DOCKER_CAPS = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)
DOCKER_MASK = 0x00000000A80425FB
CAP_NET_ADMIN = 1 << CAP_NAMES.index("CAP_NET_ADMIN")
# The inheritable set is empty, as Docker (>= 20.10.14, CVE-2022-24769), runc and Podman
# (CVE-2022-27651) leave it: with inheritable bits a non-root process could gain
# capabilities from a file's inheritable set. Effective, permitted and bounding are the
# default set; ambient is always empty.
DEFAULT_SETS = {
    "CapInh": 0,
    "CapPrm": DOCKER_MASK,
    "CapEff": DOCKER_MASK,
    "CapBnd": DOCKER_MASK,
    "CapAmb": 0,
}


def cap_mask(names: frozenset[str] | set[str]) -> int:
    return sum(1 << CAP_NAMES.index(n) for n in names)


def cap_names(mask: int) -> set[str]:
    return {name for bit, name in enumerate(CAP_NAMES) if mask >> bit & 1}


def last_cap() -> int:
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def token(what: str) -> str:
    return f"rsbox-{what}-{os.urandom(6).hex()}"


def volume(probe_dir: Path) -> tuple[str, str]:
    return ("-v", f"{probe_dir}:/probe:ro")


def values(text: str) -> dict[str, str]:
    """`name value` lines (the probe's output, maybe through a terminal) -> {name: value}."""
    out: dict[str, str] = {}
    for line in text.replace("\r", "").splitlines():
        name, sep, value = line.strip().partition(" ")
        if sep:
            out[name] = value.strip()
    return out


def ints(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in values(text).items() if v.lstrip("-").isdigit()}


def cli(
    rsbox: Rsbox, *args: str, env: Mapping[str, str] | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """The CLI with an environment of the test's choosing (the caller's secrets)."""
    return subprocess.run(
        rsbox.argv(*args),
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def until(pred: object, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def detached(rsbox: Rsbox, *args: str, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """`run -d ARGS`: the container's id, removed (with -f) afterwards."""
    res = cli(rsbox, "run", "-d", *args, env=env)
    assert res.returncode == 0, res.stderr
    cid = res.stdout.strip()
    try:
        yield cid
    finally:
        rsbox("rm", "-f", cid, timeout=TIMEOUT)


def read_until(proc: subprocess.Popen[bytes], text: str, timeout: float = TIMEOUT) -> str:
    """Read proc's stdout until text shows up; what was read."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{text!r} not seen; stdout so far: {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"{text!r} not seen before EOF: {seen!r} {err}")
            seen += chunk
    return seen.decode(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def kill_leftovers(tag: str) -> None:
    """SIGKILL, by pid, what a failed lifetime test left of its own processes (killing a
    container's pid 1 takes its whole pid namespace with it)."""
    for line in processes_of(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.partition(":")[0]), signal.SIGKILL)


def state_of(rsbox: Rsbox, ref: str) -> dict[str, object]:
    """The container's row in `rsbox ps -a --format json` (by id or name)."""
    rows = json.loads(rsbox("ps", "-a", "--format", "json", check=True).stdout)
    for row in rows:
        if row["Id"].startswith(ref) or ref in row["Names"]:
            assert isinstance(row, dict)
            return row
    raise AssertionError(f"{ref} not in rsbox ps -a")


# --- the user's terminal ---------------------------------------------------------------


@contextlib.contextmanager
def users_terminal() -> Iterator[tuple[int, int]]:
    """A terminal of the test's own, (master, slave), in raw mode: whatever is pushed into
    its input is readable from the slave at once (a line discipline in canonical mode
    would hold a partial line back), and nothing echoes."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def _take_terminal() -> None:  # preexec_fn: after setsid(), the pty becomes ours
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def on_terminal(
    argv: list[str], slave: int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv as a user's shell starts a command: a session whose controlling terminal
    is the pty, which is its stdin, stdout and stderr."""
    return subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_take_terminal,
        env=None if env is None else dict(env),
    )


def read_terminal(master: int, proc: subprocess.Popen[bytes], timeout: float = TIMEOUT) -> str:
    """Everything written to the terminal until proc exits (carriage returns dropped)."""
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        done = proc.poll() is not None
        ready, _, _ = select.select([master], [], [], 0 if done else 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no slave side open any more
                chunk = b""
            out += chunk
            if chunk:
                continue
        if done:
            return out.decode(errors="replace").replace("\r", "")
        if time.monotonic() > deadline:
            stop(proc)
            raise AssertionError(f"{proc.args} did not finish; terminal so far: {out!r}")


def typed_into(slave: int) -> bytes:
    """The terminal's pending input: what the user's shell would read as typed next."""
    os.set_blocking(slave, False)
    data = b""
    try:
        while True:
            try:
                chunk = os.read(slave, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.set_blocking(slave, True)
    return data


def tiocsti_allowed() -> bool:
    """Linux >= 6.2 can refuse TIOCSTI to everyone without CAP_SYS_ADMIN (EIO)."""
    try:
        return Path("/proc/sys/dev/tty/legacy_tiocsti").read_text().strip() != "0"
    except OSError:
        return True


# --- 1. exec is never a target ---------------------------------------------------------

EXECS = 32  # four kinds, eight each


def _exec_from(rsbox: Rsbox, terminal: tuple[int, int], env: Mapping[str, str], *args: str) -> int:
    """`rsbox exec ARGS` as typed in the user's shell: the terminal is its controlling
    terminal, stdin, stdout and stderr."""
    master, slave = terminal
    proc = on_terminal(rsbox.argv("exec", *args), slave, env)
    read_terminal(master, proc)
    return proc.returncode


# The class does not depend on seccomp (ptrace is allowed under `default`): unconfined
# once, with the full map, to keep the suite short (each run is 33 execs).
@pytest.mark.parametrize(
    ("policy", "userns"), [("default", "auto"), ("default", "single"), ("unconfined", "auto")]
)
def test_exec_is_never_a_target(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, policy: str
) -> None:
    """A watcher inside looks at every new pid, again and again until it runs a file of
    the container: its status and stat, then stopped under ptrace its exe and environ,
    while the user runs `rsbox exec` 32 times from a terminal (with and without -t, -i),
    with a secret in their environment. It catches nothing: no secret, no host binary, no
    terminal of the user's session, no moment without no_new_privs and the filter.
    CONTROLS: the same watcher attaches to a sibling of its own and reads the secret
    there, and it attaches to a process `rsbox exec` started with a control marker in its
    (container) environment."""
    secret, control = token("secret"), token("control")
    env = {**os.environ, "RSBOX_TEST_SECRET": secret}
    with (
        detached(
            rsbox,
            "--userns",
            userns,
            "--security-opt",
            f"seccomp={policy}",
            *volume(probe_dir),
            busybox,
            PROBE,
            "watch_pids",
            "240",
            secret,
            control,
            env=env,
        ) as cid,
        users_terminal() as terminal,
    ):
        until(lambda: "watch_pids_ready" in rsbox("logs", cid).stdout, "the watcher")
        codes: Counter[int] = Counter()
        for _ in range(EXECS // 4):
            codes[_exec_from(rsbox, terminal, env, cid, "true")] += 1
            codes[_exec_from(rsbox, terminal, env, cid, "sh", "-c", "exit 0")] += 1
            codes[_exec_from(rsbox, terminal, env, "-t", cid, "true")] += 1
            codes[_exec_from(rsbox, terminal, env, "-i", "-t", cid, "sh", "-c", "exit 0")] += 1
        # The control: a marker the container is meant to see, given through -e.
        ctl = ("-e", f"RSBOX_CONTROL={control}", cid, "sleep", "1")
        codes[_exec_from(rsbox, terminal, env, *ctl)] += 1
        rsbox("stop", "-t", "30", cid, check=True)  # SIGTERM: the watcher reports
        logs = rsbox("logs", cid, check=True)
    assert codes == {0: EXECS + 1}, codes
    got = ints(logs.stdout)
    caught = "\n".join(logs.stderr.splitlines()[:6])  # the first catches, described
    assert got.get("watch_pids") == 0, logs.stdout + logs.stderr
    # CONTROLS: the watcher attaches and reads environs where it may ...
    assert got["watch_pids_sibling_attach"] == 0, logs.stdout
    assert got["watch_pids_sibling_secret"] == 0, logs.stdout
    # ... including a process `rsbox exec` created, once it is the container's command,
    assert got["watch_pids_control"] >= 1, logs.stdout
    # ... and it kept up: it saw (at least) most of the exec'd processes come and go.
    assert got["watch_pids_seen"] >= EXECS // 2, logs.stdout
    # The caller's environment and rsbox's own (host) binaries were never within reach,
    assert got["watch_pids_secret"] == 0, caught
    assert got["watch_pids_host_exe"] == 0, caught
    # no process was ever seen holding the user's terminal,
    assert got["watch_pids_host_tty"] == 0, caught
    # and none without no_new_privs and the container's filter, at any moment.
    if policy == "default":
        assert (got["watch_pids_no_nnp"], got["watch_pids_no_filter"]) == (0, 0), caught
    else:  # CONTROL: without a filter, the same check does report it (for most: a pid
        # that exits before its status is read is seen but not examined)
        assert got["watch_pids_no_filter"] >= max(1, got["watch_pids_seen"] // 2), logs.stdout


def test_exec_gets_only_the_containers_environment(rsbox: Rsbox, busybox: str, userns: str) -> None:
    """`rsbox exec` (with and without -t) hands the command the image's env, the
    container's (`run -e`) and its own `-e`, and nothing of the caller's."""
    secret = token("secret")
    env = {**os.environ, "RSBOX_TEST_SECRET": secret, "RSBOX_HOST_ONLY": "1"}
    image_env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    with detached(rsbox, "--userns", userns, "-e", "FROM_RUN=1", busybox, "sleep", "1000") as cid:
        plain = cli(rsbox, "exec", "-e", "K=V", cid, "cat", "/proc/self/environ", env=env)
        assert plain.returncode == 0, plain.stderr
        with users_terminal() as (master, slave):
            argv = rsbox.argv("exec", "-t", "-e", "K=V", cid, "cat", "/proc/self/environ")
            proc = on_terminal(argv, slave, env)
            on_tty = read_terminal(master, proc)
        assert proc.returncode == 0, on_tty
    # Names the container may have without the caller: the image's, -t's TERM, HOME, ...
    own = {"PATH", "HOME", "HOSTNAME", "TERM", "container"}
    for out in (plain.stdout, on_tty):
        assert secret not in out
        got = {v for v in out.split("\0") if v}
        assert {"K=V", "FROM_RUN=1", image_env} <= got, got
        names = {v.partition("=")[0] for v in got}
        assert names & (set(env) - own) == set(), got


# A caller that ignores INT and QUIT, as every job a script starts with `&` does.
IGNORING = ("sh", "-c", 'trap "" INT QUIT; exec "$0" "$@"')
SIGNAL_STATE = ("grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status")
# exec's helper held for half a second at its first setns (joining the container), so
# that a Ctrl-C reaches it before the command exists
HOLD = ("strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=setns",
        "-e", "inject=setns:delay_enter=500000:when=1")  # fmt: skip


@pytest.fixture(scope="module")
def sleeper(rsbox: Rsbox, busybox: str) -> Iterator[str]:
    with detached(rsbox, busybox, "sleep", "1000") as cid:
        yield cid


def _signal_state(rsbox: Rsbox, *args: str) -> dict[str, str]:
    """The command's blocked and ignored signals (hex masks), rsbox run from IGNORING."""
    res = subprocess.run([*IGNORING, *rsbox.argv(*args)], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return dict(line.split(":\t") for line in res.stdout.splitlines())


def test_the_command_starts_with_no_signal_ignored_or_blocked(
    rsbox: Rsbox, busybox: str, sleeper: str
) -> None:
    """What rsbox ignores (Python's SIGPIPE and SIGXFSZ) and what its caller ignores (INT
    and QUIT) never reach the command of `run` or `exec`, as under Podman: an ignore
    survives execve, and the signals rsbox forwards would do nothing. CONTROL: an ignore
    the command's own shell sets shows in the same probe."""
    clean = {"SigBlk": "0" * 16, "SigIgn": "0" * 16}
    assert _signal_state(rsbox, "run", "--rm", busybox, *SIGNAL_STATE) == clean
    assert _signal_state(rsbox, "exec", sleeper, *SIGNAL_STATE) == clean
    own = 'trap "" PIPE; exec "$@"'
    got = _signal_state(rsbox, "exec", sleeper, "sh", "-c", own, "-", *SIGNAL_STATE)
    assert got == {**clean, "SigIgn": f"{1 << (signal.SIGPIPE - 1):016x}"}


def _default_int_and_quit() -> None:
    for s in (signal.SIGINT, signal.SIGQUIT):  # whatever the test runner's caller ignored
        signal.signal(s, signal.SIG_DFL)


def _rsbox_child(pid: int, proc: subprocess.Popen[str]) -> int:
    """A child of `pid` running rsbox, once there is one (strace forks probes of its own
    first); `proc`, what the test started, must not end before."""
    found: list[int] = []

    def forked() -> bool:
        assert proc.poll() is None, proc.communicate()
        with contextlib.suppress(FileNotFoundError):  # a probe that ended
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if b"rootless" in argv and b"strace" not in argv[0]:
                    found.append(int(child))
        return bool(found)

    wait_until(f"rsbox forked by {pid}", forked, TIMEOUT, 0.01)
    return found[0]


def test_a_ctrl_c_before_the_command_exists_ends_exec_with_130(
    rsbox: Rsbox, sleeper: str
) -> None:
    """A Ctrl-C that reaches `rsbox exec` while its helper still joins the container ends
    it with 130 and nothing runs: from a plain caller (the helper had Python's handler:
    "internal error: KeyboardInterrupt()", 125) and from one that ignores INT (the helper
    ignored it, the command ran: the Ctrl-C was lost). CONTROL: not interrupted, the same
    held exec runs the command."""
    need_tools(("strace",), "holding exec's helper")
    argv = [*HOLD, *rsbox.argv("exec", sleeper, "echo", "ran")]
    for caller, interrupt, expected in (
        ((), False, (0, "ran\n", "")),
        ((), True, (130, "", "")),
        (IGNORING, True, (130, "", "")),
    ):
        proc = subprocess.Popen([*caller, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=None if caller else _default_int_and_quit)  # fmt: skip
        try:
            cli = _rsbox_child(proc.pid, proc)  # strace's tracee: the CLI
            _rsbox_child(cli, proc)  # its helper exists (and is held at its setns)
            if interrupt:
                os.kill(cli, signal.SIGINT)
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            proc.kill()
            proc.wait()
        assert (proc.returncode, out, err) == expected, (caller, interrupt)


def _stat_fields(line: str) -> tuple[int, int, int, int]:
    """A /proc/PID/stat line -> (pid, ppid, session, tty_nr)."""
    pid, _, rest = line.partition(" (")
    fields = rest.rpartition(") ")[2].split()
    return int(pid), int(fields[1]), int(fields[3]), int(fields[4])


@pytest.mark.parametrize("tty_opt", [(), ("-t",)], ids=["no-t", "t"])
def test_exec_runs_alone_in_a_session_of_its_own(
    rsbox: Rsbox, busybox: str, userns: str, tty_opt: tuple[str, ...]
) -> None:
    """What `rsbox exec` puts in the container is the command alone: seen from the exec'd
    shell (shell builtins only), the pid namespace holds pid 1, the shell and children of
    the shell, nothing of rsbox's (its helpers, the terminal relay, stay outside: the
    shell's parent is not in the namespace, ppid 0). The shell leads a session of its own;
    without -t it has no controlling terminal, with -t one (the container's pty). Run from
    the user's terminal, as a user would."""
    script = 'echo "self $$"; for s in /proc/[0-9]*/stat; do read -r l < "$s"; echo "stat $l"; done'
    with (
        detached(rsbox, "--userns", userns, busybox, "sleep", "1000") as cid,
        users_terminal() as (master, slave),
    ):
        proc = on_terminal(rsbox.argv("exec", *tty_opt, cid, "sh", "-c", script), slave)
        out = read_terminal(master, proc)
    assert proc.returncode == 0, out
    me = int(values(out)["self"])
    stats: dict[int, tuple[int, int, int]] = {}
    for line in out.splitlines():
        if line.startswith("stat "):
            pid, ppid, session, tty_nr = _stat_fields(line[5:])
            stats[pid] = (ppid, session, tty_nr)
    assert {1, me} <= set(stats), out
    assert {p: s for p, s in stats.items() if p not in (1, me) and s[0] != me} == {}, out
    ppid, session, tty_nr = stats[me]
    assert (ppid, session) == (0, me), out
    assert (tty_nr != 0) == bool(tty_opt), out


# --- 2. no host terminal in any container ----------------------------------------------

TTY_PROBES = ("dev_tty_open", "isatty_fd0", "isatty_fd1", "isatty_fd2")


def _assert_no_terminal(got: dict[str, int], typed: bytes, text: str, out: str) -> None:
    assert got.get("tiocsti") == 0, out  # the probe ran to the end
    # No controlling terminal: /dev/tty leads nowhere.
    assert got["dev_tty_open"] == errno.ENXIO, out
    # 0, 1 and 2 are pipes or files, never the user's terminal.
    assert {n: got[n] for n in TTY_PROBES[1:] if got[n] == 0} == {}, out
    # Neither TIOCSTI nor TIOCLINUX reached a terminal through 0, 1, 2 or /dev/tty ...
    reached = {n: v for n, v in got.items() if n.startswith(("tiocsti_", "tioclinux_")) and v == 0}
    assert reached == {}, out
    assert len([n for n in got if n.startswith(("tiocsti_", "tioclinux_"))]) == 8, out
    # ... and nothing waits in the user's terminal to be read by their shell.
    assert text.encode() not in typed, typed


@pytest.mark.parametrize("policy", POLICIES)
def test_run_without_t_has_no_terminal_of_the_users(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, policy: str
) -> None:
    """`rsbox run` without -t, started from the user's terminal: no controlling terminal
    inside (/dev/tty: ENXIO), fds 0-2 are not terminals, TIOCSTI/TIOCLINUX on 0, 1, 2 and
    /dev/tty reach nothing, and nothing waits in the user's terminal afterwards."""
    text = token("typed")
    with users_terminal() as (master, slave):
        argv = rsbox.argv(
            "run",
            "--rm",
            "--userns",
            userns,
            "--security-opt",
            f"seccomp={policy}",
            *volume(probe_dir),
            busybox,
            PROBE,
            *TTY_PROBES,
            "tiocsti",
            text,
        )
        proc = on_terminal(argv, slave)
        out = read_terminal(master, proc)
        typed = typed_into(slave)
    assert proc.returncode == 0, out
    _assert_no_terminal(ints(out), typed, text, out)


@pytest.mark.parametrize("policy", POLICIES)
def test_exec_without_t_has_no_terminal_of_the_users(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, policy: str
) -> None:
    """The same for `rsbox exec` without -t."""
    text = token("typed")
    opts = ("--userns", userns, "--security-opt", f"seccomp={policy}", *volume(probe_dir))
    with detached(rsbox, *opts, busybox, "sleep", "1000") as cid, users_terminal() as (m, s):
        proc = on_terminal(rsbox.argv("exec", cid, PROBE, *TTY_PROBES, "tiocsti", text), s)
        out = read_terminal(m, proc)
        typed = typed_into(s)
    assert proc.returncode == 0, out
    _assert_no_terminal(ints(out), typed, text, out)


def test_the_terminal_probe_types_into_a_terminal_it_holds(probe_dir: Path) -> None:
    """CONTROL for the two tests above, outside any container: the same probe, run by the
    test with the user's terminal as its controlling terminal, does reach it, and what it
    pushes is found where those tests look for it."""
    text = token("typed")
    with users_terminal() as (master, slave):
        proc = on_terminal([str(probe_dir / "seccomp-probe"), *TTY_PROBES, "tiocsti", text], slave)
        out = read_terminal(master, proc)
        typed = typed_into(slave)
    got = ints(out)
    assert proc.returncode == 0 and got["dev_tty_open"] == 0, out
    assert (got["isatty_fd0"], got["isatty_fd1"], got["isatty_fd2"]) == (0, 0, 0), out
    if not tiocsti_allowed():  # the kernel refuses TIOCSTI to everyone here
        assert got["tiocsti_tty"] == errno.EIO, out
        return
    assert got["tiocsti_fd0"] == 0 and got["tiocsti_tty"] == 0, out
    assert text.encode() in typed, typed


@pytest.mark.parametrize("how", ["run", "exec"])
def test_with_t_tiocsti_reaches_only_the_containers_own_pty(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, how: str
) -> None:
    """CONTROL with -t, unconfined (`run -t`, `exec -t`): the container's pty is the
    process's controlling terminal, and TIOCSTI on it works and comes back on the
    container's own stdin; still nothing reaches the user's terminal."""
    text = token("typed")
    probe = (PROBE, "dev_tty_open", "isatty_fd0", "tty_raw", "tiocsti", text, "tty_readback", text)
    opts = ("--userns", userns, "--security-opt", "seccomp=unconfined", *volume(probe_dir))
    with contextlib.ExitStack() as stack:
        if how == "run":
            argv = rsbox.argv("run", "--rm", "-t", *opts, busybox, *probe)
        else:
            cid = stack.enter_context(detached(rsbox, *opts, busybox, "sleep", "1000"))
            argv = rsbox.argv("exec", "-t", cid, *probe)
        master, slave = stack.enter_context(users_terminal())
        proc = on_terminal(argv, slave)
        out = read_terminal(master, proc)
        typed = typed_into(slave)
    got = ints(out)
    assert proc.returncode == 0 and got.get("tty_readback") is not None, out
    assert (got["dev_tty_open"], got["isatty_fd0"], got["tty_raw"]) == (0, 0, 0), out
    if tiocsti_allowed():
        assert got["tiocsti_fd0"] == 0, out
        assert got["tty_readback"] == 0, out  # the probe read back what it pushed
    assert text.encode() not in typed, typed


def test_output_still_reaches_the_users_terminal(rsbox: Rsbox, busybox: str) -> None:
    """Without -t, what the container writes still shows on the user's terminal."""
    with users_terminal() as (master, slave):
        proc = on_terminal(rsbox.argv("run", "--rm", busybox, "echo", "hi"), slave)
        out = read_terminal(master, proc)
    assert (proc.returncode, out) == (0, "hi\n")
    with detached(rsbox, busybox, "sleep", "1000") as cid, users_terminal() as (master, slave):
        proc = on_terminal(rsbox.argv("exec", cid, "sh", "-c", "echo hi; echo err >&2"), slave)
        out = read_terminal(master, proc)
    assert proc.returncode == 0 and sorted(out.splitlines()) == ["err", "hi"], out


# --- 3. capabilities as Docker sets them -----------------------------------------------

SHOW_CAPS = "grep ^Cap /proc/1/status; echo ==; grep ^Cap /proc/self/status"


def status_caps(text: str) -> dict[str, int]:
    """`CapEff:\t00000000a80425fb` lines -> {"CapEff": 0xa80425fb, ...}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith("Cap"):
            out[key] = int(value.strip(), 16)
    return out


def pid1_and_self(text: str) -> tuple[dict[str, int], dict[str, int]]:
    first, sep, second = text.partition("==")
    assert sep, text
    return status_caps(first), status_caps(second)


def effective_caps(rsbox: Rsbox, ref: str) -> set[str]:
    """`EffectiveCaps` wherever `rsbox inspect` puts it."""
    doc = json.loads(rsbox("inspect", ref, check=True).stdout)[0]
    found: list[object] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "EffectiveCaps":
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    assert len(found) == 1 and isinstance(found[0], list), f"no EffectiveCaps in {doc}"
    return {str(n) for n in found[0]}


def test_default_capabilities_are_dockers(rsbox: Rsbox, busybox: str, userns: str) -> None:
    """pid 1 and its child (run, in the foreground and detached) and an exec'd process:
    bounding, permitted and effective are Docker's default set, ambient and inheritable
    empty; `inspect` names the same set."""
    assert cap_mask(DOCKER_CAPS) == DOCKER_MASK
    res = rsbox.run("--rm", "--userns", userns, busybox, "sh", "-c", SHOW_CAPS)
    assert res.returncode == 0, res.stderr
    pid1, child = pid1_and_self(res.stdout)
    assert pid1 == DEFAULT_SETS and child == DEFAULT_SETS, res.stdout
    with detached(rsbox, "--userns", userns, busybox, "sleep", "1000") as cid:
        ex = rsbox("exec", cid, "sh", "-c", SHOW_CAPS)
        assert ex.returncode == 0, ex.stderr
        pid1, execd = pid1_and_self(ex.stdout)
        assert pid1 == DEFAULT_SETS and execd == DEFAULT_SETS, ex.stdout
        assert effective_caps(rsbox, cid) == DOCKER_CAPS


@pytest.mark.parametrize("spelling", ["NET_ADMIN", "CAP_NET_ADMIN", "net_admin"])
def test_cap_add_net_admin_allows_a_bridge(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, spelling: str
) -> None:
    """With a network namespace of its own, --cap-add NET_ADMIN (any spelling) lets root
    inside add a bridge and set lo's MTU."""
    res = rsbox.run(
        "--rm",
        "--network",
        "none",
        "--cap-add",
        spelling,
        "--userns",
        userns,
        *volume(probe_dir),
        busybox,
        "sh",
        "-c",
        f"grep ^CapEff /proc/self/status; exec {PROBE} bridge_add net_admin_mtu",
    )
    assert res.returncode == 0, res.stderr
    assert status_caps(res.stdout)["CapEff"] == DOCKER_MASK | CAP_NET_ADMIN, res.stdout
    got = ints(res.stdout)
    assert (got["bridge_add"], got["net_admin_mtu"]) == (0, 0), res.stdout


@pytest.mark.parametrize("policy", POLICIES)
def test_net_admin_is_refused_by_default(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, policy: str
) -> None:
    """The same probes without --cap-add: EPERM (the kernel's, not seccomp's: also
    unconfined). The control is the test above."""
    res = rsbox.run(
        "--rm",
        "--network",
        "none",
        "--userns",
        userns,
        "--security-opt",
        f"seccomp={policy}",
        *volume(probe_dir),
        busybox,
        PROBE,
        "bridge_add",
        "net_admin_mtu",
    )
    assert res.returncode == 0, res.stderr
    got = ints(res.stdout)
    assert (got["bridge_add"], got["net_admin_mtu"]) == (errno.EPERM, errno.EPERM), res.stdout


def test_cap_drop_chown_makes_chown_fail(
    rsbox: Rsbox, busybox: str, userns: str, full_map: bool
) -> None:
    """`chown 1:1` works by default (CONTROL) and fails with EPERM after --cap-drop CHOWN."""
    if userns == "single" or not full_map:
        pytest.skip("single id map: uid 1 is not mapped, chown 1:1 fails with or without CAP_CHOWN")
    script = "touch /tmp/x && chown 1:1 /tmp/x && stat -c %u:%g /tmp/x"
    allowed = rsbox.run("--rm", "--userns", userns, busybox, "sh", "-c", script)
    assert (allowed.returncode, allowed.stdout) == (0, "1:1\n"), allowed.stderr  # CONTROL
    for spelling in ("CHOWN", "cap_chown"):
        dropped = rsbox.run(
            "--rm", "--userns", userns, "--cap-drop", spelling, busybox, "sh", "-c", script
        )
        assert dropped.returncode != 0, dropped.stdout
        assert "Operation not permitted" in dropped.stderr, dropped.stderr


def test_cap_drop_all_leaves_nothing(rsbox: Rsbox, busybox: str, userns: str) -> None:
    """--cap-drop ALL: every set empty, for pid 1 and its child."""
    res = rsbox.run("--rm", "--userns", userns, "--cap-drop", "ALL", busybox, "sh", "-c", SHOW_CAPS)
    assert res.returncode == 0, res.stderr
    for caps in pid1_and_self(res.stdout):
        assert caps == dict.fromkeys(DEFAULT_SETS, 0), res.stdout


def test_privileged_has_every_capability(rsbox: Rsbox, busybox: str, userns: str) -> None:
    """--privileged: every capability the kernel knows (up to cap_last_cap)."""
    every = (1 << (last_cap() + 1)) - 1
    res = rsbox.run("--rm", "--userns", userns, "--privileged", busybox, "sh", "-c", SHOW_CAPS)
    assert res.returncode == 0, res.stderr
    for caps in pid1_and_self(res.stdout):
        assert (caps["CapEff"], caps["CapPrm"], caps["CapBnd"]) == (every,) * 3, res.stdout


def test_a_non_root_user_has_no_effective_capabilities(
    rsbox: Rsbox, busybox: str, userns: str, full_map: bool
) -> None:
    """-u 1000 (run and exec): no effective, permitted or ambient capabilities."""
    if userns == "single" or not full_map:
        pytest.skip("single id map: -u 1000 is refused (only uid 0 exists)")
    show = "grep ^Cap /proc/self/status"
    res = rsbox.run("--rm", "--userns", userns, "-u", "1000", busybox, "sh", "-c", show)
    assert res.returncode == 0, res.stderr
    caps = status_caps(res.stdout)
    assert (caps["CapEff"], caps["CapPrm"], caps["CapAmb"]) == (0, 0, 0), res.stdout
    with detached(rsbox, "--userns", userns, busybox, "sleep", "1000") as cid:
        ex = rsbox("exec", "-u", "1000", cid, "sh", "-c", show)
        assert ex.returncode == 0, ex.stderr
        caps = status_caps(ex.stdout)
        assert (caps["CapEff"], caps["CapPrm"], caps["CapAmb"]) == (0, 0, 0), ex.stdout
        as_root = status_caps(rsbox("exec", cid, "sh", "-c", show, check=True).stdout)
        assert as_root["CapEff"] == DOCKER_MASK  # CONTROL: root in the same container


@pytest.mark.parametrize(
    "opts",
    [(), ("--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD"), ("--cap-drop", "ALL")],
    ids=["default", "add-drop", "drop-all"],
)
def test_inspect_names_the_capabilities_in_force(
    rsbox: Rsbox, busybox: str, opts: tuple[str, ...]
) -> None:
    """`inspect`'s EffectiveCaps names exactly the CapEff of the container's pid 1."""
    with detached(rsbox, *opts, busybox, "sleep", "1000") as cid:
        inside = rsbox("exec", cid, "grep", "^CapEff", "/proc/1/status", check=True).stdout
        in_force = cap_names(status_caps(inside)["CapEff"])
        assert effective_caps(rsbox, cid) == in_force
    expected = {(): DOCKER_CAPS, ("--cap-drop", "ALL"): frozenset()}.get(
        opts, (DOCKER_CAPS | {"CAP_NET_ADMIN"}) - {"CAP_MKNOD"}
    )
    assert in_force == expected


# --- 4. a lifetime no container can break ----------------------------------------------


def container_roles(tag: str) -> Counter[str]:
    """Processes of the probe (by its first argument) whose argv holds tag."""
    roles: Counter[str] = Counter()
    for line in processes_of(tag):
        argv = line.partition(": ")[2].split()
        if len(argv) >= 2 and argv[0] == PROBE:
            roles[argv[1]] += 1
    return roles


def left_after(tag: str, seconds: float = 1.0) -> list[str]:
    """Poll up to `seconds` for every process whose argv holds tag to be gone."""
    deadline = time.monotonic() + seconds
    while True:
        left = processes_of(tag)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def hold_script(tag: str) -> str:
    """pid 1: a double-forked daemon, a process in a new session, then itself clearing its
    parent-death signal and ignoring TERM/HUP/INT."""
    return (
        f"{PROBE} daemon {tag} && {PROBE} new_session {tag} && exec {PROBE} clear_pdeathsig {tag}"
    )


def start_through_exec(rsbox: Rsbox, ref: str, tag: str) -> None:
    for what in ("daemon", "new_session"):
        res = rsbox("exec", ref, PROBE, what, f"{tag}-exec")
        assert (res.returncode, res.stdout) == (0, f"{what} 0\n"), res.stderr


HELD = {"clear_pdeathsig": 1, "daemon": 2, "new_session": 2}


def test_sigkill_of_rsbox_run_leaves_no_process(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, marker: str
) -> None:
    """`kill -9` of a foreground `rsbox run`: within a second nothing is left of the
    container (pid 1 that cleared its parent-death signal and ignores signals, a
    double-forked daemon, a process in a new session, the same two started through
    `exec`) nor of rsbox's helpers, and `ps -a` says exited."""
    name = f"hold-{marker}"
    argv = rsbox.argv(
        "run", "--name", name, "--userns", userns, *volume(probe_dir), busybox, "sh", "-c"
    )
    proc = subprocess.Popen(
        [*argv, hold_script(marker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        read_until(proc, "clear_pdeathsig_ready")
        start_through_exec(rsbox, name, marker)  # daemons started through exec, too
        assert container_roles(marker) == HELD  # CONTROL: all alive right before the kill
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        assert left_after(marker) == []
        assert state_of(rsbox, name)["State"] == "exited"
        assert str(rsbox.root) not in Path("/proc/self/mountinfo").read_text()
    finally:
        stop(proc)
        kill_leftovers(marker)
        rsbox("rm", "-f", name)


def test_sigkill_of_the_monitor_leaves_no_process(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, marker: str
) -> None:
    """The same for `run -d`, whose owner is its monitor (`Pid` in `ps --format json`)."""
    opts = ("--userns", userns, *volume(probe_dir))
    with detached(rsbox, *opts, busybox, "sh", "-c", hold_script(marker)) as cid:
        until(lambda: "clear_pdeathsig_ready" in rsbox("logs", cid).stdout, "pid 1")
        start_through_exec(rsbox, cid, marker)
        assert container_roles(marker) == HELD  # CONTROL: all alive right before the kill
        monitor = int(state_of(rsbox, cid)["Pid"])  # type: ignore[call-overload]
        assert monitor > 1
        os.kill(monitor, signal.SIGKILL)
        try:
            assert left_after(marker) == []
            assert state_of(rsbox, cid)["State"] == "exited"
            assert str(rsbox.root) not in Path("/proc/self/mountinfo").read_text()
        finally:
            kill_leftovers(marker)


def test_sigkill_of_rsbox_exec_kills_what_it_started(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, marker: str
) -> None:
    """`kill -9` of `rsbox exec`: the command it started (parent-death signal cleared,
    signals ignored) dies within a second; the container lives on (CONTROL)."""
    opts = ("--userns", userns, *volume(probe_dir))
    with detached(rsbox, *opts, busybox, "sleep", "1000") as cid:
        proc = subprocess.Popen(
            rsbox.argv("exec", cid, PROBE, "clear_pdeathsig", marker),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            read_until(proc, "clear_pdeathsig_ready")
            assert container_roles(marker) == {"clear_pdeathsig": 1}  # CONTROL: alive
            proc.kill()
            proc.wait(timeout=TIMEOUT)
            assert left_after(marker) == []
        finally:
            stop(proc)
            kill_leftovers(marker)
        # CONTROL: the container itself lives on.
        assert state_of(rsbox, cid)["State"] == "running"
        assert rsbox("exec", cid, "true").returncode == 0


# --- 5. --init leaks nothing of the host -----------------------------------------------


def hexed(*needles: str) -> str:
    return ",".join(n.encode().hex() for n in needles)


@pytest.mark.parametrize("policy", POLICIES)
def test_init_holds_nothing_of_the_host(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str, policy: str
) -> None:
    """Under --init, pid 1's environ, argv and exe hold nothing of the caller or of rsbox,
    and pid 1 cannot be traced; CONTROL: the probe traces a child of its own, and the
    command still gets the container's environment."""
    secret = token("secret")
    env = {**os.environ, "RSBOX_TEST_SECRET": secret}
    needles = hexed(secret, "python", "rootless", str(rsbox.root))
    res = cli(
        rsbox,
        "run",
        "--rm",
        "--init",
        "-e",
        "K=V",
        "--userns",
        userns,
        "--security-opt",
        f"seccomp={policy}",
        *volume(probe_dir),
        busybox,
        "sh",
        "-c",
        f'echo "k $K"; exec {PROBE} proc_leaks 1 {needles} ptrace_pid 1 ptrace_sibling',
        env=env,
    )
    assert res.returncode == 0, res.stderr
    got = values(res.stdout)
    assert got["k"] == "V", res.stdout
    leaks = {n: got[n] for n in ("environ_leak", "cmdline_leak", "exe_leak") if got[n] == "0"}
    assert leaks == {}, res.stdout
    assert int(got["ptrace_pid"]) == errno.EPERM, res.stdout
    assert got["ptrace_sibling"] == "0", res.stdout


def test_the_leak_probe_sees_what_pid_1_holds(rsbox: Rsbox, busybox: str, probe_dir: Path) -> None:
    """CONTROL for the test above: without --init pid 1 is the probe itself, and the same
    check finds the marker in its environ and its name in its argv and exe."""
    seen = token("seen")
    res = rsbox.run(
        "--rm",
        "-e",
        f"SEEN={seen}",
        *volume(probe_dir),
        busybox,
        PROBE,
        "proc_leaks",
        "1",
        hexed(seen, "seccomp-probe"),
    )
    got = ints(res.stdout)
    assert (got["environ_leak"], got["cmdline_leak"], got["exe_leak"]) == (0, 0, 0), res


def test_init_forwards_signals_and_reaps_orphans(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str
) -> None:
    """--init forwards SIGTERM from the CLI to the command (its exit code comes back) and
    reaps an orphan reparented to it."""
    proc = subprocess.Popen(
        rsbox.argv(
            "run",
            "--rm",
            "--init",
            "--userns",
            userns,
            busybox,
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        read_until(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 7
    finally:
        stop(proc)
    opts = ("--rm", "--userns", userns, *volume(probe_dir))
    reaped = rsbox.run(*opts, "--init", busybox, PROBE, "orphan_zombies")
    assert ints(reaped.stdout) == {"orphan_zombies": 0}, reaped
    # CONTROL: with the probe as pid 1, which never waits for orphans, one is left over.
    kept = rsbox.run(*opts, busybox, PROBE, "orphan_zombies")
    assert ints(kept.stdout) == {"orphan_zombies": 1}, kept
