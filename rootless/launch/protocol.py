"""What crosses the pipes between P0, P1, P2 and P3 (and `exec`'s two processes).

* The `Launch`: everything the tree needs, computed by P0 before the first fork and
  pickled to P1 over a pipe. Every field is required: a launch without a container
  record, a store or a capability set is not a launch.
* One-byte messages on the sync pipes, named below, never written as literals.
* The error line: a child that fails writes one dict on the error pipe as an ASCII
  Python literal (close-on-exec, so its EOF also tells a detached P0 that the command
  was executed); P0 turns it back into the `RsboxError` it was, and exits with Docker's
  code for it. Written with builtins only: a child that failed after joining the
  container's mount namespace (exec's E1, P3) must import nothing, as every import
  would be looked up in the container's files.
* Wait status to exit code: Docker's rule, 128 + signal for a killed command.
* The signals P0 forwards to the container, and `GUARD_SIGNAL`, the parent-death signal
  P2 arms to kill pid 1 from outside (see p2.py).

This module is imported by prefork before the early fork: it imports nothing heavy, at
import time.
"""

from __future__ import annotations

import os

from rootless import signals as signal  # not `signal`: see rootless.signals
from rootless.record import Record

TYPE_CHECKING = False  # `exec` imports this module: no typing (rootless.record)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Final, NoReturn

    from rootless.cgroups import ContainerCgroup
    from rootless.errors import RsboxError
    from rootless.idmap import IdMap
    from rootless.launch.keepid import HostUser
    from rootless.runspec import ProcessPlan, RunSpec

# The signals P0 (and exec's P0) forward into the container.
FORWARDED_SIGNALS: Final = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# P2's parent-death signal: not one the container's user can send us through P0 (those
# are forwarded), and catchable, unlike SIGKILL, so that P2 can act on it.
GUARD_SIGNAL: Final = signal.SIGRTMIN

# One-byte messages.
USERNS_MADE: Final = b"U"  # P1 -> P0: my user namespace exists, write my id maps
MAPPED: Final = b"M"  # P0 -> P1: the maps are written
NETNS_MADE: Final = b"N"  # P2 -> P1: my network namespace exists (wire it, or wait for P0)
WIRED: Final = b"G"  # P1 -> P2, P0 -> P1: the network is attached, go on
RESTART: Final = b"R"  # P1 -> its restarter: run `rsbox start` once I am gone
PTY_MASTER: Final = b"m"  # P3 -> P1, exec -> P0: here is the pty master (SCM_RIGHTS)


class Launch(Record):
    """Everything the tree needs for one container, `run` and `start` alike. (A Record,
    not a dataclass: prefork imports this module before its fork, and dataclasses costs
    ~8 ms of import on the start path.)"""

    spec: RunSpec
    plan: ProcessPlan
    layers: tuple[Path, ...]
    upper: Path
    rootfs: Path
    idmap: IdMap
    bpf: bytes | None  # the enforcing filter; None: unconfined (or learning)
    caps: frozenset[str]  # the capability set pid 1 runs with (rootless.launch.caps)
    etc_files: Mapping[str, Path]
    cid: str
    cdir: Path  # the container's directory in the store (config, state, log)
    store_root: Path  # for `run -d --rm`: the monitor removes the container
    restart_count: int  # --restart: how many times the monitor restarted it so far
    # A filter P3 installs with a listener whose fd goes to P1: --seccomp-learn's (spec says
    # so), or fakeroot's true-owner filter under a single-id map (policies.fakeroot).
    notify_program: bytes | None
    init_binary: Path | None  # --init: rsbox-init, bound at /dev/init
    cgroup: ContainerCgroup | None  # the container's own cgroup v2, when delegated
    # --userns keep-id: the caller, for the /etc/passwd and /etc/group entries P3 binds
    # (rootless.launch.keepid); None otherwise.
    keep_id_user: HostUser | None = None


# --- errors across the tree -------------------------------------------------------------


