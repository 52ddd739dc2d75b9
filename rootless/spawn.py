"""The process tree of `rsbox run`, P0 to P2 (P3 is `rootless.container_init`).

    P0  rsbox CLI (host user U): forks P1, writes its id maps, forwards signals, relays
     │   the exit status and any error P1..P3 reported on the error pipe
     └─ P1  unshare(NEWUSER|NEWNS), waits for its maps, makes / private, mounts the union
         │   rootfs (FUSE, root in its own user namespace), forks P2, then serves FUSE on
         │   trio until P2 is gone
         └─ P2  unshare(NEWPID|NEWUTS|NEWIPC|NEWCGROUP|NEWNS[|NEWNET]), forks P3 (pid 1 of
             │   the new pid namespace), forwards signals to it and reports its status
             └─ P3  container_init: mounts, pivot_root, user, seccomp, execve

What the kernel forces, each seen while building this:

* unshare(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process, and trio starts
  worker threads lazily: P1 unshares first, and neither P0 nor P1 may touch trio before.
* After unshare(CLONE_NEWPID) a process cannot create threads any more, so the FUSE server
  (which needs trio's threads) must not be the one that unshares the pid namespace: P2
  does it, and its first child is pid 1. P1 stays outside, where the container can
  neither see nor signal it.
* Never fork inside trio.run: P2 is forked before trio starts. The container's first
  access to the rootfs blocks until P1 answers FUSE INIT, which is fine.
* An unprivileged P0 can write a single-id map for its child itself (after "deny" to
  setgroups); a full 0-65535 map needs the setuid newuidmap/newgidmap. Both run while P1
  waits on a pipe, because a map written after P1 used its ids would be too late.
* PR_SET_PDEATHSIG on P1, P2 and P3: a SIGKILLed CLI takes the whole tree with it. The
  mounts live only in P1's and P2's private mount namespaces and vanish with them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import termios
import traceback
import tty
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rootless import errors, lifecycle, network
from rootless import syscalls as sc
from rootless.container_init import InitSpec, close_fds_except, container_main
from rootless.errors import HostError, RsboxError
from rootless.idmap import IdMap
from rootless.prefork import FORWARDED_SIGNALS, lean_imports
from rootless.runspec import ProcessPlan, RunSpec

if TYPE_CHECKING:
    from rootless.prefork import Helper


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything the tree needs, computed by P0 before the first fork."""

    spec: RunSpec
    plan: ProcessPlan
    layers: tuple[Path, ...]
    upper: Path
    rootfs: Path
    idmap: IdMap
    bpf: bytes | None
    etc_files: Mapping[str, Path]
    cid: str = ""
    cdir: Path | None = None  # the container's directory in the store (state, log)
    store_root: Path | None = None  # for `run -d --rm`: the monitor removes the container
    restart_count: int = 0  # --restart: how many times the monitor restarted it so far
    learn_program: bytes | None = None  # --seccomp-learn: the NOTIFY filter P3 installs


# --- error reporting across the tree --------------------------------------------------


def _report(fd: int, exc: BaseException) -> int:
    """Write one JSON line for P0 and return the exit code to use. Pipe writes under
    PIPE_BUF bytes are atomic and never block on an empty pipe."""
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
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(doc)[:3900] + "\n").encode())
    return code


def child(fd: int, body: object, *args: object) -> None:
    """Run `body` in a forked child and never return to the caller's code."""
    code = 125
    try:
        body(*args)  # type: ignore[operator]
    except BaseException as exc:  # every failure must reach P0
        if os.environ.get("RSBOX_DEBUG"):
            traceback.print_exc()
        code = _report(fd, exc)
    finally:
        os._exit(code)


