"""The warm helper's server: one per user and context (rootless.launch.warm), started on
demand by a `rsbox run` that missed it, never by root. Its process (rootless.warm_helper)
imports what `run` needs once, the CLI's modules and P1's, then forks a "warm P0" per
request, which takes on the caller's process context and runs its command line as the
CLI would have (and forks its P1 from there: p1.main, the user namespace, the mounts,
P2, the sealed tree).

* The socket: `$XDG_RUNTIME_DIR/rsbox/warm-<hash of the context>.sock` (else
  /tmp/rsbox-<uid>, as rootless.running), in a directory private to us, made with umask
  077 (mode 0700 minus nothing more); every connection's SO_PEERCRED uid must be ours,
  or it is closed unread.
* The code: the package's files (path, size, mtime) are noted at start and looked at
  again at each request; if they changed (an upgrade, an edit) the helper refuses (the
  CLI runs the command itself), stops listening and exits once its warm P0s are done.
  The config file's `[run] warm-helper = false` and RSBOX_WARM_HELPER=0 (the CLI's
  environment) are read at each request too.
* Its lifetime: it exits after RSBOX_WARM_IDLE seconds (600 by default: a pause in a
  working session) with no warm P0 running; when its socket is no longer its own
  (removed, or replaced by a newer helper); never while a warm P0 runs, since those die
  with it (their parent-death signal is SIGKILL, as a P0 died with its CLI before). A
  detached container's monitor outlives its warm P0 and is not ours to wait for.
* Single-threaded (selectors on the listening socket, the connections and the children's
  pidfds): a warm P0 forks its P1, which must be forked from a process without threads,
  since it is about to unshare(CLONE_NEWUSER).
"""

from __future__ import annotations

import ast
import contextlib
import gc
import os
import resource
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rootless.launch import warm

CHECK_EVERY = 5.0  # seconds between looks at our socket and idle time
IOPRIO_CLASS_SHIFT, IOPRIO_CLASS_RT = 13, 1  # linux/ioprio.h


@dataclass
class Child:
    """One warm P0 and the connection of the CLI that asked for it."""

    pid: int
    pidfd: int
    conn: socket.socket | None


# The command line a warm P0 runs (rootless.warm_helper: the CLI's, which this
# module, the launcher's, must not import). It does not return.
Entry = Callable[[list[str]], None]


@dataclass
class Helper:
    listener: socket.socket | None
    path: str
    inode: int
    context: str
    stamp: tuple[tuple[str, int, int], ...]
    idle: float
    entry: Entry
    children: dict[int, Child] = field(default_factory=dict)  # by pidfd
    last_busy: float = field(default_factory=time.monotonic)


