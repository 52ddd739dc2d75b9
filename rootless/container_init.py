"""P3: the container's pid 1, from the union rootfs to execve(CMD).

It runs right after P2's unshare(NEWPID|NEWUTS|NEWIPC|NEWCGROUP|NEWNS[|NEWNET]) and
fork, so it is pid 1 of a fresh pid namespace, in its own copy of the mount namespace
(which already holds P1's FUSE mount of the rootfs: pivot_root below moves the root of
every process in *this* mount namespace only, never P1's).

Order, and why:
1. mounts over the rootfs (see `mountplan`), while the host's / is still reachable for the
   bind sources; every target is resolved with `secure_join` so that an image's symlink
   cannot send a mount outside the rootfs;
2. pivot_root(".", ".") then a lazy unmount of the old root: the host disappears;
3. hostname (our own uts namespace), lo up when the network namespace is our own;
4. the user from the image's /etc/passwd, the working directory created as root;
5. groups, gid, uid - in that order, since setgroups/setgid need the privilege setuid drops;
6. every fd but 0-2 (and the error pipe, close-on-exec) closed;
7. no_new_privs + seccomp: the last step before execve, so that nothing rsbox itself does
   has to pass the filter except execve.
Every failure is reported to P0 on the error pipe and ends this process with Docker's code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import socket
import struct
import termios
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rootless import syscalls as sc
from rootless.errors import CommandNotExecutable, CommandNotFound, HostError, RsboxError
from rootless.mountplan import Mount, Step, Symlink, mount_plan, secure_join
from rootless.prefork import FORWARDED_SIGNALS
from rootless.runspec import ProcessPlan, RunSpec
from rootless.userdb import ExecUser, resolve_user

_ST_LOCKED = (
    os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME | os.ST_RELATIME
)


# <asm-generic/ioctls.h>; Python's termios module lacks them.
_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


@dataclass(frozen=True, slots=True)
class InitSpec:
    rootfs: Path
    spec: RunSpec
    plan: ProcessPlan
    etc_files: Mapping[str, Path]
    full_idmap: bool
    bpf: bytes | None
    error_fd: int
    pty_sock: socket.socket | None
    learn_program: bytes | None = None  # --seccomp-learn: installed with a listener
    learn_sock: socket.socket | None = None  # ... whose fd goes to P1 over this


def _ensure(path: str, kind: str) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == "dir":
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _do_mount(rootfs: str, m: Mount) -> None:
    target = secure_join(rootfs, m.target)
    source = m.source if m.source is not None else target
    if m.optional and (
        not os.path.lexists(target) or (m.flags & sc.MS_BIND and not os.path.exists(source))
    ):
        return
    _ensure(target, m.create)
    sc.mount(source, target, m.fstype, m.flags, m.data)
    if m.readonly:
        # Repeat the flags the kernel locked on this mount, or the remount fails (EPERM).
        locked = os.statvfs(target).f_flag & _ST_LOCKED
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | locked)


def apply_steps(rootfs: str, steps: list[Step]) -> None:
    for step in steps:
        if isinstance(step, Symlink):
            link = secure_join(rootfs, step.target)
            if not os.path.lexists(link):
                os.symlink(step.points_to, link)
        else:
            _do_mount(rootfs, step)


def _lo_up() -> None:
    """`ip link set lo up` with two ioctls: a new network namespace starts with lo down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(
            s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 1)
        )  # SIOCSIFFLAGS, IFF_UP