def _read_error(fd: int) -> RsboxError | None:
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return None
    for line in data.decode(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        cls = getattr(errors, str(doc.get("type")), RsboxError)
        if not (isinstance(cls, type) and issubclass(cls, RsboxError)):
            cls = RsboxError
        return cls(str(doc.get("message")), doc.get("hint"))
    return None


def _status_to_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# --- P0 ------------------------------------------------------------------------------


def _write_maps(pid: int, idmap: IdMap) -> None:
    if idmap.full:
        # Both setuid helpers at once: they write independent files.
        procs = [
            (tool, subprocess.Popen([tool, str(pid), *args], stderr=subprocess.PIPE, text=True))
            for tool, args in (
                ("newuidmap", idmap.newuidmap_args()),
                ("newgidmap", idmap.newgidmap_args()),
            )
        ]
        for tool, proc in procs:
            _, stderr = proc.communicate()
            if proc.returncode != 0:
                raise HostError(
                    f"{tool} failed: {stderr.strip() or proc.returncode}",
                    hint="check /etc/subuid and /etc/subgid, or use --userns single",
                )
        return
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"0 {idmap.uid} 1\n")
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny\n")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"0 {idmap.gid} 1\n")


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not os.isatty(0):
        yield
        return
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def run(helper: Helper, launch: Launch) -> int:
    """P0 with P1 forked: hand P1 the launch, write its maps, wait. Returns the
    container command's exit status, or raises what P1..P3 reported."""
    helper.used = True
    pid1 = helper.pid
    with _raw_terminal(launch.spec.tty and launch.spec.interactive):
        # Forward signals from now on; the default disposition would kill P0 and,
        # through PDEATHSIG, the container without giving the command a say.
        previous = {
            s: signal.signal(s, lambda sig, _f: _kill(pid1, sig)) for s in FORWARDED_SIGNALS
        }
        try:
            with open(helper.launch_w, "wb", closefd=False) as f:
                pickle.dump(launch, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.close(helper.launch_w)
            if os.read(helper.ready_r, 1) == b"U":
                try:
                    _write_maps(pid1, launch.idmap)
                except (OSError, RsboxError) as exc:
                    helper.abort()
                    if isinstance(exc, RsboxError):
                        raise
                    raise HostError(
                        f"cannot write the id maps: {exc.strerror}", hint="run rsbox info"
                    ) from exc
                os.write(helper.go_w, b"M")
                if launch.spec.network == "pasta":
                    _attach_pasta(helper, launch)
            if launch.spec.detach:
                return _detached_started(helper)
            _, status = os.waitpid(pid1, 0)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    err = _read_error(helper.err_r)
    helper.close()
    if err is not None:
        raise err
    return _status_to_code(status)


def _attach_pasta(helper: Helper, launch: Launch) -> None:
    """P1 sends "N<pid of P2>" once P2 has its network namespace; we run pasta against
    it from the host and answer "G" (or kill the tree and raise)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(helper.ready_r, 64)
        if not chunk:
            return  # P1 failed before; its error is on the error pipe
        data += chunk
    pid2 = int(data[1:-1])
    try:
        ports = tuple(network.Port.parse(p) for p in launch.spec.publish)
        network.attach("pasta", pid2, ports, lifecycle.runtime_dir(launch.cid))
    except RsboxError:
        helper.abort()
        raise
    os.write(helper.go_w, b"G")


def _detached_started(helper: Helper) -> int:
    """The error pipe reaches EOF when the container's command was executed (its copy is
    close-on-exec) and P1 and P2 have let go of theirs: then P1 is the monitor, on its
    own, and we may leave. Anything else is an error line."""
    chunks = []
    while chunk := os.read(helper.err_r, 65536):
        chunks.append(chunk)
        if b"\n" in chunk:  # one error line is all we need: the tree is going down
            break
    os.close(helper.err_r)
    if chunks:
        r, w = os.pipe2(os.O_CLOEXEC)
        os.write(w, b"".join(chunks)[:60000])
        os.close(w)
        err = _read_error(r)
        os.close(r)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(helper.pid, 0)
        helper.close()
        raise err or RsboxError("the container failed to start", hint="see rsbox logs")
    helper.close()
    return 0


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# --- P1 ------------------------------------------------------------------------------


def helper_main(launch_r: int, ready_w: int, go_r: int, err_w: int) -> None:
    """P1, from `rootless.prefork.Helper` (which armed PDEATHSIG and the signals)."""
    # Importing starts no thread, so it may come before unshare(CLONE_NEWUSER).
    with lean_imports():
        from fs import server
        from fs.union import UnionSpec
        from rootless.supervise import serve_until_exit

    # Imports done (prefork disabled the collector for them): what they made lives as long
    # as we do, so keep it out of every later collection, and collect from here on.
    gc.freeze()
    gc.enable()
    with open(launch_r, "rb", closefd=True) as f:
        data = f.read()
    if not data:  # P0 gave up before the launch (bad image, ...): nothing to clean
        os._exit(0)
    launch: Launch = pickle.loads(data)
    detach = launch.spec.detach
    if detach:  # the monitor outlives the CLI and its terminal
        os.setsid()
        sc.set_pdeathsig(0)
    lock_fd = -1
    if launch.cid:  # before unshare: the runtime directory is named by our host uid
        rundir = lifecycle.runtime_dir(launch.cid)
        lock_fd = lifecycle.take_monitor_lock(launch.cid)
    restarter = _fork_restarter(launch, rundir) if detach and launch.spec.restart != "no" else -1
    try:
        sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS)
    except OSError as exc:
        raise HostError(
            f"cannot create a user namespace: {exc.strerror}",
            hint="run rsbox info: user namespaces must be enabled for unprivileged users",
        ) from exc
    os.write(ready_w, b"U")
    if os.read(go_r, 1) != b"M":
        os._exit(125)
    by_p0 = launch.spec.network == "pasta"  # see below: P0 runs pasta
    if not by_p0:
        os.close(ready_w)
        os.close(go_r)
    # Our copy of the mount table must not propagate anything back to the host.
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    union = UnionSpec(lowers=launch.layers, upper=launch.upper, mapped_ids=range(launch.idmap.size))
    try:
        server.mount(union, launch.rootfs)
    except OSError as exc:
        raise HostError(
            f"cannot mount the container's root filesystem: {exc.strerror}",
            hint="check that /dev/fuse is usable by you (rsbox info)",
        ) from exc
    p1_sock: socket.socket | None = None
    p3_sock: socket.socket | None = None
    if launch.spec.tty:
        p1_sock, p3_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # --seccomp-learn: P3 sends the filter's listener fd on learn_p3; we supervise it.
    learn_p1: socket.socket | None = None
    learn_p3: socket.socket | None = None
    if launch.learn_program is not None:
        learn_p1, learn_p3 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # P3 installs the filter after pivot_root, when our modules are out of its reach.
        import policies.learn
        import policies.notify  # noqa: F401
    logs: tuple[int, int, int] | None = None
    if detach and launch.cdir is not None:
        # The container's stdout and stderr become pipes that we, the monitor, log.
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        errp_r, errp_w = os.pipe2(os.O_CLOEXEC)
        log_fd = os.open(
            launch.cdir / lifecycle.LOG_NAME,
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
        devnull = os.open("/dev/null", os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(errp_w, 2)
        os.close(out_w)
        os.close(errp_w)
        logs = (out_r, errp_r, log_fd)
    if launch.cdir is not None:
        started = lifecycle.now()
        lifecycle.atomic_write_json(
            launch.cdir / lifecycle.STATE_NAME,
            {"started_at": started, "restart_count": launch.restart_count},
            durable=False,
        )
    tool = launch.spec.network if launch.spec.network in network.TOOLS else None
    # P2 -> P1: "network namespace made"; P1 -> P2: "wired, go on".
    sync = (*os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC)) if tool else None
    p1 = os.getpid()
    pid2 = os.fork()
    if pid2 == 0:
        for mine in (p1_sock, learn_p1):
            if mine is not None:
                mine.close()
        child(err_w, _namespaces_main, launch, p1, err_w, p3_sock, sync, learn_p3)
    for theirs in (p3_sock, learn_p3):
        if theirs is not None:
            theirs.close()
    keep_net: int | None = None
    if tool and sync is not None:
        made_r, made_w, p2_go_r, p2_go_w = sync
        os.close(made_w)
        os.close(p2_go_r)
        if os.read(made_r, 1) == b"N":
            if by_p0:
                # pasta cannot open the target's namespaces from inside our user
                # namespace (it sandboxes itself first): P0, on the host, runs it.
                os.write(ready_w, f"N{pid2}\n".encode())
                if os.read(go_r, 1) != b"G":
                    os._exit(125)  # P0 reports why
            else:
                ports = tuple(network.Port.parse(p) for p in launch.spec.publish)
                keep_net = network.attach(tool, pid2, ports, rundir)
            os.write(p2_go_w, b"G")
        os.close(made_r)
        os.close(p2_go_w)
        if by_p0:
            os.close(ready_w)
            os.close(go_r)
    if logs is not None:
        # Let go of the terminal and of P0's error pipe: P0 returns when P3 has run
        # execve. Our own late errors go to monitor.err in the runtime directory.
        mon_err = os.open(
            rundir / "monitor.err",
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
        os.dup2(devnull, 1)
        os.dup2(mon_err, 2)
        os.close(devnull)
        os.dup2(mon_err, err_w)
        os.close(mon_err)
    learning = None
    if learn_p1 is not None and launch.spec.seccomp_learn is not None:
        learning = (learn_p1, launch.spec.seccomp_learn)
    code = serve_until_exit(pid2, p1_sock, launch.spec.interactive, logs, learning)
    with contextlib.suppress(Exception):
        server.close()
    if launch.cdir is not None:
        with contextlib.suppress(OSError):
            lifecycle.atomic_write_json(
                launch.cdir / lifecycle.STATE_NAME,
                {
                    "started_at": started,
                    "finished_at": lifecycle.now(),
                    "exit_code": code,
                    "restart_count": launch.restart_count,
                },
                durable=detach,
            )
    if detach and launch.spec.remove and launch.store_root is not None:
        from rootless.store import Store

        with contextlib.suppress(Exception), Store.open(launch.store_root) as store:
            store.remove_container(launch.cid)
        with contextlib.suppress(OSError):
            shutil.rmtree(rundir)
    if keep_net is not None:
        os.close(keep_net)
    if by_p0:
        network.stop_pasta(rundir)
    if restarter >= 0:
        limit = lifecycle.restart_limit(launch.spec.restart)
        stopped = (rundir / "stopping").exists()
        if code != 0 and not stopped and (limit is None or launch.restart_count < limit):
            os.write(restarter, b"R")
        os.close(restarter)
    if lock_fd >= 0:
        os.close(lock_fd)
    os._exit(code)


def _fork_restarter(launch: Launch, rundir: Path) -> int:
    """`--restart on-failure`: a process left in the host's namespaces (we are about to
    leave them), which runs `rsbox start` once we, the monitor, have exited, if we ask it
    to. Returns the pipe to ask on ("R"; EOF means no)."""
    import sys

    r, w = os.pipe2(os.O_CLOEXEC)
    if os.fork() != 0:
        os.close(r)
        return w
    try:
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        close_fds_except(r)
        if os.read(r, 1) != b"R":
            os._exit(0)
        lifecycle.wait_monitor(launch.cid)
        env = dict(os.environ, RSBOX_RESTART_COUNT=str(launch.restart_count + 1))
        argv = [sys.executable, "-m", "rootless", "--root", str(launch.store_root)]
        os.execve(sys.executable, [*argv, "start", launch.cid], env)
    finally:
        os._exit(125)


# --- P2 ------------------------------------------------------------------------------


def _namespaces_main(
    launch: Launch,
    p1: int,
    err_w: int,
    pty_sock: socket.socket | None,
    sync: tuple[int, int, int, int] | None,
    learn_sock: socket.socket | None = None,
) -> None:
    sc.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != p1:
        os._exit(125)
    flags = (
        sc.CLONE_NEWPID | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP | sc.CLONE_NEWNS
    )
    if launch.spec.network != "host":
        flags |= sc.CLONE_NEWNET
    sc.unshare(flags)
    if sync is not None:  # P1 wires our new network namespace before the container runs
        made_r, made_w, go_r, go_w = sync
        os.close(made_r)
        os.close(go_w)
        os.write(made_w, b"N")
        if os.read(go_r, 1) != b"G":
            os._exit(125)  # P1 reported why
    # The FUSE device, the monitor's lock and the store's files stay with P1: neither we
    # nor the container need them, and a container that held /dev/fuse could keep its
    # own rootfs alive after P1 died, blocked on it forever.
    close_fds_except(err_w, *(s.fileno() for s in (pty_sock, learn_sock) if s is not None))
    init = InitSpec(
        rootfs=launch.rootfs,
        spec=launch.spec,
        plan=launch.plan,
        etc_files=launch.etc_files,
        full_idmap=launch.idmap.full,
        bpf=launch.bpf,
        error_fd=err_w,
        pty_sock=pty_sock,
        learn_program=launch.learn_program,
        learn_sock=learn_sock,
    )
    pid3 = os.fork()
    if pid3 == 0:
        # No getppid() check here: P2 lives outside our new pid namespace, so getppid()
        # is 0 from the start. P2 cannot exit before reaping us but by being killed with
        # P1, and then the whole namespace goes down with its pid 1 = us, via PDEATHSIG.
        sc.set_pdeathsig(signal.SIGKILL)
        for s in FORWARDED_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        child(err_w, container_main, init)
    for mine in (pty_sock, learn_sock):
        if mine is not None:
            mine.close()
    for s in FORWARDED_SIGNALS:
        signal.signal(s, lambda sig, _f: _kill(pid3, sig))
    # P3 reports its own failures; a detached P0 waits for EOF on the error pipe.
    os.closerange(3, 1 << 20)
    while True:
        _, status = os.waitpid(pid3, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            os._exit(_status_to_code(status))