def code_stamp() -> tuple[tuple[str, int, int], ...]:
    """The package's files as installed: their paths, sizes and mtimes."""
    import fs
    import policies
    import rootless

    out = []
    for pkg in (rootless, fs, policies):
        top = os.path.dirname(os.path.abspath(pkg.__file__ or ""))
        for d, dirs, files in os.walk(top):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for name in sorted(files):
                if name.endswith((".py", ".so", ".c")):
                    st = os.stat(os.path.join(d, name))
                    out.append((os.path.join(d, name), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _preload(more: Callable[[], None]) -> None:
    """What P1 imports (p1.main, supervise, the FUSE server and its C shim) and `more`
    (the CLI's), once."""
    from rootless.launch.prefork import lean_imports

    gc.disable()
    with lean_imports():
        import fs.server
        import fs.union  # noqa: F401
        import rootless.launch.p1
        import rootless.launch.supervise  # noqa: F401

        more()
    gc.freeze()
    gc.enable()


def _listen(path: str) -> tuple[socket.socket, int] | None:
    """Bind beside `path` and rename over it (a stale socket is replaced in one step); None
    if a live helper answers there already."""
    from rootless import lifecycle

    lifecycle.runtime_dir("warm", create=True)  # the base, checked private to us
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(OSError), probe:
        probe.connect(path)
        return None
    tmp = f"{path}.{os.getpid()}"
    old = os.umask(0o077)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        sock.bind(tmp)
    finally:
        os.umask(old)
    sock.listen(64)
    os.rename(tmp, path)
    return sock, os.stat(path).st_ino


def main(entry: Entry, preload: Callable[[], None]) -> None:
    """Serve until idle: each request's warm P0 runs `entry(its args)`; `preload` imports
    what those need."""
    os.closerange(3, 1 << 20)  # nothing of our parent's
    os.chdir("/")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stamp = code_stamp()  # before the imports: a file changed meanwhile is a change
    _preload(preload)
    ctx = warm.context()
    path = warm.socket_path(ctx)
    bound = _listen(path)
    if bound is None:
        return
    try:
        idle = float(os.environ.get(warm.IDLE_ENV) or warm.DEFAULT_IDLE)
    except ValueError:
        idle = warm.DEFAULT_IDLE
    helper = Helper(bound[0], path, bound[1], ctx, stamp, idle, entry)
    serve(helper)


def _ours(helper: Helper) -> bool:
    try:
        return os.stat(helper.path).st_ino == helper.inode
    except OSError:
        return False


def _stale(helper: Helper) -> bool:
    """Looked at when nothing happened for a while (requests check the code themselves)."""
    return not _ours(helper) or code_stamp() != helper.stamp or warm.context() != helper.context


def _stop_listening(helper: Helper, sel: selectors.BaseSelector) -> None:
    if helper.listener is None:
        return
    sel.unregister(helper.listener)
    if _ours(helper):
        with contextlib.suppress(OSError):
            os.unlink(helper.path)
    helper.listener.close()
    helper.listener = None


def serve(helper: Helper) -> None:
    sel = selectors.DefaultSelector()
    assert helper.listener is not None
    sel.register(helper.listener, selectors.EVENT_READ, "accept")
    while True:
        if helper.children:
            helper.last_busy = time.monotonic()
        elif helper.listener is None or time.monotonic() - helper.last_busy > helper.idle:
            _stop_listening(helper, sel)
            return  # no warm P0 left, none to come
        wait = CHECK_EVERY
        if not helper.children:
            wait = min(wait, max(0.0, helper.idle - (time.monotonic() - helper.last_busy)) + 0.01)
        events = sel.select(wait)
        for key, _ in events:
            if key.data == "accept":
                _accept(helper, sel)
            elif key.data == "pidfd":
                _reap(helper, sel, key.fd)
            else:
                _from_cli(helper, sel, key.data)
        if helper.listener is not None and not events and _stale(helper):
            _stop_listening(helper, sel)  # replaced, removed, or our code changed


def _accept(helper: Helper, sel: selectors.BaseSelector) -> None:
    assert helper.listener is not None
    try:
        conn, _ = helper.listener.accept()
    except OSError:
        return
    helper.last_busy = time.monotonic()
    if warm.peer(conn)[1] != os.getuid():
        conn.close()  # another user: not a word, not an fd
        return
    fds: tuple[int, ...] = ()
    try:
        req = _receive(conn)
        fds = req.fds
        why = _refusal(helper, req)
        if why:
            conn.sendall(f"no {why}\n".encode())
            if why in ("code-changed", "context"):  # not ours to serve any more: a new
                _stop_listening(helper, sel)  # helper, started by this CLI, takes the name
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            _warm_p0(conn, req, helper.entry)
        pidfd = os.pidfd_open(pid)
        os.set_inheritable(pidfd, False)
        child = Child(pid, pidfd, conn)
        helper.children[pidfd] = child
        sel.register(pidfd, selectors.EVENT_READ, "pidfd")
        sel.register(conn, selectors.EVENT_READ, child)
        socket.send_fds(conn, [f"ok {pid}\n".encode()], [pidfd])
    except OSError:
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


@dataclass(frozen=True)
class Request:
    """What a CLI sends (warm._request), parsed once: its process context and what its
    warm P0 must inherit, its command line, and the fds (stdio, cwd)."""

    context: str
    env: dict[str, str]
    umask: int
    rlimits: dict[str, tuple[int, int]]
    ignored: frozenset[int]
    blocked: frozenset[int]
    affinity: frozenset[int]
    ioprio: int
    argv: tuple[str, ...]
    args: tuple[str, ...]
    fds: tuple[int, ...]

    @classmethod
    def parse(cls, data: bytes, fds: list[int]) -> Request:
        doc = ast.literal_eval(data.decode())
        if not isinstance(doc, dict) or len(fds) != warm.STDIO_AND_CWD:
            raise ConnectionError("bad request")
        env = doc["env"]
        limits = doc["rlimits"]
        if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
            raise ConnectionError("bad environment")
        if not all(n.startswith("RLIMIT_") and hasattr(resource, n) for n in limits):
            raise ConnectionError("bad rlimits")
        return cls(
            context=str(doc["context"]),
            env={str(k): v for k, v in env.items()},
            umask=int(doc["umask"]),
            rlimits={str(n): (int(a), int(b)) for n, (a, b) in limits.items()},
            ignored=frozenset(int(x) for x in doc["ignored"]),
            blocked=frozenset(int(x) for x in doc["blocked"]),
            affinity=frozenset(int(x) for x in doc["affinity"]),
            ioprio=int(doc["ioprio"]),
            argv=tuple(str(x) for x in doc["argv"]),
            args=tuple(str(x) for x in doc["args"]),
            fds=tuple(fds),
        )


def _receive(conn: socket.socket) -> Request:
    conn.settimeout(5)  # a caller that connects and says nothing does not hold us
    head, fds, _, _ = socket.recv_fds(conn, 8, 16)
    try:
        while len(head) < 8:
            more = conn.recv(8 - len(head))
            if not more:
                raise ConnectionError("short request")
            head += more
        size = int.from_bytes(head, "little")
        data = bytearray()
        while len(data) < size:
            more = conn.recv(size - len(data))
            if not more:
                raise ConnectionError("short request")
            data += more
        conn.settimeout(None)
        return Request.parse(bytes(data), fds)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, MemoryError, RecursionError):
        for fd in fds:
            os.close(fd)
        raise ConnectionError("bad request") from None


def _refusal(helper: Helper, req: Request) -> str:
    """Why this request cannot be served by a child of ours ("" if it can)."""
    if not warm.enabled(req.env):
        return "off"
    if req.context != warm.context():  # ours too: we may have been moved
        return "context"
    if code_stamp() != helper.stamp:
        return "code-changed"
    from rootless.config import load_settings
    from rootless.errors import RsboxError

    try:
        if not load_settings(req.env).warm_helper:
            return "off"
    except RsboxError:
        return "config"  # P0 reports the config error itself
    from rootless import syscalls as sc

    if req.ioprio >> IOPRIO_CLASS_SHIFT == IOPRIO_CLASS_RT and req.ioprio != sc.ioprio():
        return "ioprio"  # realtime I/O needs CAP_SYS_NICE: a child of ours cannot take it
    for name, (_, hard) in req.rlimits.items():
        _, mine = resource.getrlimit(getattr(resource, name))
        if mine != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > mine):
            return "rlimits"  # a hard limit cannot be raised back
    return ""


