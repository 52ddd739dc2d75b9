"""P3: the container's pid 1, from the union rootfs to `become`.

It runs right after P2's unshare(NEWPID|NEWUTS|NEWIPC|NEWCGROUP|NEWNS[|NEWNET]) and
fork, so it is pid 1 of a fresh pid namespace, in its own copy of the mount namespace
(which already holds P1's FUSE mount of the rootfs: pivot_root below moves the root of
every process in *this* mount namespace only, never P1's).

Order, and why:
1. not dumpable, first: until execve this is rsbox's Python with the host's memory;
2. mounts over the rootfs (see `mountplan`), while the host's / is still reachable for the
   bind sources; every target is resolved with `secure_join` so that an image's symlink
   cannot send a mount outside the rootfs;
3. the pty (-t), from the container's own devpts instance: its master goes to P1;
4. lo up when the network namespace is our own, then the hostname (our uts namespace);
5. pivot_root(".", ".") then a lazy unmount of the old root: the host disappears;
6. with a network namespace wired by pasta/slirp4netns, wait for P1's word that it is
   wired (it was being wired meanwhile: the two overlap);
7. `become`: session, user, capabilities, fds, rlimits, no_new_privs + seccomp, execve.
Every failure is reported to P0 on the error pipe and ends this process with Docker's code.

No parent-death signal here: the container could clear it (prctl) and outlive rsbox. P2,
outside the container's pid namespace, kills us when it loses its parent (p2.py); the
kernel then kills every process of the namespace.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rootless import syscalls as sc
from rootless.launch.become import Learning, become, process_of
from rootless.launch.mountplan import CopyUp, Mount, Step, Symlink, mount_plan, secure_join
from rootless.launch.protocol import PTY_MASTER, WIRED, Launch
from rootless.launch.terminal import open_pty

_ST_LOCKED = (
    os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME | os.ST_RELATIME
)
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 1


@dataclass(frozen=True, slots=True)
class Pid1:
    """What P2 hands us: the launch and the ends of P1's sockets."""

    launch: Launch
    error_fd: int
    pty_sock: socket.socket | None  # -t: the pty master goes to P1 over this
    learn_sock: socket.socket | None  # --seccomp-learn: the listener fd goes to P1
    wired: int  # -1, or where P1 says WIRED once the network namespace is wired


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
        elif isinstance(step, CopyUp):
            from rootless.launch.copyup import copy_up

            copy_up(secure_join(rootfs, step.target), step.dest)
        else:
            _do_mount(rootfs, step)


def _lo_up() -> None:
    """`ip link set lo up` with two ioctls: a new network namespace starts with lo down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _stage(
    files: Mapping[str, Path], over: Path, made: Mapping[str, bytes], root_mapped: bool
) -> dict[str, Path]:
    """Copies of /etc/hosts, hostname, resolv.conf (and `made`: keep-id's passwd and group)
    on a tmpfs mounted over `over` (an empty directory beside the container's rootfs) in
    our own mount namespace, for the binds: the container's mountinfo then shows "/hosts"
    on a tmpfs, not the path of the user's store. (The staging mount is left behind with
    the host's tree at pivot_root; the binds keep the files.) They belong to container
    root when it is mapped: under keep-id we are the user's id here, not root."""
    texts = {name: path.read_bytes()[: 60 << 10] for name, path in files.items()}
    texts.update(made)
    over.mkdir(exist_ok=True)
    size = sum(len(t) // 4096 + 1 for t in texts.values()) * 4096
    opts = f"size={size},mode=755"
    sc.mount("rsbox", str(over), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, opts)
    staged = {}
    for name, data in texts.items():
        staged[name] = over / name
        fd = os.open(staged[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            if root_mapped and os.getuid() != 0:
                os.fchown(fd, 0, 0)
            os.write(fd, data)
        finally:
            os.close(fd)
    return staged


def _keep_id_files(launch: Launch) -> dict[str, bytes]:
    """--userns keep-id: the image's /etc/passwd and /etc/group with the caller's entries
    (rootless.launch.keepid), read through the union before any mount covers them."""
    user = launch.keep_id_user
    if user is None:
        return {}
    from rootless.launch.become import read_userdb
    from rootless.launch.keepid import group_text, passwd_text

    rootfs = str(launch.rootfs)
    # secure_join: an image's symlink (/etc/passwd -> /home/you/...) stays in the rootfs.
    passwd = read_userdb(secure_join(rootfs, "/etc/passwd"))
    group = read_userdb(secure_join(rootfs, "/etc/group"))
    shell = os.access(secure_join(rootfs, user.shell), os.X_OK)
    return {
        "passwd": passwd_text(passwd, user, shell).encode(),
        "group": group_text(group, user).encode(),
    }


def _read_byte(fd: int) -> bytes:
    try:
        return os.read(fd, 1)
    finally:
        os.close(fd)


def main(pid1: Pid1) -> None:
    """Never returns: execve or raise (the caller reports and exits)."""
    sc.set_dumpable(False)
    launch = pid1.launch
    spec = launch.spec
    proc = process_of(launch)  # while the host's / (and rootless.limits) is still there
    rootfs = str(launch.rootfs)
    if not spec.interactive:
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    steps = mount_plan(
        etc_files=_stage(
            launch.etc_files,
            launch.cdir / "etc-stage",
            _keep_id_files(launch),
            0 in launch.idmap.mapped_uids(),
        ),
        volumes=spec.volumes,
        full_idmap=launch.idmap.full,
        own_network=spec.network != "host",
        privileged=spec.privileged,
        init_binary=launch.init_binary,
    )
    apply_steps(rootfs, steps)
    slave = -1
    if pid1.pty_sock is not None:
        master, slave = open_pty(rootfs)
        socket.send_fds(pid1.pty_sock, [PTY_MASTER], [master])
        os.close(master)
        pid1.pty_sock.close()
    if spec.network != "host":
        _lo_up()
    sc.sethostname(launch.plan.hostname)

    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")

    if pid1.wired >= 0 and _read_byte(pid1.wired) != WIRED:
        os._exit(125)  # P1 reported why
    learning = None
    if pid1.learn_sock is not None and launch.notify_program is not None:
        # no --seccomp-learn: fakeroot under a single-id map (rootless.launch.gather)
        emulated = launch.spec.seccomp_learn is None
        learning = Learning(launch.notify_program, pid1.learn_sock, emulated)
    become(proc, error_fd=pid1.error_fd, terminal=slave, learning=learning)
