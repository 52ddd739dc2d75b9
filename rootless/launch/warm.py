"""The CLI's side of the warm helper: `rsbox run` done by a fork of a per-user process
that has imported rsbox already (rootless.launch.warmd), in the CLI's stead.

A `rsbox run` without the helper spends most of its start importing: the CLI its command
line, store, image and policy modules (~85 ms of CPU idle), P1 the FUSE server (trio,
pyfuse3, fs: ~95 ms). The helper did all of it once; per request it forks a child, the
"warm P0", that takes on the CLI's process context and runs the command line exactly as
the CLI would have (rootless.cli.main), forking its P1 from its own warm state. The CLI
itself only relays: its signals to the warm P0, the warm P0's exit status back to its
own caller (README, "Benchmarks").

What the warm P0 would not inherit from the CLI, and what is done about each:

* the context it must share with us and cannot be given afterwards (namespaces, root,
  cgroup, ids and groups, loginuid and session, no_new_privs, capabilities, seccomp,
  nice, scheduling policy, oom_score_adj, personality, cpuset, core dump filter, the
  transparent huge page and speculation prctls, the interpreter, package and what its
  stdio's encoding comes from) is `context()`: the socket is named by its hash, so a
  caller in another cgroup (another systemd session or scope) or namespace finds another
  helper, and the helper refuses a request whose context is not its own. The session
  keyring need not be: P1 joins a new one either way (p1.py);
* what the helper can give the child exactly: the environment, cwd (an fd), umask,
  rlimits (the helper refuses when one of ours is above its hard limit), CPU affinity,
  the I/O priority (ionice; refused when ours is realtime, which an unprivileged child
  cannot take), signal dispositions and mask, stdin/stdout/stderr (SCM_RIGHTS); every
  other fd of the helper is closed in the child;
* the session and controlling terminal cannot be shared (setpgid cannot join another
  session): when one of our stdio fds is a terminal we do not ask (the CLI runs the
  command itself), so that Ctrl-Z, a background `rsbox run` and the terminal's signals
  behave as before. Without a terminal, the signals a P0 forwards (protocol.
  FORWARDED_SIGNALS) are forwarded by us to the warm P0 (through its pidfd), which
  forwards them on, as it would have;
* our death: the warm P0's parent is the helper, so PDEATHSIG cannot name us. The helper
  holds our connection and SIGKILLs the warm P0 (through its pidfd) when the connection
  reaches EOF before its exit, which is what a SIGKILL of the CLI did to its own P0; its
  P1 dies with it (P1's parent-death signal), and P2's guard ends the container;
* its command line: the warm P0 (and P1, P2, its forks) overwrite the helper's argv with
  ours, so that `ps` and anything that looks for a container's processes by their
  command line find them as before (up to TITLE_ROOM bytes);
* the exit status: the helper reaps the warm P0 (pidfd) and sends its wait status over
  the connection; we exit with it (or die of its signal).

* a Slurm job: not used. A job's processes must stay in its process tree (proctrack
  follows parentage) and its cgroup, and a helper started by one job would serve the
  next job's runs on the node, or be killed with its own job.

A miss (off, a terminal, no socket, refused, another uid, another context, the helper's
code changed) costs one connect attempt; the CLI then runs the command itself (P1 forked
by prefork). After a foreground run that missed, `spawn()` starts a helper in the
background for next time.

Knobs: RSBOX_WARM_HELPER=0 (or `[run] warm-helper = false` in rsbox's config file).
The helper exits after RSBOX_WARM_IDLE seconds (default 600) without a container.

Imported by the CLI before anything heavy: `os`, `sys` and C modules only.
"""

from __future__ import annotations

import _socket
import os
import sys

from fs.knobs import is_off
from rootless import running
from rootless import signals as signal

