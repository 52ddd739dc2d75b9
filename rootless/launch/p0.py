"""P0: the launch side of the CLI (`rsbox run`, `rsbox start`).

P1 was forked first thing (prefork.py). Here P0 hands it the pickled `Launch`, writes its
id maps when it has made its user namespace, runs pasta against P2's network namespace
when asked, forwards the user's signals, and relays the exit status or the error line.

* An unprivileged P0 can write a single-id map for its child itself (after "deny" to
  setgroups); a full 0-65535 map needs the setuid newuidmap/newgidmap. Both run while P1
  waits on a pipe, because a map written after P1 used its ids would be too late.
* P1 dies with us (its parent-death signal is SIGKILL, armed in prefork; a warm P0 is
  killed by the helper when its CLI's connection closes: warm.py), and P2 kills
  the container's pid 1 when P1 dies (p2.py): a `kill -9` of this process ends the
  container. Detached, P1 leaves our session and becomes the container's owner.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess

from rootless import cgroups, lifecycle, network, slurm
from rootless import syscalls as sc
from rootless.errors import ContainerError, HostError, RsboxError
from rootless.idmap import IdMap, proc_map_text
from rootless.launch.prefork import Helper
from rootless.launch.protocol import (
    FORWARDED_SIGNALS,
    MAPPED,
    USERNS_MADE,
    WIRED,
    Launch,
    SignalWakeup,
    exit_code,
    parse_error,
    read_error,
)
from rootless.launch.terminal import raw_terminal


def write_maps(pid: int, idmap: IdMap) -> None:
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
    # uid_map, then "deny" to setgroups (required before an unprivileged gid_map), then
    # gid_map: the order the kernel accepts from an unprivileged writer.
    # One line each (`0 U 1`, or `U U 1` under keep-id): the kernel lets an unprivileged
    # writer map its own id, and only that.
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(proc_map_text(idmap.uid_lines()))
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny\n")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(proc_map_text(idmap.gid_lines()))


def run(helper: Helper, launch: Launch) -> int:
    """P0 with P1 forked: hand P1 the launch, write its maps, wait. Returns the
    container command's exit status, or raises what P1..P3 reported."""
    helper.used = True
    grace = None if launch.spec.detach else slurm.term_grace(os.environ)
    if grace is not None:
        sc.set_child_subreaper()  # pasta stays in the job's process tree (rootless.slurm)
    with raw_terminal(launch.spec.tty and launch.spec.interactive), SignalWakeup() as wakeup:
        # Forward signals from now on; the default disposition would kill P0 and,
        # through PDEATHSIG, the container without giving the command a say. Every wait
        # below is one `wakeup` ends, so that no signal waits for it.
        previous = {
            s: signal.signal(s, lambda sig, _f: helper.kill(sig)) for s in FORWARDED_SIGNALS
        }
        if grace is not None:
            previous[signal.SIGTERM] = signal.signal(
                signal.SIGTERM, lambda sig, _f: _term_in_job(helper, grace)
            )
            previous[signal.SIGALRM] = signal.signal(
                signal.SIGALRM, lambda _s, _f: helper.kill(signal.SIGKILL)
            )
        try:
            with open(helper.launch_w, "wb", closefd=False) as f:
                pickle.dump(launch, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.close(helper.launch_w)
            wakeup.wait_readable(helper.ready_r)
            if os.read(helper.ready_r, 1) == USERNS_MADE:
                if launch.cgroup is not None:
                    _into_cgroup(helper, launch)
                _map(helper, launch.idmap)
                if launch.spec.pasta_from_p0:
                    _attach_pasta(helper, launch)
            if launch.spec.detach:
                return _detached_started(helper)
            status = helper.wait(wakeup)
        except BaseException:
            _release_cgroup(launch)  # whatever started in it: gone with it
            raise
        finally:
            if grace is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
            for s, h in previous.items():
                signal.signal(s, h)
    _release_cgroup(launch)  # what left the tree (a daemon) dies with the container
    err = read_error(helper.err_r)
    helper.close()
    if err is not None:
        raise err
    return exit_code(status)


def _term_in_job(helper: Helper, grace: float) -> None:
    """SIGTERM from Slurm: the container's to handle, for `grace` seconds; then SIGALRM
    kills it (through P1: P2's guard ends the rest), before Slurm's own SIGKILL would
    take us too, so that the usual cleanup still runs (rootless.slurm)."""
    helper.kill(signal.SIGTERM)
    if signal.getitimer(signal.ITIMER_REAL)[0] == 0:
        signal.setitimer(signal.ITIMER_REAL, grace)


def _into_cgroup(helper: Helper, launch: Launch) -> None:
    """P1 into its leaf of the container's cgroup while it waits for its maps, before it
    forks P2, which enters the container's leaf itself (rootless.cgroups)."""
    assert launch.cgroup is not None
    try:
        launch.cgroup.attach_server(helper.pid)
        cgroups.record(lifecycle.runtime_dir(launch.cid, create=True), launch.cgroup)
    except OSError as exc:
        helper.abort()
        _release_cgroup(launch)
        raise HostError(
            f"cannot move the container into its cgroup {launch.cgroup.path}: {exc.strerror}",
            hint="--cgroup-parent must contain the cgroup you run in (see rsbox info)",
        ) from exc


def _release_cgroup(launch: Launch) -> None:
    """Kill what is left in the container's cgroup and remove it, under the monitor lock
    (as `rm`): when another monitor holds it (two `start`s at once, and ours lost), the
    cgroup is the winner's, and stays."""
    if launch.cgroup is None:
        return
    with contextlib.suppress(ContainerError), lifecycle.exclusive(launch.cid):
        launch.cgroup.remove()


def _map(helper: Helper, idmap: IdMap) -> None:
    try:
        write_maps(helper.pid, idmap)
    except (OSError, RsboxError) as exc:
        helper.abort()
        if isinstance(exc, RsboxError):
            raise
        raise HostError(f"cannot write the id maps: {exc.strerror}", hint="run rsbox info") from exc
    os.write(helper.go_w, MAPPED)


def _attach_pasta(helper: Helper, launch: Launch) -> None:
    """Right after P1's maps: P1 made the container's network namespace with its user
    namespace (p1.py), so we run pasta against P1 from the host at once, while P1 mounts
    and forks P2, and answer WIRED (or kill the tree and raise)."""
    try:
        ports = tuple(network.Port.parse(p) for p in launch.spec.publish)
        rundir = lifecycle.runtime_dir(launch.cid)
        network.attach("pasta", helper.pid, ports, rundir, launch.spec.network_options)
    except RsboxError:
        helper.abort()
        raise
    with contextlib.suppress(BrokenPipeError):  # P1 failed meanwhile: its error is reported
        os.write(helper.go_w, WIRED)


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
        err = parse_error(b"".join(chunks)[:60000])
        with contextlib.suppress(ChildProcessError):
            helper.wait()
        helper.close()
        raise err or RsboxError("the container failed to start", hint="see rsbox logs")
    helper.close()
    return 0
