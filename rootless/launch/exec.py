"""`rsbox exec`: a new process in a running container, that nothing in it can hijack.

Two processes, as runc's exec has (its `runc init` plays E1):

    P0  the CLI (host namespaces): relays the terminal or the pipes, forwards signals,
     │   reports the exit status; never joins anything, so it stays out of reach
     └─ E1  joins the container's namespaces from /proc/PID/ns of its pid 1: user first
         │   (we are the euid that owns it, so the kernel lets us in, with every
         │   capability inside it; the others belong to it and may only be joined from
         │   within), then mnt (our root and cwd move to the container's root), uts, ipc,
         │   net, cgroup, and pid last. setns(pid) moves only our future children: E1
         │   itself stays invisible to the container. With -t it opens a pty of the
         │   container's devpts and sends the master to P0. Then `become(outside=True)`:
         │   not dumpable, own session, user, capabilities, no_new_privs, seccomp, and
         │   only then the fork of
         └─ E2  the process the container can see, which executes the command at once.

Lifetime: E1 arms GUARD_SIGNAL as its parent-death signal, so a `kill -9` of P0 makes E1
SIGKILL E2 from outside, whatever E2 did to its own signals. Processes that the command
started and left behind (daemons) belong to the container, as in Docker: they die with
it (the container's pid namespace goes down with its pid 1), not with this `exec`.
"""

from __future__ import annotations

import os
import select
import time

from rootless import signals as signal  # not `signal`: see rootless.signals
from rootless import syscalls as sc
from rootless.environ import merge_env
from rootless.errors import ContainerError
from rootless.launch.become import Process, become
from rootless.launch.protocol import (
    FORWARDED_SIGNALS,
    GUARD_SIGNAL,
    PTY_MASTER,
    SignalWakeup,
    child,
    default_signals,
    die_with_parent,
    exit_code,
    kill_quietly,
    read_error,
)
from rootless.launch.terminal import Stdio, open_pty, raw_terminal, relayed_stdio
from rootless.record import Record

TYPE_CHECKING = False  # see rootless.commands.exec: what this path does not import
if TYPE_CHECKING:
    import socket
    from collections.abc import Sequence
    from pathlib import Path
    from typing import Any

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
DRAIN_SECONDS = 2.0  # output still flowing after the command exited (daemons may hold it)


class ExecSpec(Record):
    pid: int  # host pid of the container's pid 1
    process: Process
    tty: bool
    interactive: bool
    cgroup: Path | None = None  # the container's own cgroup (rootless.cgroups), if any


def open_namespaces(
    pid: int, which: tuple[tuple[str, int], ...] = NAMESPACES
) -> list[tuple[int, int]]:
    """(fd, CLONE_ flag) of the namespaces `which` of `pid`, in that order; those we share
    already are left out."""
    fds = []
    try:
        for name, flag in which:
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


def join(fds: list[tuple[int, int]]) -> None:
    """setns into each (closing it), then to the root of the joined mount namespace."""
    for fd, flag in fds:
        try:
            sc.setns(fd, flag)
        except OSError as exc:
            raise ContainerError(
                f"cannot join the container's namespaces: {exc.strerror}",
                hint="is it still running? (rsbox ps)",
            ) from exc
        os.close(fd)
    os.chdir("/")


def _e1(
    spec: ExecSpec,
    p0: int,
    ns_fds: list[tuple[int, int]],
    stdio: tuple[int, int, int],
    err_w: int,
    pty_sock: socket.socket | None,
) -> None:
    sc.set_dumpable(False)
    die_with_parent(p0, GUARD_SIGNAL)  # default action until become() handles it: we die
    for fd, target in zip(stdio, (0, 1, 2), strict=True):
        os.dup2(fd, target)
    if spec.cgroup is not None:
        _into_cgroup(spec.cgroup)
    join(ns_fds)
    slave = -1
    if pty_sock is not None:
        import socket

        master, slave = open_pty("/")
        socket.send_fds(pty_sock, [PTY_MASTER], [master])
        os.close(master)
        pty_sock.close()
    become(spec.process, error_fd=err_w, terminal=slave, outside=True)


