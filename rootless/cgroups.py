"""A cgroup v2 of the container's own, when the user's cgroup is delegated to them.

What the kernel allows an unprivileged user (Documentation/admin-guide/cgroup-v2.rst,
"Delegation"): in a v2 hierarchy, a cgroup directory the user owns (systemd's
`user@UID.service` with `Delegate=yes`, or one root made and chowned, as CI does) may get
child cgroups; a process may be moved between two cgroups when the user can write the
`cgroup.procs` of their common ancestor, so from the user's own cgroup into a child of
it, never in from outside. Hence the parent of a container's cgroup is the cgroup rsbox
runs in, or `--cgroup-parent` (Podman's flag: a path in the hierarchy) when that contains
it.

What the child gets, and from where:

* Always (kernel >= 5.14, the files of every v2 cgroup, controllers or not):
  `cgroup.freeze` (pause/unpause), `cgroup.kill` (teardown: every process in it, even
  ones that left the container's process tree), `cgroup.events` (populated).
* Only for a controller the parent passes down (its `cgroup.subtree_control`): memory
  (`memory.max`, `memory.swap.max`, and `memory.events` whose `oom_kill` count says an
  OOM kill happened: OOMKilled), pids (`pids.max`), cpu (`cpu.max` for `--cpus`,
  `cpu.weight` for `--cpu-shares`), io
  (`io.max`: rsbox has no per-device flag yet, so none is written). rsbox asks the
  parent to pass them down (`+memory` ...) and takes what it gets: a cgroup that has
  processes of its own (the user's shell) cannot pass domain controllers down (the "no
  internal processes" rule, EBUSY). What no cgroup enforces stays an rlimit
  (rootless.limits), and `run` says which is which in one line.

The layout, one directory per container under the parent:

    rsbox-<id>/          cgroup.kill here ends everything below (teardown, `rm`)
      server/            P1, the container's filesystem server: P0 moves it in while P1
                         waits for its id maps, before it forks
      container/         P2 moves itself in before it unshares the cgroup namespace (so
                         the container sees this as its root), then forks pid 1; every
                         `exec` joins it first. The limits, memory.events, freeze and
                         stats are this one's.

Two leaves because of the kernel's "no internal processes" rule (a cgroup that passes
controllers down holds no process itself), and because the server must keep serving
while the container is frozen: `commit`/`cp` of a paused container read its root
filesystem through it. The limits cover the container's processes, not the server (as
Docker's do not cover conmon or the storage driver).

`plan` (which file gets which value) and the readers of `memory.events` and
`cgroup.events` are pure functions, unit-tested without a hierarchy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from rootless.errors import UsageError
from rootless.limits import Limits

CPU_PERIOD = 100_000  # µs, the kernel's and Docker's default period for cpu.max
CONTROLLERS = ("memory", "pids", "cpu", "io")
NAME_PREFIX = "rsbox-"
SERVER = "server"
CONTAINER = "container"


class Hierarchy(NamedTuple):
    """The v2 mount point and our own cgroup in it ("/user.slice/..." form)."""

    mount: Path
    own: str


def parse_mountinfo(text: str) -> Path | None:
    """The first cgroup2 mount point of a /proc/PID/mountinfo text."""
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) > sep + 1 and fields[sep + 1] == "cgroup2":
            return Path(fields[4].replace("\\040", " "))
    return None


def parse_own(cgroup_text: str) -> str | None:
    """The v2 path of a /proc/PID/cgroup text (its "0::" line)."""
    for line in cgroup_text.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


def hierarchy(proc: str = "/proc/self") -> Hierarchy | None:
    try:
        with open(f"{proc}/cgroup") as f:
            own = parse_own(f.read())
        with open(f"{proc}/mountinfo") as f:
            mount = parse_mountinfo(f.read())
    except OSError:
        return None
    if own is None or mount is None:
        return None
    return Hierarchy(mount, own)


def default_parent(h: Hierarchy) -> Path:
    """Where containers' cgroups go without --cgroup-parent. Beside our own cgroup when
    its parent is delegated to us too (systemd: the slice of our scope, inside
    user@UID.service): our own holds processes (this one, the user's shell), so the
    kernel lets it pass no controller down, while the slice can. Else inside our own
    (then only freeze, kill and events, as on this project's CI)."""
    own = resolve_parent(h, None)
    if own != h.mount and delegated(own.parent) is None:
        return own.parent
    return own


def resolve_parent(h: Hierarchy, cgroup_parent: str | None) -> Path:
    """Podman's --cgroup-parent for cgroupfs: a path in the hierarchy ("/a/b"; a relative
    one is taken from its root too). Default: our own cgroup."""
    rel = cgroup_parent if cgroup_parent is not None else h.own
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise UsageError(f"invalid --cgroup-parent {cgroup_parent!r}", hint="use a path: /a/b")
    return h.mount.joinpath(*parts)


def delegated(parent: Path) -> str | None:
    """None when we may make children under `parent` and move processes into them;
    else why not, in a few words."""
    if not (parent / "cgroup.procs").exists():
        return f"{parent} is not a cgroup v2 directory"
    for name in ("", "cgroup.procs", "cgroup.subtree_control"):
        if not os.access(parent / name, os.W_OK):
            return f"{parent / name if name else parent} is not writable by you (not delegated)"
    return None


def plan(limits: Limits, available: Iterable[str]) -> tuple[dict[str, str], frozenset[str]]:
    """(file -> value to write in the container's cgroup, the limits that cgroup
    enforces: "memory", "pids", "cpus"). `available`: the controllers the cgroup has (its
    cgroup.controllers). --memory as Docker without --memory-swap: as much swap again."""
    have = set(available)
    files: dict[str, str] = {}
    done: set[str] = set()
    if limits.memory is not None and "memory" in have:
        files["memory.max"] = str(limits.memory)
        files["memory.swap.max"] = str(limits.memory)
        done.add("memory")
    if limits.pids is not None and "pids" in have:
        files["pids.max"] = str(limits.pids)
        done.add("pids")
    if limits.cpus is not None and "cpu" in have:
        files["cpu.max"] = f"{max(1000, round(limits.cpus * CPU_PERIOD))} {CPU_PERIOD}"
        done.add("cpus")
    if limits.cpu_shares is not None and "cpu" in have:
        files["cpu.weight"] = str(cpu_weight(limits.cpu_shares))
        done.add("cpu-shares")
    return files, frozenset(done)


def cpu_weight(shares: int) -> int:
    """cgroup v1's cpu.shares (2..262144, 1024 the default) as v2's cpu.weight (1..10000,
    100 the default), by runc's linear map of one range onto the other (so 1024 gives
    39, not 100: runc's figures, which users of `docker run --cpu-shares` on v2 see)."""
    return 1 + ((shares - 2) * 9999) // 262142


def parse_keyed(text: str) -> Mapping[str, int]:
    """A flat keyed file (memory.events, cgroup.events): "key value" lines."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


class ContainerCgroup(NamedTuple):
    """The container's cgroup directory (rsbox-<id>); `enforced`: the limits its files
    enforce. See the layout above."""

    path: Path
    enforced: frozenset[str]
    home: Path | None = None  # the cgroup of the rsbox that made it (for `leave`)

    @property
    def container(self) -> Path:
        return self.path / CONTAINER

    def attach_server(self, pid: int) -> None:
        (self.path / SERVER / "cgroup.procs").write_text(f"{pid}\n")

    def enter(self) -> None:
        """The calling process into the container's leaf."""
        (self.container / "cgroup.procs").write_text("0\n")

    def oom_killed(self) -> bool:
        try:
            events = parse_keyed((self.container / "memory.events").read_text())
        except OSError:
            return False
        return events.get("oom_kill", 0) > 0

    def populated(self) -> bool:
        try:
            return parse_keyed((self.path / "cgroup.events").read_text()).get("populated") == 1
        except OSError:
            return False

    def freeze(self, frozen: bool) -> None:
        (self.container / "cgroup.freeze").write_text("1\n" if frozen else "0\n")

    def leave(self) -> None:
        """The monitor of a detached container, once it has ended: back into the cgroup
        rsbox was started from, then remove the container's (no P0 is left to). When the
        kernel refuses (that cgroup is gone, or passes controllers down: no internal
        processes), `rm` removes it."""
        with contextlib.suppress(OSError):
            (self.home or self.path.parent).joinpath("cgroup.procs").write_text("0\n")
            self.remove()

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left in it (cgroup.kill: the whole subtree), wait until empty,
        rmdir the leaves and it. Quiet when it is gone already."""
        if not self.path.exists():
            return
        with contextlib.suppress(OSError):
            if self.populated():
                (self.path / "cgroup.kill").write_text("1\n")
        deadline = time.monotonic() + timeout
        while self.populated() and time.monotonic() < deadline:
            time.sleep(0.01)  # SIGKILLed tasks leave within milliseconds
        for d in (self.path / SERVER, self.container, self.path):
            with contextlib.suppress(FileNotFoundError):
                d.rmdir()


def hold_for_orphan(cg: ContainerCgroup) -> tuple[int, int, int] | None:
    """P2's handles (close-on-exec) for `remove_orphaned`, opened before it unshares the
    cgroup namespace and pivots its root: the home cgroup's cgroup.procs (the kernel
    checks a migration against the namespace the file was opened in, since Linux 5.16),
    the container's cgroup and its parent."""
    if cg.home is None:
        return None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(cg.home / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        fds.append(os.open(cg.path, flags))
        fds.append(os.open(cg.path.parent, flags))
    except OSError:
        for fd in fds:
            os.close(fd)
        return None
    return fds[0], fds[1], fds[2]


def remove_orphaned(fds: tuple[int, int, int], name: str) -> None:
    """P2, when P1 and P0 are gone (a `kill -9` of rsbox) and pid 1 has been reaped (so
    its whole pid namespace is gone): nobody else will remove the container's cgroup.
    Out of it into the home cgroup, then rmdir the leaves and it; quiet on refusal (a
    slirp4netns still leaving): `rm` finishes."""
    home, top, parent = fds
    with contextlib.suppress(OSError):
        os.write(home, b"0\n")
        # P1's parent-death signal reached us while P1 was still exiting: its leaf may
        # be busy for a moment yet (EBUSY), so the removal is retried for a while.
        deadline = time.monotonic() + 10
        while True:
            try:
                for leaf in (SERVER, CONTAINER):
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(leaf, dir_fd=top)
                os.rmdir(name, dir_fd=parent)
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return
                time.sleep(0.02)


def _enable(parent: Path, wanted: Iterable[str]) -> None:
    """Ask `parent` to pass each controller down; a refusal (EBUSY: the parent has
    processes of its own; EINVAL/ENOENT: not available to it) just leaves it out."""
    try:
        current = set((parent / "cgroup.subtree_control").read_text().split())
        available = set((parent / "cgroup.controllers").read_text().split())
    except OSError:
        return
    for c in wanted:
        if c in current or c not in available:
            continue
        with contextlib.suppress(OSError):
            (parent / "cgroup.subtree_control").write_text(f"+{c}\n")


def for_container(
    cid: str, limits: Limits, cgroup_parent: str | None
) -> tuple[ContainerCgroup | None, str]:
    """Make the container's cgroup and write its limits. (None, why) without delegation;
    with `--cgroup-parent` that is an error instead."""
    h = hierarchy()
    parent = None
    if h is not None:
        parent = (
            resolve_parent(h, cgroup_parent) if cgroup_parent is not None else default_parent(h)
        )
    why = "no cgroup v2 hierarchy" if parent is None else delegated(parent)
    if parent is None or why is not None:
        if cgroup_parent is not None:
            raise UsageError(
                f"--cgroup-parent {cgroup_parent}: {why}",
                hint="give a cgroup v2 directory delegated to you, or leave the flag out",
            )
        return None, why or ""
    wanted = [c for c, v in (("memory", limits.memory), ("pids", limits.pids)) if v is not None]
    if limits.cpus is not None or limits.cpu_shares is not None:
        wanted.append("cpu")
    _enable(parent, wanted)
    path = parent / f"{NAME_PREFIX}{cid}"
    cg = ContainerCgroup(path, frozenset())
    try:
        path.mkdir(exist_ok=True)
        _enable(path, wanted)  # empty yet: the rule lets it pass them on to the leaves
        (path / SERVER).mkdir(exist_ok=True)
        cg.container.mkdir(exist_ok=True)
        available = (cg.container / "cgroup.controllers").read_text().split()
        files, enforced = plan(limits, available)
        for name, value in files.items():
            try:
                (cg.container / name).write_text(value + "\n")
            except FileNotFoundError:  # memory.swap.max without swap accounting
                if name != "memory.swap.max":
                    raise
    except OSError as exc:
        cg.remove()
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None, f"cannot make a cgroup in {parent}: {exc.strerror}"
        raise
    assert h is not None
    return ContainerCgroup(path, enforced, resolve_parent(h, None)), ""


def recorded(rundir: Path) -> ContainerCgroup | None:
    """The cgroup `run` recorded for a running container (see `record`)."""
    try:
        text = (rundir / "cgroup").read_text().strip()
    except OSError:
        return None
    return ContainerCgroup(Path(text), frozenset()) if text else None


def record(rundir: Path, cg: ContainerCgroup) -> None:
    from rootless.lifecycle import atomic_write_text

    atomic_write_text(rundir / "cgroup", f"{cg.path}\n")
