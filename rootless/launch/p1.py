"""P1: the FUSE server and monitor of one container.

Forked by P0 first thing (prefork.py), it imports the FUSE server while P0 gathers the
`Launch`, then, in named steps:

1. read the Launch; detached: leave P0's session and drop the parent-death signal (the
   monitor outlives the CLI); take the monitor lock ("running" is "someone holds it");
2. unshare(NEWUSER|NEWNS[|NEWNET with pasta]) and have P0 write our id maps (and, with
   pasta, start pasta against us at once). Single-threaded until here:
   unshare(CLONE_NEWUSER) fails with EINVAL in a process with threads, and trio starts
   worker threads lazily, so nothing touches trio before this step;
3. make / private (nothing propagates back to the host) and mount the union rootfs;
4. the container's stdio: log pipes when detached; otherwise the user's fds, except that
   a terminal is replaced by a pipe we relay (no container process holds it);
5. fork P2 (before trio: never fork inside trio.run). After unshare(CLONE_NEWPID) a
   process cannot create threads, so the FUSE server must not be the one that unshares
   the pid namespace: P2 does, and its first child is pid 1. We stay outside;
6. wire the network namespace (slirp4netns ourselves, on P2's; pasta's, ours, is P0's
   to wire: we pass its WIRED on to P3);
7. serve FUSE and relay on trio until P2 exits (supervise.py);
8. record the exit, remove a `--rm` detached container, ask the restarter, exit with P2's
   code.

P2 arms its own parent-death signal: our death, however it comes, kills the container.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from rootless import lifecycle, network
from rootless import syscalls as sc
from rootless.errors import HostError
from rootless.launch import p2
from rootless.launch.become import close_fds_except
from rootless.launch.prefork import lean_imports
from rootless.launch.protocol import (
    MAPPED,
    NETNS_MADE,
    RESTART,
    USERNS_MADE,
    WIRED,
    Launch,
    child,
    report,
)
from rootless.launch.terminal import Stdio, relayed_stdio


@dataclass(frozen=True, slots=True)
class Pipes:
    """P1's ends of the pipes to P0 (prefork.Helper has the other ends)."""

    launch_r: int
    ready_w: int
    go_r: int
    err_w: int