def _copy_loop(e1: int, relay: Stdio, wakeup: SignalWakeup) -> None:
    """Copy until E1 is gone and the outputs are drained (or DRAIN_SECONDS later: a
    daemon the command left behind may hold them open for ever). `wakeup` is watched
    too: a forwarded signal's handler runs as select returns."""
    inputs = dict(relay.inputs)
    outputs = dict(relay.outputs)
    pidfd = os.pidfd_open(e1)
    deadline: float | None = None
    try:
        while True:
            if deadline is None:
                timeout = None
            else:
                timeout = deadline - time.monotonic()
                if not outputs or timeout <= 0:
                    return
            try:
                watch = [wakeup.fd, *inputs, *outputs] + ([pidfd] if pidfd >= 0 else [])
                ready, _, _ = select.select(watch, [], [], timeout)
            except InterruptedError:
                continue
            if wakeup.fd in ready:
                wakeup.drain()
            if pidfd >= 0 and pidfd in ready:
                os.close(pidfd)
                pidfd = -1
                deadline = time.monotonic() + DRAIN_SECONDS
                _drop_inputs(inputs, outputs)
            for src in ready:
                if src in outputs:
                    if not _copy_some(src, outputs[src]):
                        del outputs[src]
                elif src in inputs and not _copy_some(src, inputs[src]):
                    _drop_inputs(inputs, outputs)
            if pidfd < 0 and not outputs:
                return
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _copy_some(src: int, dst: int) -> bool:
    """One read from src written to dst; False at EOF (or EIO: a pty whose slave closed)."""
    try:
        data = os.read(src, 65536)
    except OSError:
        return False
    if not data:
        return False
    try:  # noqa: SIM105 - no contextlib on exec's path (rootless.record)
        os.write(dst, data)
    except OSError:
        pass
    return True


def _drop_inputs(inputs: dict[int, int], outputs: dict[int, int]) -> None:
    """No more input: a pipe to the command is closed (its EOF); a pty master is not."""
    for dst in inputs.values():
        if dst not in outputs:
            os.close(dst)
    inputs.clear()


def _into_cgroup(cgroup: Path) -> None:
    """Into the container's cgroup before anything else (while the host's /sys is ours
    to see), so that E2 is born inside its limits. The kernel allows it only from a
    cgroup under the same delegated parent (from another login session it does not):
    then the command runs outside it, under the rlimits, and says so."""
    try:
        (cgroup / "cgroup.procs").write_text("0\n")
    except OSError as exc:
        os.write(
            2,
            f"rsbox: warning: this exec runs outside the container's cgroup {cgroup} "
            f"({exc.strerror}): its cgroup limits do not apply to it\n".encode(),
        )


def execute(spec: ExecSpec) -> int:
    """Fork E1, relay, wait: the command's exit status (or raise what E1/E2 reported)."""
    ns_fds = open_namespaces(spec.pid)
    relay = relayed_stdio(spec.tty, spec.interactive)
    p0_sock, e1_sock = (None, None)
    if spec.tty:
        import socket  # only for the pty's master: ~4 ms of import otherwise

        p0_sock, e1_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    p0 = os.getpid()
    # The user's signals are held until their forwarding handlers know the child's pid
    # (a Ctrl-C right after the fork would otherwise end this process and leave the
    # command running); the child gets them at their default action and the mask back.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    pid = os.fork()
    if pid == 0:
        default_signals(mask)
        os.close(err_r)
        if p0_sock is not None:
            p0_sock.close()
        child(err_w, _e1, spec, p0, ns_fds, relay.fds, err_w, e1_sock)
    os.close(err_w)
    for fd, _ in ns_fds:
        os.close(fd)
    for fd in relay.theirs:
        os.close(fd)
    if e1_sock is not None:
        e1_sock.close()
    with SignalWakeup() as wakeup:  # no forwarded signal waits for select to return
        previous = {
            s: signal.signal(s, lambda sig, _f: kill_quietly(pid, sig)) for s in FORWARDED_SIGNALS
        }
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        try:
            if p0_sock is not None:
                import socket

                fds: list[int] = []
                try:  # noqa: SIM105 - no contextlib on exec's path (rootless.record)
                    _, fds, _, _ = socket.recv_fds(p0_sock, 16, 1)
                except OSError:
                    pass
                p0_sock.close()
                if fds:
                    master = fds[0]
                    relay.outputs.append((master, 1))
                    if spec.interactive:
                        relay.inputs.append((0, master))
            with raw_terminal(spec.tty and spec.interactive):
                try:  # noqa: SIM105 - no contextlib on exec's path (rootless.record)
                    _copy_loop(pid, relay, wakeup)
                except OSError:
                    pass
            _, status = os.waitpid(pid, 0)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    err = read_error(err_r)
    os.close(err_r)
    if err is not None:
        raise err
    return exit_code(status)


