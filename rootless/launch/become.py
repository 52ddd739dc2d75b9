"""The one sealed path from rsbox's code into a container's process.

Every process that will run container code goes through `become`: the container's pid 1
(p3.py), each `rsbox exec` (exec.py), and later build steps and environment shims. What a
process of rsbox holds until it executes the container's command is the user's: the
caller's environment and terminal, rsbox's memory, and, before the steps below, every
capability of the container's user namespace. Container root holds CAP_KILL and, with
--cap-add, CAP_SYS_PTRACE in that namespace, and shares the uid; so the order is:

1. PR_SET_DUMPABLE 0, first. A non-dumpable process cannot be ptraced, nor its
   /proc/PID/{environ,mem,exe,fd} read, by anyone lacking CAP_SYS_PTRACE in the user
   namespace its memory was created in, which is the host's (rsbox was executed there).
   execve() resets the flag for the container's command, whose memory is its own.
2. setsid(): a new session has no controlling terminal, so the caller's terminal is out
   of reach (TIOCSTI needs it to be the caller's controlling terminal); with -t the
   container's own pty becomes the controlling terminal, at the end.
3. The user, from the container's /etc/passwd (read bounded: it is the image's file).
4. Capabilities, part one: the bounding set is cut to the container's set and the
   ambient set cleared while we still hold CAP_SETPCAP.
5. Groups, gid, uid, in that order (setuid drops what setgroups/setgid need). A non-root
   uid loses its permitted and effective capabilities here (the kernel's rule).
6. Capabilities, part two: capset() to the container's set (root) or to none.
7. The working directory, as the user; the executable, found on the container's PATH as
   the user (Docker's 126/127 decided here, before anything is executed).
8. Every fd but 0-2, the terminal and the error pipe closed; rlimits.
9. no_new_privs and the seccomp filter, last: nothing after it is rsbox's own work but
   (for exec) fork, wait and execve.
10. With `outside=True` (exec) we are not in the container's pid namespace (setns(pid)
   only moves our children): only now do we start the process the container can see. It
   starts its own session, takes the pty, and executes (rootless.syscalls.spawn: a
   vfork-style child that runs no Python); we stay outside, invisible to the container,
   and relay its exit status. Without (pid 1): we execute ourselves.
11. Right before execve: no signal ignored, none blocked (what Podman's commands start
   with). An ignore survives execve: rsbox's own (Python ignores SIGPIPE and SIGXFSZ) or
   the caller's (a script's background job ignores INT and QUIT) would reach the command,
   and the Ctrl-C that P0 forwards would then do nothing.

Each failure raises; the caller reports it on the error pipe (protocol.child).
"""

from __future__ import annotations

import errno
import os
import stat

from rootless import signals as signal  # not `signal`: see rootless.signals
from rootless import syscalls as sc
from rootless.errors import (
    CommandNotExecutable,
    CommandNotFound,
    HostError,
    RsboxError,
    UsageError,
)
from rootless.launch import caps as capabilities
from rootless.launch.protocol import SUPERVISED_SIGNALS, kill_quietly, supervise_child
from rootless.record import Record
from rootless.userdb import ExecUser, resolve_user

TYPE_CHECKING = False  # `exec` imports this module: no typing (rootless.record)
if TYPE_CHECKING:
    import socket
    from typing import Any, NoReturn

    from rootless.launch.protocol import Launch

# An /etc/passwd or /etc/group larger than this is not one (it may be a symlink to
# /dev/zero in a hostile image): read no more.
MAX_USERDB_BYTES = 4 << 20
INIT_PATH = "/dev/init"  # where p3 binds rsbox-init for --init (mountplan)