def report(fd: int, exc: BaseException) -> int:
    """Write one error line for P0 and return the exit code to use. Pipe writes under
    PIPE_BUF bytes are atomic and never block on an empty pipe."""
    from rootless.errors import RsboxError  # imported by the parent already: no lookup

    if isinstance(exc, RsboxError):
        doc = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        code = exc.exit_code
    elif isinstance(exc, OSError):
        what = f" ({exc.filename})" if exc.filename else ""
        doc = {"type": "RsboxError", "message": f"{exc.strerror}{what}", "hint": None}
        code = 125
    else:
        doc = {
            "type": "RsboxError",
            "message": f"internal error: {exc!r}",
            "hint": "please report this with the output of rsbox info",
        }
        code = 125
    line = ascii(doc)
    while len(line) > 3900:  # one atomic write; ascii() escapes may be 10 chars each
        doc["message"] = str(doc["message"])[: len(str(doc["message"])) // 2]
        line = ascii(doc)
    try:  # noqa: SIM105 - no contextlib on exec's path (rootless.record)
        os.write(fd, (line + "\n").encode())
    except OSError:
        pass
    return code


def child(fd: int, body: Callable[..., object], *args: object) -> NoReturn:
    """Run `body` in a forked child and never return to the caller's code: a failure is
    reported on `fd` and becomes the child's exit code."""
    code = 125
    try:
        body(*args)
    except BaseException as exc:  # every failure must reach P0
        if os.environ.get("RSBOX_DEBUG"):
            import traceback

            traceback.print_exc()
        code = report(fd, exc)
    finally:
        os._exit(code)


def parse_error(data: bytes) -> RsboxError | None:
    """The first error line in `data`, as the exception it was."""
    if not data.strip():
        return None  # the usual case: no import
    import ast

    from rootless import errors

    for line in data.decode(errors="replace").splitlines():
        try:
            doc = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if not isinstance(doc, dict):
            continue
        cls = getattr(errors, str(doc.get("type")), errors.RsboxError)
        if not (isinstance(cls, type) and issubclass(cls, errors.RsboxError)):
            cls = errors.RsboxError
        hint = doc.get("hint")
        return cls(str(doc.get("message")), str(hint) if hint is not None else None)
    return None


def read_error(fd: int) -> RsboxError | None:
    """What a child reported on the error pipe `fd`, without blocking."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return None
    return parse_error(data)


def exit_code(status: int) -> int:
    """A wait status as Docker reports it: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def die_with_parent(parent: int, sig: int) -> None:
    """Arm `sig` as our parent-death signal; if `parent` is gone already (it died before
    the signal was armed: we were reparented), give up now."""
    from rootless import syscalls as sc  # after the fork: prefork imports us before it

    sc.set_pdeathsig(sig)
    if os.getppid() != parent:
        os._exit(125)


# Held across the fork of a supervised child until the parent's handlers know its pid.
SUPERVISED_SIGNALS: Final = frozenset({GUARD_SIGNAL, *FORWARDED_SIGNALS})


def default_signals(mask: set[int | signal.Signals]) -> None:
    """In a child forked with SUPERVISED_SIGNALS held (P3, exec's E1): those signals at
    their default action, then the mask from before the hold. A Ctrl-C forwarded before
    the command runs then ends the child (130), where an inherited handler would raise in
    rsbox's code and an inherited SIG_IGN (P1's, or a caller's: a script's background job
    ignores INT and QUIT) would drop it."""
    for s in SUPERVISED_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def supervise_child(pid: int, on_guard: Callable[[], None]) -> int:
    """In the parent, after forking `pid` with SUPERVISED_SIGNALS held: forward the
    user's signals to it and run `on_guard` on our parent's death, until it ends; returns
    its exit code (Docker's rule). The signals stay held (the caller exits next) and are
    taken one by one with sigwaitinfo, SIGCHLD among them: a Python handler runs only
    between two bytecodes, so one that came just before a blocking waitpid waited with
    it, for as long as the child lived (a Ctrl-C lost under load)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    wanted = {*SUPERVISED_SIGNALS, signal.SIGCHLD}
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return exit_code(status)
        sig = signal.sigwaitinfo(wanted).si_signo
        if sig == GUARD_SIGNAL:
            on_guard()
        elif sig != signal.SIGCHLD:
            kill_quietly(pid, sig)


class SignalWakeup:
    """A signal's arrival as a readable fd, while in a `with` block (set_wakeup_fd). A
    Python handler runs between two bytecodes only: a signal that came after the last
    check and before a blocking call (select, read, waitpid) would wait with that call,
    for as long as the command or the container runs (a lost Ctrl-C, seen under load).
    Blocking in select() on `fd` as well ends the wait; the handler runs as it returns."""

    def __enter__(self) -> SignalWakeup:
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.set_wakeup_fd(self._old)
        os.close(self.fd)
        os.close(self._w)

    def drain(self) -> None:
        """Empty `fd` (the signal numbers written to it; the handlers did the work)."""
        try:
            while os.read(self.fd, 512):
                pass
        except BlockingIOError:
            pass

    def wait_readable(self, fd: int) -> None:
        """Block until `fd` is readable, running the handlers of signals as they come."""
        import select

        while True:
            try:
                ready, _, _ = select.select([fd, self.fd], [], [])
            except InterruptedError:
                continue
            if self.fd in ready:
                self.drain()
            if fd in ready:
                return


def kill_quietly(pid: int, sig: int) -> None:
    """kill(2) that ignores a process already gone. Never 0 or -1: those are groups."""
    if pid <= 0:
        raise ValueError(f"refusing to signal pid {pid}")
    try:  # noqa: SIM105 - no contextlib on exec's path (rootless.record)
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
