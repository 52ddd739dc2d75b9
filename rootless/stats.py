"""`rsbox stats` and `pause`: what a container uses, read from /proc; its cgroup freezer.

Where the numbers come from. Docker reads a container's cgroup. rsbox gives a container
a cgroup of its own only in a delegated cgroup v2 subtree (rootless.cgroups; then
`with_cgroup` puts its CPU, memory and pids figures in place of the sums below).
Otherwise the figures are read from /proc, for the processes of the container's pid
namespace (pid 1, its descendants, and what `exec` started):

* CPU %: utime + stime + cutime + cstime (/proc/PID/stat: the process's own time and its
  reaped children's), summed, between two samples, over the wall time between them;
  100% is one CPU, as in Docker (which divides by the host's time and multiplies by its
  number of CPUs: the same thing).
* MEM USAGE: the proportional set size of each process (PSS, /proc/PID/smaps_rollup: a
  page shared by n processes counts 1/n), else its resident set (VmRSS). The LIMIT is
  the host's memory (MemTotal): `--memory` is a per-process rlimit here, not a total.
* PIDS: tasks (threads), as cgroup's pids.current counts them.
* NET I/O: received / sent bytes of the container's network namespace
  (/proc/PID/net/dev, `lo` excluded); 0B / 0B when it shares the host's network, as
  Docker shows for `--network host`.
* BLOCK I/O: read_bytes / write_bytes (/proc/PID/io) of the container's processes and of
  its monitor (P1), which serves its root filesystem: the container's file I/O reaches
  the disk through it.

Processes of the container are found by their pid namespace (/proc/PID/ns/pid equal to
pid 1's). All of them run as the user (or ids of the user's subordinate range in a user
namespace the user owns), so the user may read these files.

Pause. Docker freezes the container's cgroup (cgroup.freeze); so does rsbox where the
container has one (rootless.cgroups). Without a cgroup of the
container's own there is nothing to freeze (freezing the user's cgroup would freeze the
user's shell and rsbox too), so `pause` and `unpause` fail with one line saying so;
`find_freezer` is the check, and the freezer is used when it passes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SOURCE_NOTE = (
    "rsbox: stats read from /proc of each container's processes "
    "(no container has a cgroup of its own here)"
)
CGROUP_NOTE = (
    "rsbox: stats read from each container's own cgroup (CPU; memory and pids when their "
    "controllers are there), the rest from /proc"
)


@dataclass(frozen=True)
class Sample:
    """One reading of a container. `when`: time.monotonic()."""

    when: float
    cpu_ticks: int = 0
    memory: int = 0
    tasks: int = 0
    block_read: int = 0
    block_write: int = 0
    net_rx: int = 0
    net_tx: int = 0
    running: bool = False
    memory_limit: int = 0  # the cgroup's memory.max; 0: none (the host's memory)


@dataclass(frozen=True)
class Usage:
    """What a stats row shows (Docker's StatsEntry)."""

    cpu_percent: float
    memory: int
    memory_limit: int
    memory_percent: float
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def parse_stat_cpu(text: str) -> int:
    """utime + stime + cutime + cstime (fields 14-17 of /proc/PID/stat, in ticks). The
    command name (field 2) may hold spaces and parentheses: fields count from the last
    ')'."""
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): field N is fields[N - 3]
    return sum(int(fields[n - 3]) for n in (14, 15, 16, 17))


def parse_keyed(text: str, key: str) -> int:
    """The number after `key:` in /proc/PID/status, io or smaps_rollup; kB made bytes."""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            parts = rest.split()
            value = int(parts[0])
            return value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return 0


def parse_net_dev(text: str) -> tuple[int, int]:
    """Received and sent bytes of every interface but `lo` (/proc/PID/net/dev)."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo" or not rest:
            continue
        cols = rest.split()
        rx += int(cols[0])
        tx += int(cols[8])
    return rx, tx


def _ns(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def namespace_pids(pid1: int) -> list[int]:
    """The processes in pid 1's pid namespace (host pids), pid 1 first."""
    target = _ns(pid1, "pid")
    if target is None:
        return []
    found = [pid1]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid1 and _ns(int(entry), "pid") == target:
            found.append(int(entry))
    return found


def sample(pid1: int | None, monitor: int | None) -> Sample:
    """Read a container now (pid1 None: not running, all zero)."""
    now = time.monotonic()
    if pid1 is None:
        return Sample(now)
    cpu = memory = tasks = read = write = 0
    pids = namespace_pids(pid1)
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat is None:
            continue  # gone meanwhile
        cpu += parse_stat_cpu(stat)
        rollup = _read(f"/proc/{pid}/smaps_rollup")
        status = _read(f"/proc/{pid}/status") or ""
        memory += parse_keyed(rollup, "Pss") if rollup else parse_keyed(status, "VmRSS")
        tasks += parse_keyed(status, "Threads")
    for pid in [*pids, *([monitor] if monitor else [])]:
        io = _read(f"/proc/{pid}/io")
        if io is not None:
            read += parse_keyed(io, "read_bytes")
            write += parse_keyed(io, "write_bytes")
    rx = tx = 0
    if _ns(pid1, "net") != _ns(os.getpid(), "net"):  # not the host's network
        rx, tx = parse_net_dev(_read(f"/proc/{pid1}/net/dev") or "")
    return Sample(now, cpu, memory, tasks, read, write, rx, tx, running=bool(pids))


