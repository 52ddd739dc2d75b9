"""`rsbox exec`: a new process in a running container, as runc's `exec` and nsenter do.

The CLI (P0) opens the namespaces of the container's pid 1 (P3) from /proc, then:

1. setns(user) first: we are the euid that owns the container's user namespace, so the
   kernel lets us in, with every capability inside it; the other namespaces belong to it
   and may only be joined from within. (setns(user) also requires a single-threaded
   caller: the CLI never starts a thread.)
2. setns(mnt, uts, ipc, net, cgroup, pid). Joining the mount namespace moves our root
   and cwd to the root of the container's mount tree, i.e. its rootfs after pivot_root.
   Joining the pid namespace only affects our children, hence
3. fork: the child is a member of the container's pid namespace (visible to its `ps`),
   switches to the user (-u, else the image's), changes to the directory, installs the
   container's own seccomp filter (the BPF bytes `run` saved in the container directory)
   and executes the command. P0 relays signals and the exit status, and with -t the pty,
   which is a pty of the container's own devpts instance.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rootless import syscalls as sc
from rootless.container_init import close_fds_except, take_terminal
from rootless.errors import ContainerError, RsboxError
from rootless.lifecycle import BPF_NAME

# Order matters: user first (see above), pid last (it is for our child).
NAMESPACES = (
    ("user", sc.CLONE_NEWUSER),
    ("mnt", sc.CLONE_NEWNS),
    ("uts", sc.CLONE_NEWUTS),
    ("ipc", sc.CLONE_NEWIPC),
    ("net", sc.CLONE_NEWNET),
    ("cgroup", sc.CLONE_NEWCGROUP),
    ("pid", sc.CLONE_NEWPID),
)


@dataclass(frozen=True, slots=True)
class ExecSpec:
    pid: int  # host pid of the container's pid 1
    argv: tuple[str, ...]
    env: tuple[str, ...]  # the container's, then -e
    cwd: str
    user: str
    full_idmap: bool
    bpf: bytes | None
    tty: bool
    interactive: bool
    rlimits: tuple[tuple[int, int, int], ...] = ()


def _open_namespaces(pid: int) -> list[tuple[int, int]]:
    fds = []
    try:
        for name, flag in NAMESPACES:
            path = f"/proc/{pid}/ns/{name}"
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                # Shared with the host (--network host): we are in it already, and could
                # not re-enter it from the container's user namespace anyway.
                continue
            fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), flag))
    except OSError as exc:
        for fd, _ in fds:
            os.close(fd)
        raise ContainerError(
            f"cannot open the namespaces of the container: {exc.strerror}",
            hint="is it still running? (rsbox ps)",
        ) from exc
    return fds


def _join(pid: int) -> None:
    fds = _open_namespaces(pid)
    try:
        for fd, flag in fds:
            try:
                sc.setns(fd, flag)
            except OSError as exc:
                raise ContainerError(
                    f"cannot join the container's namespaces: {exc.strerror}",
                    hint="is it still running? (rsbox ps)",
                ) from exc
    finally:
        for fd, _ in fds:
            os.close(fd)
    os.chdir("/")


def _child_main(spec: ExecSpec, err_w: int, slave: int) -> None:
    from rootless.container_init import (
        apply_rlimits,
        find_executable,
        read_text,
        switch_user,
    )
    from rootless.userdb import resolve_user

    sc.set_pdeathsig(signal.SIGKILL)
    user = resolve_user(spec.user, read_text("/etc/passwd"), read_text("/etc/group"))
    env = dict(e.partition("=")[::2] for e in spec.env)
    env.setdefault("HOME", user.home)
    switch_user(user, spec.full_idmap)
    try:
        os.chdir(spec.cwd)
    except OSError as exc:
        raise RsboxError(
            f"cannot enter working directory {spec.cwd}: {exc.strerror}", hint="check -w"
        ) from exc
    if slave >= 0:
        take_terminal(slave)
    elif not spec.interactive:
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    exe = find_executable(spec.argv[0], env.get("PATH", ""))
    os.set_inheritable(err_w, False)
    close_fds_except(err_w)
    apply_rlimits(spec.rlimits)
    if spec.bpf is not None:
        sc.install_seccomp(spec.bpf)
    try:
        os.execve(exe, list(spec.argv), env)
    except OSError as exc:
        from rootless.errors import CommandNotExecutable

        raise CommandNotExecutable(f"{spec.argv[0]}: {exc.strerror}", hint="check it") from exc


def _relay(master: int, interactive: bool) -> None:
    """Copy the user's terminal to the pty master and back until the command is gone."""
    os.set_blocking(master, False)
    watch = [master] + ([0] if interactive else [])
    while True:
        try:
            ready, _, _ = select.select(watch, [], [])
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise
            if not data:
                return
            os.write(1, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if not data:
                watch.remove(0)
                continue
            os.write(master, data)


def execute(spec: ExecSpec) -> int:
    """Join, fork, wait: the command's exit status (or raise what the child reported)."""
    from rootless.spawn import _read_error, _status_to_code, child

    _join(spec.pid)
    master = slave = -1
    if spec.tty:
        from rootless.container_init import open_pty

        master, slave = open_pty("/")
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        if master >= 0:
            os.close(master)
        child(err_w, _child_main, spec, err_w, slave)
    os.close(err_w)
    if slave >= 0:
        os.close(slave)
    previous = {
        s: signal.signal(s, lambda sig, _f: _kill(pid, sig))
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    }
    try:
        if master >= 0:
            from rootless.spawn import _raw_terminal

            with _raw_terminal(spec.interactive), contextlib.suppress(OSError):
                _relay(master, spec.interactive)
        _, status = os.waitpid(pid, 0)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    err = _read_error(err_r)
    os.close(err_r)
    if err is not None:
        raise err
    return _status_to_code(status)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def exec_in(
    store_dir: Path,
    cid: str,
    argv: Sequence[str],
    env: Sequence[str],
    workdir: str | None,
    user: str | None,
    tty: bool,
    interactive: bool,
) -> int:
    from rootless.idmap import host_idmap
    from rootless.lifecycle import CONFIG_NAME, container_pid, monitor_pid, read_json
    from rootless.runspec import RunSpec, merge_env

    mon = monitor_pid(cid)
    pid = container_pid(mon) if mon and mon > 1 else None
    if pid is None:
        raise ContainerError(
            f"container {cid[:12]} is not running", hint=f"start it: rsbox start {cid[:12]}"
        )
    config = read_json(store_dir / CONFIG_NAME)
    plan = config.get("plan") or {}
    spec = config.get("spec") or {}
    try:
        bpf: bytes | None = (store_dir / BPF_NAME).read_bytes()
    except FileNotFoundError:
        bpf = None
    base_env = list(plan.get("env") or [])
    if tty and not any(e.startswith("TERM=") for e in base_env):
        base_env.append("TERM=xterm")
    return execute(
        ExecSpec(
            pid=pid,
            argv=tuple(argv),
            env=tuple(merge_env(base_env, list(env), dict(os.environ))),
            cwd=workdir or str(plan.get("cwd") or "/"),
            user=user if user is not None else str(plan.get("user") or ""),
            full_idmap=host_idmap(str(spec.get("userns") or "auto")).full,
            bpf=bpf,
            tty=tty,
            interactive=interactive,
            rlimits=tuple(RunSpec.from_json(spec).limits().rlimits()) if spec else (),
        )
    )