def exec_in(
    cdir: str,
    cid: str,
    argv: Sequence[str],
    env: Sequence[str],
    workdir: str | None,
    user: str | None,
    tty: bool,
    interactive: bool,
    saved: dict[str, Any] | None = None,
    pid: int | None = None,
) -> int:
    """`rsbox exec`: the process pid 1 became (its environment, user, working directory,
    capabilities, limits, id map and seccomp filter, saved by the launch that started it:
    rootless.lifecycle.save_process), with this command and these flags. `saved`: that
    file's document when the caller has it already (rootless.env.enter keeps one, to
    spare the lean entry the json module); `pid`: the container's pid 1, when the caller
    has just found it from the monitor (rootless.env.enter.warm)."""
    if pid is None:
        from rootless.running import container_pid, monitor_pid

        mon = monitor_pid(cid)
        pid = container_pid(mon) if mon and mon > 1 else None
    if pid is None:
        raise ContainerError(
            f"container {cid[:12]} is not running", hint=f"start it: rsbox start {cid[:12]}"
        )
    base = _saved_process(cdir, saved) or _planned_process(cdir)
    base_env = list(base.env)
    if tty and not any(e.startswith("TERM=") for e in base_env):
        base_env.append("TERM=xterm")
    # `-e KEY` copies KEY from the caller, as Docker does: the one way in for our env.
    process = base._replace(
        argv=tuple(argv),
        env=tuple(merge_env(base_env, list(env), os.environ)),
        cwd=workdir or base.cwd,
        user=user if user is not None else base.user,
    )
    cgroup = _container_cgroup(cid)
    return execute(
        ExecSpec(pid=pid, process=process, tty=tty, interactive=interactive, cgroup=cgroup)
    )


def _bpf(cdir: str) -> bytes | None:
    from rootless.running import BPF_NAME

    try:
        with open(os.path.join(cdir, BPF_NAME), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _saved_process(cdir: str, doc: dict[str, Any] | None) -> Process | None:
    """What the launch saved (rootless.lifecycle.save_process); None if it saved nothing."""
    from rootless.running import PROCESS_NAME

    try:
        if doc is None:
            import json

            with open(os.path.join(cdir, PROCESS_NAME), "rb") as f:
                doc = json.load(f)
        return Process.from_json(doc, (), _bpf(cdir))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ContainerError(
            f"container {os.path.basename(cdir)[:12]}: damaged {PROCESS_NAME}: {exc}",
            hint="restart the container (rsbox restart), which writes it again",
        ) from exc


def _planned_process(cdir: str) -> Process:
    """A container started by an rsbox that saved no process: the plan, recomputed from
    its config.json (as exec did before)."""
    from pathlib import Path

    from rootless.idmap import host_idmap
    from rootless.lifecycle import CONFIG_NAME, read_json
    from rootless.runspec import RunSpec

    config = read_json(Path(cdir) / CONFIG_NAME)
    plan = config.get("plan") or {}
    run_spec = RunSpec.from_json(config.get("spec") or {"image": ""})
    idmap = host_idmap(run_spec.userns)
    return Process(
        argv=(),
        env=tuple(plan.get("env") or ()),
        cwd=str(plan.get("cwd") or "/"),
        user=str(plan.get("user") or ""),
        full_idmap=idmap.full,
        host_ids=(idmap.inside_uid, idmap.inside_gid),
        caps=run_spec.capabilities(),
        rlimits=tuple(run_spec.limits().rlimits()) if run_spec.has_limits else (),
        bpf=_bpf(cdir),
    )


def _container_cgroup(cid: str) -> Path | None:
    """The container's own cgroup, when its launch made one (rootless.cgroups.record):
    the exec'd process joins it. Most containers have none: then neither pathlib nor
    rootless.cgroups is imported on exec's path."""
    from rootless.running import runtime_base

    rundir = os.path.join(runtime_base(), cid)
    if not os.path.exists(os.path.join(rundir, "cgroup")):
        return None
    from pathlib import Path

    from rootless.cgroups import recorded

    cg = recorded(Path(rundir))
    return cg.container if cg is not None else None
