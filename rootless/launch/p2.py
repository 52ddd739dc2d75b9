"""P2: the container's namespaces, and the guard of its lifetime.

Forked by P1 (which stays outside, serving the rootfs): unshare(NEWPID|NEWUTS|NEWIPC|
NEWCGROUP|NEWNS[|NEWNET: not with pasta, whose P1 made it]), then fork P3, the first
process of the new pid namespace and so its pid 1. P2 itself stays in P1's pid
namespace, where nothing of the container can see or signal it.

The kernel facts that decide the lifetime:

* When pid 1 of a pid namespace dies, the kernel SIGKILLs every other process in it
  (zap_pid_ns_processes): double forks, new sessions and ignored signals do not help.
* A parent-death signal set *inside* the container is the container's to clear
  (prctl(PR_SET_PDEATHSIG, 0)); one set here, outside, is not.

So P2 arms GUARD_SIGNAL as its own parent-death signal: when P1 dies (and P1 dies with
the CLI through its own SIGKILL parent-death signal, or is the detached monitor), the
kernel sends it to P2, whose handler SIGKILLs P3; the namespace goes down with it. P2
also forwards the signals P1 relays and reports P3's status as its own exit code.

P3 does not unshare the mount namespace again, so its pivot_root moves our root too: from
then on "/" is the container's rootfs for us as well. What the guard needs of the host
(the runtime directory, the host's /proc) is opened before the fork of P3, as fds.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from rootless import cgroups, network
from rootless import syscalls as sc
from rootless.errors import HostError
from rootless.launch import p3
from rootless.launch.become import close_fds_except
from rootless.launch.protocol import (
    GUARD_SIGNAL,
    NETNS_MADE,
    SUPERVISED_SIGNALS,
    Launch,
    child,
    default_signals,
    die_with_parent,
    kill_quietly,
    supervise_child,
)

# P2 -> P1 "network namespace made", P1 -> P2 "wired": (made_r, made_w, go_r, go_w).
NetSync = tuple[int, int, int, int]


def _unshare(launch: Launch) -> None:
    flags = (
        sc.CLONE_NEWPID | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP | sc.CLONE_NEWNS
    )
    if launch.spec.netns_of_p2:
        flags |= sc.CLONE_NEWNET
    sc.unshare(flags)


def _announce_network(sync: NetSync) -> int:
    """Tell P1 that our network namespace exists, so that it wires it (pasta, slirp4netns)
    while P3 makes its mounts: P3 waits for WIRED on the fd we return only right before it
    becomes the command, so the two overlap."""
    made_r, made_w, go_r, go_w = sync
    os.close(made_r)
    os.close(go_w)
    os.write(made_w, NETNS_MADE)
    os.close(made_w)
    return go_r


def _guard(pid3: int, host: tuple[int, int]) -> None:
    """Our parent died: end the container from outside its pid namespace, and the pasta
    that P0 started for it (pasta holds the network namespace, so it would not notice;
    it runs as the user, whose kuid our euid is, so we may signal it). `host` is the
    runtime directory and the host's /proc, opened before P3's pivot_root, which moved
    our root too (we share its mount namespace)."""
    kill_quietly(pid3, signal.SIGKILL)
    network.stop_pasta(*host)


PF_EXITING = 0x4  # include/linux/sched.h: set at the start of do_exit()


def _parent_gone(p1: int, proc: int) -> bool:
    """P1 has died or is dying. Our parent-death signal and reparenting come late in
    P1's exit, after its files are closed: the FUSE connection is aborted by then, and
    P3 can die of it first, so that our wait returns while getppid() is still P1. The
    PF_EXITING flag (field 9 of /proc/PID/stat) is set from the start of the exit. In a
    normal exit P1 is waiting for us and cannot be exiting."""
    if os.getppid() != p1:
        return True
    try:
        fd = os.open(f"{p1}/stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
        try:
            text = os.read(fd, 1024).decode(errors="replace")
        finally:
            os.close(fd)
        flags = int(text.rsplit(")", 1)[1].split()[9 - 3])  # split()[0] is field 3
    except (OSError, IndexError, ValueError):
        return True
    return bool(flags & PF_EXITING)


def main(
    launch: Launch,
    p1: int,
    err_w: int,
    pty_sock: socket.socket | None,
    sync: NetSync | None,
    learn_sock: socket.socket | None,
    rundir: Path,
) -> None:
    # Held from here on (protocol.supervise_child takes them); P3 gets the mask back.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISED_SIGNALS)
    die_with_parent(p1, GUARD_SIGNAL)
    orphan = None
    if launch.cgroup is not None:
        # Before the cgroup namespace is made, so that it is rooted at the container's
        # leaf, and before pid 1 exists, so that everything it starts is inside.
        try:
            launch.cgroup.enter()
        except OSError as exc:
            raise HostError(
                f"cannot enter the container's cgroup {launch.cgroup.container}: {exc.strerror}",
                hint="see rsbox info (cgroup v2 delegation)",
            ) from exc
        orphan = cgroups.hold_for_orphan(launch.cgroup)
    _unshare(launch)
    wired = _announce_network(sync) if sync is not None else -1
    # The FUSE device, the monitor's lock and the store's files stay with P1: neither we
    # nor the container need them, and a container that held /dev/fuse could keep its
    # own rootfs alive after P1 died, blocked on it forever.
    keep = [err_w, wired, *(s.fileno() for s in (pty_sock, learn_sock) if s is not None)]
    close_fds_except(*keep, *(orphan or ()))
    pid1 = p3.Pid1(launch, err_w, pty_sock, learn_sock, wired)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    host = (os.open(rundir, flags), os.open("/proc", flags))
    pid3 = os.fork()
    if pid3 == 0:
        for fd in (*host, *(orphan or ())):  # ours, not the container's
            os.close(fd)
        sc.set_pdeathsig(0)  # P2's guard is not the container's to see
        default_signals(mask)
        child(err_w, p3.main, pid1)
    for mine in (pty_sock, learn_sock):
        if mine is not None:
            mine.close()
    # P3 reports its own failures; a detached P0 waits for EOF on the error pipe.
    close_fds_except(*host, *(orphan or ()))
    code = supervise_child(pid3, lambda: _guard(pid3, host))
    if _parent_gone(p1, host[1]):
        # P1 is gone: P3 may have died before our handler ran (P1's death aborts the
        # FUSE connection, and a page-in from the rootfs then kills the command), so the
        # guard's work is done here too.
        _guard(pid3, host)
        if orphan is not None and launch.cgroup is not None:
            cgroups.remove_orphaned(orphan, launch.cgroup.path.name)
    os._exit(code)