__all__ = ["context", "delegate", "spawn_if_wanted"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from rootless.config import Settings

    class Context(Protocol):  # rootless.commands.Context, which the launcher must not import
        def settings(self) -> Settings: ...


ENV_KNOB = "RSBOX_WARM_HELPER"
IDLE_ENV = "RSBOX_WARM_IDLE"
DEFAULT_IDLE = 600.0  # a pause in a working session; idle, a helper holds ~29 MB RSS
TITLE_ROOM = 2048  # bytes of the helper's argv that a warm P0 overwrites with its CLI's
STDIO_AND_CWD = 4  # the fds a request carries: stdin, stdout, stderr, cwd
STDIO_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "PYTHONUTF8")
_STATUS_LINE = 64
# The directory our rootless, fs and policies are imported from: part of the context, and
# the helper's PYTHONPATH.
PACKAGE_TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Set by delegate() when a helper should be started for next time (spawn()).
missed = False


def enabled(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return not is_off(env.get(ENV_KNOB, "1"))


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def context() -> str:
    """What a warm P0 inherits from the helper and cannot be handed to it afterwards;
    equal texts mean a helper's child is as good as our own process."""
    status = [
        line
        for line in _read("/proc/self/status").splitlines()
        # inherited across fork and not settable back by an unprivileged child: no_new_privs,
        # seccomp, capabilities, the cpuset's CPUs and memory nodes, prctl's transparent
        # huge pages and speculation controls
        if line.startswith(
            (
                "NoNewPrivs:",
                "Seccomp:",
                "Seccomp_filters:",
                "Cpus_allowed:",
                "Mems_allowed:",
                "Cap",
                "THP_enabled:",
                "Speculation",
            )
        )
    ]
    ns = []
    for name in ("user", "mnt", "net", "pid", "uts", "ipc", "cgroup", "time"):
        try:
            ns.append(os.readlink(f"/proc/self/ns/{name}"))
        except OSError:
            ns.append(name)
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:
        nice = 0
    return "\n".join(
        [
            sys.executable,
            PACKAGE_TOP,
            f"ids {os.getresuid()} {os.getresgid()} {sorted(os.getgroups())}",
            f"nice {nice} sched {os.sched_getscheduler(0)} {os.sched_getparam(0)}",
            "root " + os.readlink("/proc/self/root"),
            "personality " + _read("/proc/self/personality").strip(),
            # what the interpreter's stdio encoding was made of at its start (its
            # sys.stdout is the helper's in a warm P0)
            " ".join(f"{k}={os.environ.get(k, '')}" for k in STDIO_ENV),
            _read("/proc/self/cgroup").strip(),
            "loginuid " + _read("/proc/self/loginuid"),
            "session " + _read("/proc/self/sessionid"),
            _read("/proc/self/oom_score_adj").strip(),
            "coredump_filter " + _read("/proc/self/coredump_filter").strip(),
            *status,
            *ns,
        ]
    )


def socket_path(ctx: str) -> str:
    """One helper per user (the runtime directory is per uid) and per context."""
    import zlib  # a C module: no import chain

    name = f"{zlib.crc32(ctx.encode()):08x}.sock"
    return os.path.join(running.runtime_base(), "warm", name)


def _request(ctx: str, args: list[str]) -> bytes:
    import resource

    from rootless import syscalls as sc

    mask = os.umask(0)
    os.umask(mask)
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in dir(resource)
        if name.startswith("RLIMIT_")
    }
    ignored = [int(s) for s in signal.valid_signals() if signal.getsignal(s) == signal.SIG_IGN]
    doc = {
        "context": ctx,
        "env": dict(os.environ),
        "umask": mask,
        "rlimits": limits,
        "ignored": ignored,
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "affinity": sorted(os.sched_getaffinity(0)),
        "ioprio": sc.ioprio(),
        "argv": list(sys.orig_argv),
        "args": list(args),
    }
    data = repr(doc).encode()
    return len(data).to_bytes(8, "little") + data