def main(pipes: Pipes) -> None:
    """P1, from `prefork.Helper` (which armed PDEATHSIG and the signals)."""
    # Importing starts no thread, so it may come before unshare(CLONE_NEWUSER).
    with lean_imports():
        from fs import server
        from fs.union import UnionSpec
        from rootless.launch.supervise import Watch, serve_until_exit

    # Imports done (prefork disabled the collector for them): what they made lives as long
    # as we do, so keep it out of every later collection, and collect from here on.
    gc.freeze()
    gc.enable()
    launch = _read_launch(pipes.launch_r)
    _new_keyring()
    detach = launch.spec.detach
    if detach:  # the monitor outlives the CLI and its terminal
        os.setsid()
        sc.set_pdeathsig(0)
    rundir = lifecycle.runtime_dir(launch.cid)  # named by our host uid: before unshare
    lock_fd = lifecycle.take_monitor_lock(launch.cid)
    restarter = _fork_restarter(launch) if detach and launch.spec.restart != "no" else -1
    by_p0 = launch.spec.pasta_from_p0  # (step 6)
    _enter_user_namespace(pipes, network=by_p0)
    os.close(pipes.ready_w)
    if not by_p0:
        os.close(pipes.go_r)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    idmap = launch.idmap
    union = UnionSpec(
        lowers=launch.layers,
        upper=launch.upper,
        mapped_ids=idmap.mapped_uids(),
        mapped_gids=idmap.mapped_gids(),
        unmapped_as=idmap.unmapped_as,
    )
    try:
        server.mount(union, launch.rootfs)
    except OSError as exc:
        raise HostError(
            f"cannot mount the container's root filesystem: {exc.strerror}",
            hint="check that /dev/fuse is usable by you (rsbox info)",
        ) from exc
    pty_p1, pty_p3 = _socketpair(launch.spec.tty, socket.SOCK_STREAM)
    # --seccomp-learn or fakeroot's true owners: P3 sends the filter's listener fd to us.
    learn_p1, learn_p3 = _socketpair(launch.notify_program is not None, socket.SOCK_SEQPACKET)
    if launch.notify_program is not None:
        # P3 installs the filter after pivot_root, when our modules are out of its reach.
        import policies.learn
        import policies.notify  # noqa: F401
    stdio = _stdio(launch)
    started = lifecycle.now()
    lifecycle.atomic_write_json(
        launch.cdir / lifecycle.STATE_NAME,
        {"started_at": started, "restart_count": launch.restart_count},
        durable=False,
    )
    tool = launch.spec.network if launch.spec.network in network.TOOLS else None
    sync = (*os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC)) if tool else None
    p1 = os.getpid()
    pid2 = os.fork()
    if pid2 == 0:
        for mine in (pty_p1, learn_p1):
            if mine is not None:
                mine.close()
        for fd, target in zip(stdio.fds, (0, 1, 2), strict=True):
            os.dup2(fd, target)
        child(pipes.err_w, p2.main, launch, p1, pipes.err_w, pty_p3, sync, learn_p3, rundir)
    for theirs in (pty_p3, learn_p3):
        if theirs is not None:
            theirs.close()
    for fd in stdio.theirs:
        os.close(fd)
    if sync is not None:  # P2's ends
        os.close(sync[1])
        os.close(sync[2])
    keep_net: list[int] = []  # what keeps slirp4netns alive, once wired

    def wire() -> None:
        """Step 6, in a worker thread while the server runs (supervise.Watch.wire)."""
        try:
            if tool:
                fd = _wire_network(launch, pid2, pipes, sync, rundir)
                keep_net.extend([fd] if fd is not None else [])
        except BaseException as exc:  # reported to P0; P3 sees no WIRED and gives up
            report(pipes.err_w, exc)
            return
        finally:
            if detach:
                _let_go_of_p0(pipes, rundir)

    learning = owners = None
    if learn_p1 is not None and launch.spec.seccomp_learn is not None:
        learning = (learn_p1, launch.spec.seccomp_learn)
    elif learn_p1 is not None:  # fakeroot under a single-id map: we answer (true owners)
        owners = (learn_p1, launch.rootfs)
    watch = Watch(
        pid2=pid2,
        pty_sock=pty_p1,
        interactive=launch.spec.interactive,
        logs=stdio.logs,
        learn=learning,
        owners=owners,
        inputs=tuple(stdio.inputs),
        outputs=tuple(stdio.outputs),
        log_file=(launch.cdir / lifecycle.LOG_NAME, launch.spec.log_options()),
        wire=wire if tool or detach else None,
    )
    code = serve_until_exit(watch)
    try:
        server.close()
    except Exception as exc:  # the container is gone; say so and finish the bookkeeping
        print(f"rsbox: warning: closing the root filesystem: {exc!r}", file=sys.stderr)
    _record_exit(launch, started, code)
    if detach and launch.cgroup is not None:
        launch.cgroup.leave()
    for fd in keep_net:
        os.close(fd)
    if by_p0:  # before _remove: its pid file is in the runtime directory
        network.stop_pasta(rundir)
    if detach and launch.spec.remove:
        _remove(launch, rundir)
    if restarter >= 0:
        _ask_restart(launch, restarter, code, rundir)
    os.close(lock_fd)
    os._exit(code)


def _new_keyring() -> None:
    """The container gets a session keyring of its own, as runc gives it (Docker,
    Podman): the caller's (Kerberos tickets in a KEYRING: cache, say) never reaches it,
    and a P1 forked by a warm P0 (rootless.launch.warm) does not hand on the helper's,
    which may be a login session's that has ended (revoked: keyctl says EKEYREVOKED).
    Each keyring counts against the user's key quota (kernel.keys.maxkeys, 200): past
    it, the inherited one stays."""
    with contextlib.suppress(OSError):
        sc.join_new_session_keyring()


def _read_launch(fd: int) -> Launch:
    with open(fd, "rb", closefd=True) as f:
        data = f.read()
    if not data:  # P0 gave up before the launch (bad image, ...): nothing to clean
        os._exit(0)
    launch = pickle.loads(data)
    assert isinstance(launch, Launch)
    return launch


def _enter_user_namespace(pipes: Pipes, network: bool) -> None:
    """With `network` (pasta), the container's network namespace too, made here rather
    than in P2: P0 starts pasta against us as soon as it has written our maps, and pasta's
    own start (~25-30 ms here) then overlaps our mount, P2 and P3's mounts instead of
    following them (measured: `run --rm IMG true` 119 -> ~108 ms). We hold no socket but
    unix socketpairs, so the container's network namespace reaches nothing of ours."""
    flags = sc.CLONE_NEWUSER | sc.CLONE_NEWNS | (sc.CLONE_NEWNET if network else 0)
    try:
        sc.unshare(flags)
    except OSError as exc:
        raise HostError(
            f"cannot create a user namespace: {exc.strerror}",
            hint="run rsbox info: user namespaces must be enabled for unprivileged users",
        ) from exc
    os.write(pipes.ready_w, USERNS_MADE)
    if os.read(pipes.go_r, 1) != MAPPED:
        os._exit(125)  # P0 reports why


def _socketpair(wanted: bool, kind: int) -> tuple[socket.socket | None, socket.socket | None]:
    if not wanted:
        return None, None
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    return a, b


