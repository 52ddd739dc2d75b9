"""P0's side of the warm helper: get P1 forked by a per-user process that has imported
the FUSE server already (rootless.launch.warmd), instead of forking it here.

A `rsbox run` spends most of its start in P1's imports (trio, pyfuse3, fs:
~95 ms of CPU on an idle machine) before P1 can answer the container's first FUSE
request; P0's own work is shorter. The helper did those imports once and forks a P1 per
request, so the imports leave the critical path (README, "Benchmarks").

What the forked P1 would not inherit from us, and what is done about each:

* the context a P1 must share with us and cannot be given afterwards (namespaces, root,
  cgroup, ids and groups, loginuid and session, no_new_privs, capabilities, seccomp,
  nice, oom_score_adj, the interpreter and package) is `context()`: the socket is named
  by its hash, so a caller in another cgroup (another systemd session or scope) or
  namespace finds another helper, and the helper refuses a request whose context is not
  its own. The session keyring need not be: P1 joins a new one either way (p1.py);
* what the helper can give the child exactly: the environment, cwd (an fd), umask,
  rlimits (the helper refuses when one of ours is above its hard limit), CPU affinity,
  signal dispositions and mask, stdin/stdout/stderr and the pipes to us (SCM_RIGHTS);
  every other fd of the helper is closed in the child;
* the session and controlling terminal cannot be shared (setpgid cannot join another
  session): when one of our stdio fds is a terminal we do not ask (today's fork), so that
  Ctrl-Z, a background `rsbox run` and the terminal's signals behave as before. Without
  a terminal P1 gets its signals from us only, as it always did from our forwarding;
* our death: P1's parent is the helper, so PDEATHSIG cannot name us. The helper holds
  our connection and SIGKILLs the P1 (through its pidfd) when the connection reaches EOF
  without a "detached" word, which is what P1's PDEATHSIG did; P1's own PDEATHSIG names
  the helper. P2's guard then ends the container, as before;
* its command line: P1 (and P2, its fork) overwrite the helper's argv with ours, so that
  `ps` and anything that looks for a container's processes by their command line find
  them as before (up to TITLE_ROOM bytes);
* the exit status: P1 is not our child, so the helper reaps it (pidfd) and sends the
  wait status over the connection; we signal P1 through the pidfd it sent us.

* a Slurm job: not used. A job's processes must stay in its process tree (proctrack
  follows parentage) and its cgroup, and a helper started by one job would serve the
  next job's runs on the node, or be killed with its own job: each task forks its P1.

A miss (off, a terminal, no socket, refused, another uid, another context, the helper's
code changed) costs one connect attempt and falls back to prefork's fork. After a
foreground run that missed, `spawn()` starts a helper in the background for next time.

Knobs: RSBOX_WARM_HELPER=0 (or `[run] warm-helper = false` in rsbox's config file).
The helper exits after RSBOX_WARM_IDLE seconds (default 600) without a container.

Imported by the CLI before anything heavy: `os`, `sys` and C modules only.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import sys

from fs.knobs import is_off
from rootless import running
from rootless import signals as signal
from rootless.launch.prefork import Helper

__all__ = ["Helper", "WarmP1", "connect", "spawn_if_wanted"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from rootless.config import Settings
    from rootless.launch.protocol import SignalWakeup

    class Context(Protocol):  # rootless.commands.Context, which the launcher must not import
        def settings(self) -> Settings: ...


ENV_KNOB = "RSBOX_WARM_HELPER"
IDLE_ENV = "RSBOX_WARM_IDLE"
DEFAULT_IDLE = 600.0  # a pause in a working session; idle, a helper holds ~29 MB RSS
TITLE_ROOM = 2048  # bytes of the helper's argv that a P1 overwrites with its CLI's
DETACHED = b"d"  # P0 -> helper: the monitor outlives us, do not kill it at our EOF
_STATUS_LINE = 64

# Set by connect() when a helper should be started for next time (spawn()).
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
    """What a P1 inherits from its parent and cannot be handed to it afterwards; equal
    texts mean a helper's child is as good as our own."""
    status = [
        line
        for line in _read("/proc/self/status").splitlines()
        if line.startswith(("NoNewPrivs:", "Seccomp:", "Seccomp_filters:", "Cpus_allowed:", "Cap"))
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
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
            f"ids {os.getresuid()} {os.getresgid()} {sorted(os.getgroups())}",
            f"nice {nice}",
            "root " + os.readlink("/proc/self/root"),
            _read("/proc/self/cgroup").strip(),
            "loginuid " + _read("/proc/self/loginuid"),
            "session " + _read("/proc/self/sessionid"),
            _read("/proc/self/oom_score_adj").strip(),
            *status,
            *ns,
        ]
    )


def socket_path(ctx: str) -> str:
    """One helper per user (the runtime directory is per uid) and per context."""
    import zlib  # a C module: no import chain

    name = f"{zlib.crc32(ctx.encode()):08x}.sock"
    return os.path.join(running.runtime_base(), "warm", name)