class Process(Record):
    """The container process to become: what `run`'s plan or `exec`'s flags asked."""

    argv: tuple[str, ...]
    env: tuple[str, ...]  # the container's environment: image, -e, container; never ours
    cwd: str
    user: str  # "" is root; resolved against the container's /etc/passwd
    full_idmap: bool
    caps: frozenset[str]
    rlimits: tuple[tuple[int, int, int], ...]
    bpf: bytes | None  # None: unconfined (no_new_privs all the same)
    init: bool = False  # --init: execute rsbox-init (INIT_PATH), which runs argv
    # The container's uid and gid that are the host user (rootless.idmap): (0, 0), or the
    # user's own under --userns keep-id. On a single-id map they are the only ids there are.
    host_ids: tuple[int, int] = (0, 0)

    def to_json(self) -> dict[str, object]:
        """What `exec` starts from (rootless.lifecycle.save_process): this process but its
        argv, its filter (seccomp.bpf beside it) and --init."""
        return {
            "env": list(self.env),
            "cwd": self.cwd,
            "user": self.user,
            "full_idmap": self.full_idmap,
            "host_ids": list(self.host_ids),
            "caps": sorted(self.caps),
            "rlimits": [list(r) for r in self.rlimits],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], argv: tuple[str, ...], bpf: bytes | None) -> Process:
        return cls(
            argv=argv,
            env=tuple(str(e) for e in doc["env"]),
            cwd=str(doc["cwd"]),
            user=str(doc["user"]),
            full_idmap=bool(doc["full_idmap"]),
            caps=frozenset(str(c) for c in doc["caps"]),
            rlimits=tuple((int(r), int(s), int(h)) for r, s, h in doc["rlimits"]),
            bpf=bpf,
            host_ids=_host_ids(doc.get("host_ids")),
        )


def _host_ids(value: Any) -> tuple[int, int]:
    """Saved `host_ids`; a process saved before keep-id existed has none: (0, 0)."""
    if value is None:
        return (0, 0)
    uid, gid = value
    return (int(uid), int(gid))


def process_of(launch: Launch) -> Process:
    """The container's pid 1, as the Launch describes it (p3; saved for `exec` by gather)."""
    spec, plan = launch.spec, launch.plan
    return Process(
        argv=plan.argv,
        env=plan.env,
        cwd=plan.cwd,
        user=plan.user,
        full_idmap=launch.idmap.full,
        caps=launch.caps,
        # What the container's cgroup enforces needs no rlimit as well.
        rlimits=tuple(spec.limits().rlimits(launch.cgroup.enforced if launch.cgroup else None))
        if spec.has_limits
        else (),
        bpf=launch.bpf,
        init=spec.init,
        host_ids=(launch.idmap.inside_uid, launch.idmap.inside_gid),
    )


class Learning(Record):
    """A NOTIFY filter to install and where its listener goes: --seccomp-learn's, or
    fakeroot's under a single-id map (`emulated_ids`: P1 answers the set*id calls,
    rootless.launch.fakeroot, so the image's USER is taken on through them)."""

    program: bytes
    sock: socket.socket
    emulated_ids: bool = False


def read_userdb(path: str) -> str:
    """The container's /etc/passwd or /etc/group: a regular file, bounded, or ""."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        data = os.read(fd, MAX_USERDB_BYTES)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def find_executable(argv0: str, env_path: str) -> str:
    """The PATH search of runc/Docker, with their messages and exit codes."""
    if "/" in argv0:
        candidates = [argv0]
    else:
        candidates = [os.path.join(d or ".", argv0) for d in env_path.split(":")]
    denied = None
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if not os.path.isfile(c) or not (st.st_mode & 0o111):
            denied = c
            continue
        return c
    if denied is not None:
        raise CommandNotExecutable(
            f"{denied}: permission denied", hint="the file is not executable in the image"
        )
    where = "" if "/" in argv0 else " in $PATH"
    raise CommandNotFound(
        f"{argv0}: executable file not found{where}",
        hint="check the command name, or run a shell: rsbox run -it IMAGE sh",
    )


def exec_failure(argv0: str, exc: OSError) -> RsboxError:
    """Docker's code for an execve that failed after the PATH search succeeded."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return CommandNotFound(f"{argv0}: {exc.strerror}", hint="check the command")
    return CommandNotExecutable(f"{argv0}: {exc.strerror}", hint="the file cannot be executed here")