def _stdio(launch: Launch) -> Stdio:
    """Step 4. Detached: stdin /dev/null, stdout and stderr pipes that we log. Otherwise
    the user's fds, but never a terminal (terminal.relayed_stdio)."""
    spec = launch.spec
    if not spec.detach:
        return relayed_stdio(spec.tty, spec.interactive)
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    log_fd = os.open(
        launch.cdir / lifecycle.LOG_NAME,
        os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
        0o600,
    )
    return Stdio((devnull, out_w, err_w), [devnull, out_w, err_w], [], [], (out_r, err_r, log_fd))


def _wire_network(
    launch: Launch, pid2: int, pipes: Pipes, sync: p2.NetSync | None, rundir: Path
) -> int | None:
    """Step 6: P2 says when its network namespace exists; we attach the tool to it and
    tell P3 (which is making its mounts meanwhile) to go on. Returns an fd to keep open
    for the tool's lifetime, if any."""
    assert sync is not None
    made_r, _, _, p2_go_w = sync  # the other ends were closed after the fork of P2
    keep: int | None = None
    by_p0 = launch.spec.pasta_from_p0
    try:
        if os.read(made_r, 1) == NETNS_MADE:
            if by_p0:
                # pasta cannot open the target's namespaces from inside our user
                # namespace (it sandboxes itself first): P0, on the host, runs it
                # against ours (the container's: _enter_user_namespace) after our maps.
                if os.read(pipes.go_r, 1) != WIRED:
                    return None  # P0 reports why; P3 sees no WIRED and gives up
            else:
                ports = tuple(network.Port.parse(p) for p in launch.spec.publish)
                keep = network.attach(
                    launch.spec.network, pid2, ports, rundir, launch.spec.network_options
                )
            os.write(p2_go_w, WIRED)
    finally:
        os.close(made_r)
        os.close(p2_go_w)  # EOF without WIRED: P3 exits 125
        if by_p0:
            os.close(pipes.go_r)
    return keep


def _let_go_of_p0(pipes: Pipes, rundir: Path) -> None:
    """Detached: P0 returns when P3 has run execve (EOF on the error pipe). Our own late
    errors go to monitor.err in the runtime directory."""
    mon_err = os.open(
        rundir / "monitor.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
    )
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(mon_err, 2)
    os.close(devnull)
    os.dup2(mon_err, pipes.err_w)
    os.close(mon_err)


def _record_exit(launch: Launch, started: str, code: int) -> None:
    try:
        lifecycle.atomic_write_json(
            launch.cdir / lifecycle.STATE_NAME,
            {
                "started_at": started,
                "finished_at": lifecycle.now(),
                "exit_code": code,
                "restart_count": launch.restart_count,
                # memory.events counts the kernel's OOM kills in the container's cgroup.
                "oom_killed": launch.cgroup is not None and launch.cgroup.oom_killed(),
            },
            durable=launch.spec.detach,
        )
    except OSError as exc:
        print(f"rsbox: warning: cannot record the exit code: {exc}", file=sys.stderr)


def _remove(launch: Launch, rundir: Path) -> None:
    """`run -d --rm`: we are the last one to know the container; a failure leaves a line
    in monitor.err (rsbox rm can finish the job)."""
    from rootless.store import Store

    try:
        with Store.open(launch.store_root) as store:
            store.remove_container(launch.cid)
            if any(v.anonymous for v in launch.spec.volumes):
                from rootless.volumes import remove_anonymous

                remove_anonymous(store, launch.spec.volumes)
    except Exception as exc:
        print(f"rsbox: error: --rm could not remove {launch.cid[:12]}: {exc}", file=sys.stderr)
        return
    shutil.rmtree(rundir, ignore_errors=True)


def _ask_restart(launch: Launch, restarter: int, code: int, rundir: Path) -> None:
    limit = lifecycle.restart_limit(launch.spec.restart)
    stopped = (rundir / "stopping").exists()
    if code != 0 and not stopped and (limit is None or launch.restart_count < limit):
        os.write(restarter, RESTART)
    os.close(restarter)


def _fork_restarter(launch: Launch) -> int:
    """`--restart on-failure`: a process left in the host's namespaces (we are about to
    leave them), which runs `rsbox start` once we, the monitor, have exited, if we ask it
    to. Returns the pipe to ask on (RESTART; EOF means no)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    if os.fork() != 0:
        os.close(r)
        return w
    try:
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        close_fds_except(r)
        if os.read(r, 1) != RESTART:
            os._exit(0)
        lifecycle.wait_monitor(launch.cid)
        env = dict(os.environ, RSBOX_RESTART_COUNT=str(launch.restart_count + 1))
        argv = [sys.executable, "-m", "rootless", "--root", str(launch.store_root)]
        os.execve(sys.executable, [*argv, "start", launch.cid], env)
    finally:
        os._exit(125)