def _request(ctx: str) -> bytes:
    import resource

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
        "argv": list(sys.orig_argv),
    }
    data = repr(doc).encode()
    return len(data).to_bytes(8, "little") + data


class WarmP1(Helper):
    """A P1 forked by the helper: prefork.Helper's interface (pid, pipes, abort, kill,
    wait), over a connection to the helper. The helper's answer is read when P0 first
    needs the pid (settle): its work runs on the other core while we parse and resolve.
    If it refused after all, settle() forks P1 here (prefork.Helper), late but correct."""

    def __init__(self, sock: _socket.socket, ctx: str) -> None:
        self.used = False
        self.sock = sock
        Helper.parent_only.add(sock.fileno())
        self.pidfd = -1
        self.pid = 0  # known once settled (p0.run settles first)
        self._fallback: Helper | None = None
        self._status: int | None = None
        self.err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        go_r, self.go_w = os.pipe2(os.O_CLOEXEC)
        launch_r, self.launch_w = os.pipe2(os.O_CLOEXEC)
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        theirs = [0, 1, 2, cwd, launch_r, ready_w, go_r, err_w]
        try:
            import array

            sock.sendmsg(
                [_request(ctx)],
                [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", theirs).tobytes())],
            )
        finally:
            for fd in theirs[3:]:
                os.close(fd)

    def settle(self) -> None:
        """Read the helper's answer: P1's pid and pidfd, or a refusal (then fork)."""
        if self.pid:
            return
        import array

        fds = array.array("i")
        try:
            msg, anc, _, _ = self.sock.recvmsg(_STATUS_LINE, _socket.CMSG_SPACE(4))
            for level, kind, data in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % 4])
        except OSError:
            msg = b""
        if msg.startswith(b"ok ") and len(fds) == 1:
            self.pid = int(msg.split()[1])
            self.pidfd = fds[0]
            os.set_inheritable(self.pidfd, False)
            return
        for fd in fds:
            os.close(fd)
        if os.environ.get("RSBOX_DEBUG"):
            print(f"rsbox: warm helper: {msg.decode(errors='replace').strip()}", file=sys.stderr)
        global missed
        missed = True
        self._fork_here()

    def _close_sock(self) -> None:
        Helper.parent_only.discard(self.sock.fileno())
        self.sock.close()

    def _fork_here(self) -> None:
        self._close_sock()
        self.close()
        h = self._fallback = Helper()
        self.pid = h.pid
        self.err_r, self.ready_r, self.go_w, self.launch_w = h.err_r, h.ready_r, h.go_w, h.launch_w

    def let_go(self) -> None:
        """Detached: P1 becomes the container's monitor and outlives us."""
        self.settle()
        if self._fallback is None:
            self.sock.sendall(DETACHED)

    def kill(self, sig: int) -> None:
        self.settle()
        if self._fallback is not None:
            self._fallback.kill(sig)
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, sig)

    def wait(self, wakeup: SignalWakeup | None = None) -> int:
        """P1's wait status, from the helper (which reaped it)."""
        self.settle()
        if self._fallback is not None:
            return self._fallback.wait(wakeup)
        if self._status is None:
            data = b""
            while not data.endswith(b"\n"):
                if wakeup is not None:
                    wakeup.wait_readable(self.sock.fileno())
                chunk = self.sock.recv(_STATUS_LINE)
                if not chunk:  # the helper died: so did P1 (its parent-death signal)
                    self._status = signal.SIGKILL
                    break
                data += chunk
            else:
                self._status = int(data.split()[-1])
        return self._status

    def abort(self) -> None:
        """P1 has done nothing but wait for the Launch: closing the connection is enough
        (the helper kills it at our EOF); through the pidfd as well when we have it."""
        if self._fallback is not None:
            self._fallback.abort()
            return
        if self.pid:
            self.kill(signal.SIGKILL)
        self._close_sock()
        self.close()


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


def connect(command: str) -> WarmP1 | None:
    """A P1 from the helper for `rsbox run`, or None (a miss: fork as before). Not for
    `start`: a detached start forks its P1s itself (one per container)."""
    global missed
    if (
        command != "run"
        or not enabled()
        or any(os.isatty(fd) for fd in (0, 1, 2))
        or "SLURM_JOB_ID" in os.environ
    ):
        return None
    ctx = context()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(socket_path(ctx))
        if peer(sock)[1] != os.getuid():
            raise PermissionError("the helper's socket belongs to another user")
        return WarmP1(sock, ctx)
    except OSError:
        sock.close()
        missed = True
        return None


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
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    spawn(dict(os.environ, PYTHONPATH=top + (os.pathsep + path if path else "")))


def spawn(env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Start a helper for next time, detached (its own session, stdio /dev/null), in
    the background: after our container ended, so that its imports do not compete with
    this run's. It finds its own way if another one won the race (warmd)."""
    with contextlib.suppress(OSError):
        os.posix_spawn(
            sys.executable,
            # The last argument is room for each P1's title (warmd.retitle).
            [sys.executable, "-m", "rootless.launch.warmd", " " * TITLE_ROOM],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
            ],
            setsid=True,
        )