def close_fds_except(*keep: int) -> None:
    """Close every fd above 2 but `keep`: nothing of rsbox's may leak into the container."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def _switch_ids(user: ExecUser, proc: Process) -> None:
    if not proc.full_idmap and (user.uid, user.gid) != proc.host_ids:
        uid, gid = proc.host_ids
        raise HostError(
            f"user {user.uid}:{user.gid} is not mapped in a single-id user namespace "
            f"(it maps only {uid}:{gid}, you on the host)",
            hint="add a range for your user to /etc/subuid and /etc/subgid (see rsbox info)",
        )
    try:
        if proc.full_idmap:
            os.setgroups(list(user.groups))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise UsageError(  # the kernel's word for an id the user namespace does not map
            f"user {user.uid}:{user.gid} (groups {list(user.groups)}) is not mapped in the "
            "container",
            hint="the container maps ids 0-65535: use an id in that range",
        ) from exc


def apply_rlimits(rlimits: tuple[tuple[int, int, int], ...]) -> None:
    """--pids-limit, --memory, --ulimit (see rootless.limits)."""
    for res, soft, hard in rlimits:
        try:
            sc.setrlimit(res, soft, hard)
        except OSError as exc:
            raise RsboxError(
                f"cannot set resource limit {res}: {exc.strerror}",
                hint="a limit above your own hard limit (ulimit -H) is not allowed",
            ) from exc


def _seal(
    proc: Process, error_fd: int, terminal: int, learning: Learning | None
) -> tuple[str, dict[str, str]]:
    """Steps 1-9 of the module's essay. Returns the path to execute and the env."""
    sc.set_dumpable(False)
    os.setsid()
    user = resolve_user(proc.user, read_userdb("/etc/passwd"), read_userdb("/etc/group"))
    env = dict(e.partition("=")[::2] for e in proc.env)
    env.setdefault("HOME", user.home)
    # As root, as Docker does; chdir says what failed. One stat first: makedirs would
    # stat the parent too, which may cost a round trip to the union's server.
    if not os.path.isdir(proc.cwd):
        try:  # noqa: SIM105 (no contextlib on exec's path)
            os.makedirs(proc.cwd, exist_ok=True)
        except OSError:
            pass
    capabilities.limit_bounding(proc.caps)
    # Under fakeroot on a single-id map the kernel cannot switch to a USER other than 0:
    # the switch is made once P1 answers set*id calls (below), which it emulates and keeps.
    emulated = learning is not None and learning.emulated_ids and not proc.full_idmap
    if not emulated:
        _switch_ids(user, proc)
    capabilities.set_current(proc.caps if user.uid == 0 else frozenset())
    try:
        os.chdir(proc.cwd)
    except OSError as exc:
        raise RsboxError(
            f"cannot enter working directory {proc.cwd}: {exc.strerror}",
            hint="check -w or the image's WorkingDir",
        ) from exc
    exe = find_executable(proc.argv[0], env.get("PATH", ""))
    os.set_inheritable(error_fd, False)
    keep = [error_fd, terminal] + ([learning.sock.fileno()] if learning else [])
    close_fds_except(*keep)
    apply_rlimits(proc.rlimits)
    if proc.bpf is not None:
        sc.install_seccomp(proc.bpf)
    else:
        sc.set_no_new_privs()
    if learning is not None:
        from policies.learn import install_and_send  # imported by P1 before pivot_root

        install_and_send(learning.sock, learning.program)
        learning.sock.close()
        if emulated and (user.uid or user.gid or user.groups):
            os.setgroups(list(user.groups))  # each answered by P1: no kernel check
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
    return exe, env


def _command(proc: Process, exe: str) -> tuple[str, list[str]]:
    """What to execute: the command, or rsbox-init EXE ARGV0 ARG... with --init (it runs
    the command as its child)."""
    if proc.init:
        return INIT_PATH, ["rsbox-init", exe, *proc.argv]
    return exe, list(proc.argv)


def _execute(proc: Process, exe: str, env: dict[str, str]) -> NoReturn:
    path, argv = _command(proc, exe)
    sc.default_signals()  # step 11
    try:
        os.execve(path, argv, env)
    except OSError as exc:
        raise exec_failure(proc.argv[0], exc) from exc


def become(
    proc: Process,
    *,
    error_fd: int,
    terminal: int = -1,
    learning: Learning | None = None,
    outside: bool = False,
) -> NoReturn:
    """Turn this process into `proc` (see the module's essay). `terminal` is the slave of
    the container's own pty (-t) or -1; `outside`: we are exec's helper outside the
    container's pid namespace, so fork the visible process last and wait for it."""
    exe, env = _seal(proc, error_fd, terminal, learning)
    if not outside:
        if terminal >= 0:
            sc.take_terminal(terminal)
        _execute(proc, exe, env)
    # The guard (exec.py armed it as our parent-death signal) and the forwarded signals
    # are held from here on (supervise_child takes them); the child starts with none
    # blocked and every signal at its default action (step 11).
    signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISED_SIGNALS)
    path, argv = _command(proc, exe)
    try:
        pid = sc.spawn(path, argv, env, terminal)  # its own session, in our pid namespace
    except OSError as exc:
        if exc.filename != "execve":
            raise
        raise exec_failure(proc.argv[0], exc) from exc
    if terminal >= 0:
        os.close(terminal)
    os._exit(supervise_child(pid, lambda: kill_quietly(pid, signal.SIGKILL)))
