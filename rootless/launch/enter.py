"""Work on a running container's filesystem, from a sealed helper that executes nothing.

`rsbox cp` into a running container must go through the container's own mount: its
FUSE server holds the upper layer, and the kernel caches names and attributes of that
mount for a long time, so a file written into the upper behind the server's back would
stay invisible (or a cached "no such file" would hide it). `rsbox commit`, `diff`,
`export` and `cp` out of a running container read the upper from the store, after the
kernel has written back what it caches for the mount (the writeback cache holds dirty
pages of files still open). Both need a process inside the container's mount namespace;
opening /proc/PID/root from the host does not do (the kernel refuses it to a process
outside the container's user namespace, and from there absolute symlinks would resolve
against the host's root anyway).

`run_inside` forks H, which, in this order:

1. is not dumpable (no ptrace, no /proc/PID/mem for anyone without CAP_SYS_PTRACE in
   the host's user namespace), dies with its parent (PR_SET_PDEATHSIG), starts its own
   session (no terminal of the caller's), has /dev/null on 0-2 and every other fd closed
   but the ones the work is given and the error pipe;
2. joins the container's user namespace (its owner may: every capability inside it),
   then its mount namespace: H's root and working directory become the container's
   root, so every path, absolute symlinks included, resolves inside the container, as
   for the container's own processes;
3. keeps only the file capabilities (CHOWN, DAC_OVERRIDE, FOWNER, FSETID), sets
   no_new_privs and installs the container's own seccomp filter (the one its pid 1 got,
   lifecycle.BPF_NAME): H can do no more than the container's root could;
4. imports nothing from here on: the import system is emptied, since a module, or a
   shared library named by the container's /etc/nsswitch.conf, would now be read from
   the container's filesystem (how `docker cp` was once escaped, CVE-2019-14271).
   Everything the work needs is imported before the fork; ids are numeric, no user or
   group name is ever looked up;
5. runs the work and exits: 0, or 125 with the error on the pipe (protocol.child).

H is not in the container's pid namespace (setns(pid) would only move its children, and
it makes none): no process of the container can see, signal or ptrace it.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from rootless import syscalls as sc
from rootless.errors import ContainerError
from rootless.launch import caps
from rootless.launch.become import close_fds_except
from rootless.launch.exec import join, open_namespaces
from rootless.launch.protocol import child, die_with_parent, exit_code, read_error

# user first: the mount namespace belongs to it and may only be joined from inside.
_NAMESPACES = (("user", sc.CLONE_NEWUSER), ("mnt", sc.CLONE_NEWNS))
FILE_CAPS = frozenset({"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID"})


def running_pid1(cid: str) -> int | None:
    """The host pid of the container's pid 1, or None when it is not running."""
    from rootless.lifecycle import container_pid, monitor_pid

    mon = monitor_pid(cid)
    return container_pid(mon) if mon else None


def _seal_imports() -> None:
    """No import may find anything from now on (step 4)."""
    sys.meta_path.clear()
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.path.clear()


def _helper(
    p0: int,
    ns_fds: list[tuple[int, int]],
    keep: tuple[int, ...],
    err_w: int,
    bpf: bytes | None,
    last: int,
    work: Callable[..., object],
    args: tuple[object, ...],
) -> None:
    sc.set_dumpable(False)
    die_with_parent(p0, signal.SIGKILL)
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1) if os.environ.get("RSBOX_DEBUG") else (0, 1, 2):
        os.dup2(null, target)
    if null > 2:
        os.close(null)
    close_fds_except(err_w, *keep, *(fd for fd, _ in ns_fds))
    join(ns_fds)
    caps.apply(FILE_CAPS, last=last)
    if bpf is not None:
        sc.install_seccomp(bpf)
    else:
        sc.set_no_new_privs()
    _seal_imports()
    work(*args)
    os._exit(0)  # protocol.child takes a return for a failure (its bodies execve)


def run_inside(
    pid1: int,
    cdir: Path,
    work: Callable[..., object],
    *args: object,
    keep: tuple[int, ...] = (),
    while_running: Callable[[int], None] | None = None,
) -> None:
    """Run `work(*args)` in a helper inside the container of `pid1` (its directory in the
    store: `cdir`). `keep`: fds the work uses (the caller closes its copies after this
    returns). `while_running(pid)`, if given, runs in the caller while the helper does
    (to feed or drain a pipe); the helper is waited for after it returns. Raises what
    the helper reported."""
    from rootless.lifecycle import BPF_NAME

    try:
        bpf: bytes | None = (cdir / BPF_NAME).read_bytes()
    except FileNotFoundError:
        bpf = None
    last = caps.last_cap()
    if os.environ.get("RSBOX_DEBUG"):
        import traceback  # noqa: F401  (protocol.child prints with it, after step 4)
    ns_fds = open_namespaces(pid1, _NAMESPACES)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    p0 = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        for fd, _ in ns_fds:
            os.close(fd)
        os.close(err_r)
        os.close(err_w)
        raise
    if pid == 0:  # pragma: no cover (the helper reports through the pipe)
        os.close(err_r)
        child(err_w, _helper, p0, ns_fds, keep, err_w, bpf, last, work, args)
    os.close(err_w)
    for fd, _ in ns_fds:
        os.close(fd)
    try:
        if while_running is not None:
            while_running(pid)
    finally:
        _, status = os.waitpid(pid, 0)
        err = read_error(err_r)
        os.close(err_r)
    if err is not None:
        raise err
    code = exit_code(status)
    if code != 0:
        raise ContainerError(
            f"the helper inside the container failed (exit status {code})",
            hint="run again with RSBOX_DEBUG=1 to see why",
        )


def sync_root() -> None:
    """Work for `run_inside`: write back what the kernel caches for the container's root
    filesystem (its FUSE mount), so that the upper on disk holds every write."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sc.syncfs(fd)
    except OSError as exc:
        # The container's own seccomp profile (a learned or custom one) may refuse
        # syncfs: then what it wrote and still holds open may be read as it was at its
        # last close, as with `docker commit --pause=false`. Every other error is real.
        if exc.errno not in (errno.EPERM, errno.EACCES, errno.ENOSYS):
            raise
    finally:
        os.close(fd)