def _warm_p0(conn: socket.socket, req: Request, entry: Entry) -> None:
    """The forked child: take on the CLI's process context, then run its command line."""
    code = 125
    try:
        from rootless import syscalls as sc

        sc.set_pdeathsig(signal.SIGKILL)  # dies with us; we kill it when the CLI is gone
        if os.getppid() == 1:
            os._exit(125)
        conn.detach()  # its fd is closed below, with every other fd of ours
        retitle(req.argv)
        stdin, stdout, stderr, cwd = req.fds
        for s in signal.valid_signals():
            if s in (signal.SIGKILL, signal.SIGSTOP):
                continue
            with contextlib.suppress(OSError, ValueError):
                signal.signal(s, signal.SIG_IGN if s in req.ignored else signal.SIG_DFL)
        if signal.SIGINT not in req.ignored:  # as Python set it in the CLI
            signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, req.blocked)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
        os.fchdir(cwd)
        os.umask(req.umask)
        for name, limit in req.rlimits.items():
            resource.setrlimit(getattr(resource, name), limit)
        os.sched_setaffinity(0, req.affinity)
        sc.set_ioprio(req.ioprio)  # best-effort and idle are anyone's (_refusal: realtime)
        os.environ.clear()
        os.environ.update(req.env)
        from rootless.launch.become import close_fds_except

        close_fds_except()  # the helper's own, `conn`, and the received copies
        entry(list(req.args))
    finally:
        os._exit(code)


def retitle(argv: tuple[str, ...]) -> None:
    """Our command line (/proc/self/cmdline, what ps shows) becomes `argv`, cut to the
    room the kernel gave ours: written into our own argv area through /proc/self/mem,
    NUL-padded to its end (its last byte NUL: the kernel then reads no further)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5))
        data = "\0".join(argv).encode(errors="replace")[: end - start - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(data + b"\0" * (end - start - len(data)))
    except (OSError, ValueError, IndexError):
        pass  # an older kernel: the helper's own command line stays


def _from_cli(helper: Helper, sel: selectors.BaseSelector, child: Child) -> None:
    assert child.conn is not None
    try:
        data = child.conn.recv(16)
    except OSError:
        data = b""
    if data:
        return  # the CLI says nothing more after its request
    sel.unregister(child.conn)
    child.conn.close()
    child.conn = None
    # The CLI is gone: its warm P0 goes too, as a P0 died with the CLI that it was.
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)


def _reap_pidfd(pidfd: int) -> int:
    """Reap through the pidfd (waitid P_PIDFD) and return a wait status as waitpid
    would: a pid is never named, so none can be a reused one."""
    info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    assert info is not None  # without WNOHANG, waitid waits
    if info.si_code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    return info.si_status | (0x80 if info.si_code == os.CLD_DUMPED else 0)


def _reap(helper: Helper, sel: selectors.BaseSelector, pidfd: int) -> None:
    child = helper.children.pop(pidfd)
    sel.unregister(pidfd)
    status = _reap_pidfd(pidfd)
    os.close(pidfd)
    helper.last_busy = time.monotonic()
    if child.conn is not None:
        with contextlib.suppress(OSError):
            child.conn.sendall(f"status {status}\n".encode())
        sel.unregister(child.conn)
        child.conn.close()