def with_cgroup(s: Sample, cgroup: Path) -> Sample:
    """Where the container has a cgroup of its own (rootless.cgroups), its figures
    replace the /proc sums, as Docker reads them: CPU from cpu.stat's usage_usec (a core
    file of every v2 cgroup), memory.current and memory.max, pids.current, each when the
    controller is there. `cgroup`: the container's leaf, without its filesystem server
    (rootless.cgroups)."""
    if not s.running:
        return s
    cpu, memory, tasks, limit = s.cpu_ticks, s.memory, s.tasks, s.memory_limit
    stat = _read(str(cgroup / "cpu.stat"))
    if stat is not None:
        usec = next((int(v) for k, _, v in (ln.partition(" ") for ln in stat.splitlines())
                     if k == "usage_usec" and v.isdigit()), None)  # fmt: skip
        cpu = usec * CLOCK_TICKS // 1_000_000 if usec is not None else cpu
    current = (_read(str(cgroup / "memory.current")) or "").strip()
    memory = int(current) if current.isdigit() else memory
    ceiling = (_read(str(cgroup / "memory.max")) or "").strip()
    limit = int(ceiling) if ceiling.isdigit() else limit
    count = (_read(str(cgroup / "pids.current")) or "").strip()
    tasks = int(count) if count.isdigit() else tasks
    return replace(s, cpu_ticks=cpu, memory=memory, tasks=tasks, memory_limit=limit)


def host_memory() -> int:
    return parse_keyed(_read("/proc/meminfo") or "", "MemTotal")


def usage(before: Sample, after: Sample, memory_limit: int) -> Usage:
    """The row between two samples of one container (a stopped one: all zero, as Docker
    shows it, limit included)."""
    if not after.running:
        return Usage(0.0, 0, 0, 0.0, 0, 0, 0, 0, 0)
    elapsed = after.when - before.when
    ticks = max(0, after.cpu_ticks - before.cpu_ticks) if before.running else 0
    cpu = ticks / CLOCK_TICKS / elapsed * 100 if elapsed > 0 else 0.0
    memory_limit = after.memory_limit or memory_limit
    mem_percent = after.memory / memory_limit * 100 if memory_limit else 0.0
    return Usage(
        cpu,
        after.memory,
        memory_limit,
        mem_percent,
        after.net_rx,
        after.net_tx,
        after.block_read,
        after.block_write,
        after.tasks,
    )


# --- the freezer ---------------------------------------------------------------------------

V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def find_freezer(
    cgroup_text: str, members: Iterable[int], roots: Sequence[Path] = V2_ROOTS
) -> Path | str:
    """The cgroup.freeze file that freezes exactly the container, or why there is none.

    cgroup_text: /proc/<pid 1>/cgroup; members: the container's processes. The cgroup v2
    directory of pid 1 must have a freezer (the root has none), hold no process but the
    container's (else freezing it freezes others too), and be writable by the user."""
    path = next((line[3:] for line in cgroup_text.splitlines() if line.startswith("0::")), None)
    if path is None:
        return "this host has no cgroup v2 hierarchy, so there is no cgroup freezer"
    root = next((r for r in roots if (r / "cgroup.procs").exists()), None)
    if root is None:
        return "no cgroup v2 hierarchy is mounted, so there is no cgroup freezer"
    where = root / path.lstrip("/")
    freeze = where / "cgroup.freeze"
    if not freeze.exists():
        return f"it has no cgroup of its own to freeze (it is in {path}, which has no freezer)"
    try:
        procs = {int(p) for p in (where / "cgroup.procs").read_text().split()}
    except OSError as exc:
        return f"its cgroup {path} cannot be read: {exc.strerror}"
    if not procs <= set(members):
        return f"it has no cgroup of its own to freeze (it shares {path} with other processes)"
    if not os.access(freeze, os.W_OK):
        return f"its cgroup {path} is not delegated to you (cgroup.freeze is not writable)"
    return freeze


def container_freezer(cid: str, pid1: int) -> Path | str:
    """The cgroup.freeze of the container's own cgroup leaf (rootless.cgroups: the
    filesystem server is not in it, so it can still answer while the container is frozen),
    else that of the cgroup its pid 1 is in when it holds only the container
    (find_freezer), else why there is none."""
    from rootless.cgroups import recorded
    from rootless.lifecycle import runtime_dir

    cg = recorded(runtime_dir(cid))
    if cg is not None and (cg.container / "cgroup.freeze").exists():
        return cg.container / "cgroup.freeze"
    try:
        with open(f"/proc/{pid1}/cgroup") as f:
            cgroup = f.read()
    except OSError:
        cgroup = ""  # pid 1 is gone: find_freezer says there is no cgroup
    return find_freezer(cgroup, namespace_pids(pid1))