def open_pty(rootfs: str) -> tuple[int, int]:
    """A pty of the container's own devpts instance: the master goes to P1, which relays it
    to the user's terminal; the slave becomes our controlling terminal."""
    master = os.open(os.path.join(rootfs, "dev/pts/ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, struct.pack("I", 0)))[0]
    slave = os.open(os.path.join(rootfs, f"dev/pts/{n}"), os.O_RDWR | os.O_NOCTTY)
    return master, slave


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


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


def switch_user(user: ExecUser, full_idmap: bool) -> None:
    if not full_idmap and (user.uid != 0 or user.gid != 0):
        raise HostError(
            f"user {user.uid}:{user.gid} is not mapped in a single-id user namespace",
            hint="add a range for your user to /etc/subuid and /etc/subgid (see rsbox info)",
        )
    if full_idmap:
        os.setgroups(list(user.groups))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)


def apply_rlimits(rlimits: list[tuple[int, int, int]] | tuple[tuple[int, int, int], ...]) -> None:
    """--pids-limit, --memory, --ulimit (see rootless.limits), last before seccomp."""
    for res, soft, hard in rlimits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as exc:
            raise RsboxError(
                f"cannot set resource limit {res}: {exc}",
                hint="a limit above your own hard limit (ulimit -H) is not allowed",
            ) from exc


def _init_then_exec(error_fd: int) -> None:
    """`--init`: we stay as pid 1, the command runs as our child. Pid 1 of a namespace
    gets no default signal actions and inherits every orphan: this loop forwards the
    signals P2 relays to the command and reaps every child, and exits with the command's
    status. Returns in the child, which goes on to execve."""
    import signal

    pid = os.fork()
    if pid == 0:
        return
    os.close(error_fd)  # the child reports; EOF at its execve tells a detached P0
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write("rsbox-init")
    for s in FORWARDED_SIGNALS:
        signal.signal(s, lambda sig, _f: _forward(pid, sig))
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if wpid == pid:
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            os._exit(code)


def _forward(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def take_terminal(slave: int) -> None:
    """A new session whose controlling terminal is the pty `slave`, on stdin, stdout and
    stderr (Docker: with -t the pty is stdin too, even when -i does not feed it)."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)


def close_fds_except(*keep: int) -> None:
    """Close every fd above 2 but `keep`: nothing of rsbox's may leak into the container."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def container_main(init: InitSpec) -> None:
    """Never returns: execve or raise (the caller reports and exits)."""
    sc.set_pdeathsig(9)
    spec, plan = init.spec, init.plan
    # Computed while the host's / (and rootless.limits) is still there.
    rlimits = spec.limits().rlimits() if spec.has_limits else []
    rootfs = str(init.rootfs)
    if not spec.interactive:
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    steps = mount_plan(
        etc_files=dict(init.etc_files),
        volumes=spec.volumes,
        full_idmap=init.full_idmap,
        own_network=spec.network != "host",
    )
    apply_steps(rootfs, steps)
    slave = -1
    if init.pty_sock is not None:
        master, slave = open_pty(rootfs)
        socket.send_fds(init.pty_sock, [b"m"], [master])
        os.close(master)
        init.pty_sock.close()
    if spec.network != "host":
        _lo_up()
    sc.sethostname(plan.hostname)

    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")

    user = resolve_user(plan.user, read_text("/etc/passwd"), read_text("/etc/group"))
    env = dict(e.partition("=")[::2] for e in plan.env)
    env.setdefault("HOME", user.home)
    with contextlib.suppress(OSError):  # chdir below says what is wrong
        os.makedirs(plan.cwd, exist_ok=True)
    switch_user(user, init.full_idmap)
    try:
        os.chdir(plan.cwd)
    except OSError as exc:
        raise RsboxError(
            f"cannot enter working directory {plan.cwd}: {exc.strerror}",
            hint="check -w or the image's WorkingDir",
        ) from exc
    if slave >= 0:
        take_terminal(slave)
    exe = find_executable(plan.argv[0], env.get("PATH", ""))
    os.set_inheritable(init.error_fd, False)
    learn_fd = init.learn_sock.fileno() if init.learn_sock is not None else init.error_fd
    close_fds_except(init.error_fd, learn_fd)
    apply_rlimits(rlimits)
    if init.bpf is not None:
        sc.install_seccomp(init.bpf)
    if init.learn_sock is not None and init.learn_program is not None:
        from policies.learn import install_and_send  # imported by P1 before pivot_root

        install_and_send(init.learn_sock, init.learn_program)
        init.learn_sock.close()
    if spec.init:
        _init_then_exec(init.error_fd)
    try:
        os.execve(exe, list(plan.argv), env)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC):
            raise CommandNotExecutable(
                f"{plan.argv[0]}: {exc.strerror}", hint="the file cannot be executed here"
            ) from exc
        raise CommandNotFound(f"{plan.argv[0]}: {exc.strerror}", hint="check the command") from exc