def peer(sock: _socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a unix socket (SO_PEERCRED:
    the kernel's word, taken when the connection was made)."""
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(cred[0:4], "little"), int.from_bytes(cred[4:8], "little")


def helper_pid(path: str) -> int | None:
    """The pid of our helper listening at `path` (SO_PEERCRED), or None."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        pid, uid = peer(sock)
    except OSError:
        return None
    finally:
        sock.close()
    return pid if uid == os.getuid() else None


def delegate(args: list[str]) -> int | None:
    """`rsbox ARGS` (a `run`) by a warm P0, the helper's child, in our stead: its exit
    status, or None on a miss (the caller runs the command itself). What it prints, it
    prints on our stdout and stderr."""
    global missed
    if not enabled() or any(os.isatty(fd) for fd in (0, 1, 2)) or "SLURM_JOB_ID" in os.environ:
        return None
    ctx = context()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(socket_path(ctx))
        if peer(sock)[1] != os.getuid():
            raise PermissionError("the helper's socket belongs to another user")
        pidfd = _ask(sock, _request(ctx, args))
    except OSError:
        sock.close()
        missed = True
        return None
    return _relay(sock, pidfd)


def _ask(sock: _socket.socket, request: bytes) -> int:
    """Send the request with our stdio and cwd; the warm P0's pidfd, or OSError (refused:
    "no WHY")."""
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:  # SCM_RIGHTS carries C ints (not `array`: one import less on the start path)
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, cwd))
        sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    finally:
        os.close(cwd)
    got: list[int] = []
    msg, anc, _, _ = sock.recvmsg(_STATUS_LINE, _socket.CMSG_SPACE(4))
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            got += [
                int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)
            ]
    if msg.startswith(b"ok ") and len(got) == 1:
        os.set_inheritable(got[0], False)
        return got[0]
    for fd in got:
        os.close(fd)
    why = msg.decode(errors="replace").strip()
    if os.environ.get("RSBOX_DEBUG"):
        print(f"rsbox: warm helper: {why}", file=sys.stderr)
    raise ConnectionRefusedError(why)


def _relay(sock: _socket.socket, pidfd: int) -> int:
    """Forward our signals to the warm P0 until the helper sends its wait status; our
    exit status is its own (a signal that ended it ends us too)."""

    def forward(sig: int, _frame: object) -> None:
        try:  # noqa: SIM105 - contextlib is not on the thin CLI's path
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            pass

    from rootless.launch.protocol import FORWARDED_SIGNALS  # exec's path imports it too

    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(_STATUS_LINE)  # a signal runs `forward`, then recv resumes
        if not chunk:  # the helper died, and the warm P0 with it (its parent-death signal)
            return 128 + signal.SIGKILL
        data += chunk
    status = int(data.split()[-1])
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.waitstatus_to_exitcode(status)


def spawn_if_wanted(ctx: Context | None) -> None:
    """After a run that missed: start a helper unless rsbox's config says no."""
    if ctx is None:
        return
    from rootless.errors import RsboxError

    try:
        if not ctx.settings().warm_helper:
            return
    except RsboxError:
        return
    path = os.environ.get("PYTHONPATH")
    spawn(dict(os.environ, PYTHONPATH=PACKAGE_TOP + (os.pathsep + path if path else "")))


def spawn(env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Start a helper for next time, detached (its own session, stdio /dev/null), in
    the background: after our container ended, so that its imports do not compete with
    this run's. It finds its own way if another one won the race (warmd)."""
    try:  # noqa: SIM105 - contextlib is not on the thin CLI's path
        os.posix_spawn(
            sys.executable,
            # -P: our package (PYTHONPATH, spawn_if_wanted), not one in our cwd (an
            # installed `rsbox` run from a checkout would start a helper of the
            # checkout's, with another context, that then serves nobody). The last
            # argument is room for each warm P0's title (warmd.retitle).
            [sys.executable, "-P", "-m", "rootless.warm_helper", " " * TITLE_ROOM],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
            ],
            setsid=True,
        )
    except OSError:
        pass  # no helper: the next run misses again
