"""`--memory`, `--cpus`, `--pids-limit`, `--ulimit`: what this host lets us enforce.

A delegated cgroup v2 subtree with the controllers (systemd's user@.service with
`Delegate=yes`) caps the whole container: rootless.cgroups. What no cgroup enforces
(cgroup v1, v2 without delegation, or a controller the parent does not pass down: this
machine's case), rsbox does with rlimits, set in the container's pid 1 and in `exec`'d
processes:

* `--pids-limit N` -> RLIMIT_NPROC. Since Linux 5.14 it counts the processes of a uid
  *in its user namespace* (ucounts), and the container has its own: the limit is the
  container's, not the host user's. A fork bomb hits EAGAIN at N.
* `--memory M` -> RLIMIT_AS on each process: no process may map more than M. Not a
  total for the container (a total needs the memory controller).
* `--cpus` and `--cpu-shares` need the cpu controller: not enforced, and said so.

`describe` is the one line `run` prints saying which is which.
"""

from __future__ import annotations

import re
import resource
from collections.abc import Sequence
from dataclasses import dataclass

from rootless.errors import UsageError

_SIZE = re.compile(r"(\d+)([bkmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MAX_LIMIT = (1 << 63) - 1  # rlim_t values above this overflow setrlimit
ULIMITS = {
    "core": resource.RLIMIT_CORE,
    "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA,
    "fsize": resource.RLIMIT_FSIZE,
    "memlock": resource.RLIMIT_MEMLOCK,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "stack": resource.RLIMIT_STACK,
    "as": resource.RLIMIT_AS,
}


def parse_size(text: str) -> int:
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise UsageError(f"invalid size {text!r}", hint="use a number with b, k, m or g: 64m")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_ulimit(text: str) -> tuple[int, int, int]:
    """`NAME=SOFT[:HARD]` as Docker's --ulimit, e.g. nofile=1024:2048."""
    name, eq, values = text.partition("=")
    if not eq or name not in ULIMITS:
        raise UsageError(
            f"invalid --ulimit {text!r}",
            hint=f"use NAME=SOFT[:HARD], NAME one of {sorted(ULIMITS)}",
        )
    soft_s, _, hard_s = values.partition(":")
    try:
        soft = -1 if soft_s == "-1" else int(soft_s)
        hard = soft if not hard_s else (-1 if hard_s == "-1" else int(hard_s))
    except ValueError:
        raise UsageError(f"invalid --ulimit {text!r}", hint="values are integers") from None
    if max(soft, hard) > MAX_LIMIT:
        raise UsageError(f"--ulimit {text!r}: value too large", hint="at most 2^63-1, or -1")
    soft = resource.RLIM_INFINITY if soft < 0 else soft
    hard = resource.RLIM_INFINITY if hard < 0 else hard
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        raise UsageError(f"--ulimit {text!r}: soft above hard", hint="use SOFT <= HARD")
    return ULIMITS[name], soft, hard


@dataclass(frozen=True, slots=True)
class Limits:
    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None
    ulimits: tuple[str, ...] = ()
    cpu_shares: int | None = None  # --cpu-shares: a relative weight (cgroup cpu.weight)

    @classmethod
    def from_flags(
        cls,
        memory: str | None,
        cpus: str | None,
        pids: int | None,
        ulimits: Sequence[str],
        cpu_shares: int | None = None,
    ) -> Limits:
        mem = parse_size(memory) if memory else None
        if mem is not None and mem < 6 << 20:
            raise UsageError("--memory must be at least 6m", hint="as Docker requires")
        if mem is not None and mem > MAX_LIMIT:
            raise UsageError(
                f"--memory {memory} is too large", hint="at most 2^63-1 bytes (8589934591g)"
            )
        cpu = None
        if cpus is not None:
            try:
                cpu = float(cpus)
            except ValueError:
                raise UsageError(f"invalid --cpus {cpus!r}", hint="e.g. --cpus 1.5") from None
        if pids is not None and not 0 < pids <= MAX_LIMIT:
            raise UsageError("--pids-limit must be positive", hint="e.g. --pids-limit 64")
        if cpu_shares is not None and not 2 <= cpu_shares <= 262144:
            raise UsageError("--cpu-shares must be 2 to 262144", hint="1024 is the default weight")
        for u in ulimits:
            parse_ulimit(u)
        return cls(mem, cpu, pids, tuple(ulimits), cpu_shares)

    @property
    def any(self) -> bool:
        return bool(self.memory or self.cpus or self.pids or self.ulimits or self.cpu_shares)

    def rlimits(self, by_cgroup: frozenset[str] | None = None) -> list[tuple[int, int, int]]:
        """The rlimits pid 1 and exec get; `by_cgroup`: limits the container's cgroup
        enforces ("memory", "pids"), which need none."""
        skip = by_cgroup or frozenset()
        out = [parse_ulimit(u) for u in self.ulimits]
        if self.pids is not None and "pids" not in skip:
            out.append((resource.RLIMIT_NPROC, self.pids, self.pids))
        if self.memory is not None and "memory" not in skip:
            out.append((resource.RLIMIT_AS, self.memory, self.memory))
        return out

    def describe(
        self, by_cgroup: frozenset[str] = frozenset(), why_not: str = "needs a delegated cgroup v2"
    ) -> str:
        """The one line `run` prints. `by_cgroup`: what the container's cgroup enforces
        (rootless.cgroups); the rest is rlimits, or nothing, for `why_not`."""
        done, not_done = [], []
        if self.pids is not None:
            if "pids" in by_cgroup:
                done.append(f"pids {self.pids} (cgroup pids.max)")
            else:
                done.append(f"pids {self.pids} (RLIMIT_NPROC, per container user namespace)")
        if self.memory is not None:
            if "memory" in by_cgroup:
                done.append(f"memory {self.memory >> 20}m for the container (cgroup memory.max)")
            else:
                done.append(f"memory {self.memory >> 20}m per process (RLIMIT_AS; not a total)")
        if self.cpus is not None and "cpus" in by_cgroup:
            done.append(f"cpus {self.cpus:g} (cgroup cpu.max)")
        if self.cpu_shares is not None and "cpu-shares" in by_cgroup:
            done.append(f"cpu-shares {self.cpu_shares} (cgroup cpu.weight)")
        if self.ulimits:
            done.append("ulimits " + ",".join(self.ulimits))
        if self.cpus is not None and "cpus" not in by_cgroup:
            not_done.append(f"cpus {self.cpus:g}")
        if self.cpu_shares is not None and "cpu-shares" not in by_cgroup:
            not_done.append(f"cpu-shares {self.cpu_shares}")
        line = "rsbox: limits enforced: " + ("; ".join(done) or "none")
        if not_done:
            line += f"; NOT enforced: {', '.join(not_done)} ({why_not})"
        return line
