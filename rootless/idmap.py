"""User-namespace id maps, as pure functions.

Two maps, as Podman does:

* full: container 0 -> the host user U, container 1..N -> the user's subordinate range
  from /etc/subuid and /etc/subgid (N = 65535 when the range allows). Only the setuid
  helpers `newuidmap`/`newgidmap` (package `uidmap`) may write such a map for us.
* single: `0 U 1`. An unprivileged process may write that for a namespace it created,
  but only after denying setgroups(2) (the kernel's rule since 3.19, CVE-2014-8989), so
  in this mode the container can never call setgroups.

`--userns keep-id` (Podman's name and meaning) moves the host user from container id 0 to
its own ids: container U -> host U (and G -> G); with a subordinate range the other
container ids 0..65535 take the range in order (0..U-1, then U+1..), without one the map
is the single line `U U 1`, which an unprivileged process may write as well (the kernel
only asks that the one outside id is its own). Which container id is the host user is
`IdMap.inside_uid`/`inside_gid`: every part of the launcher that used to assume 0 asks it.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

FULL_SIZE = 65536  # container ids 0..65535, what images expect


@dataclass(frozen=True, slots=True)
class SubRange:
    start: int
    count: int


class MapLine(NamedTuple):
    """One line of /proc/PID/uid_map: container ids [inside, inside+length) are host ids
    [outside, outside+length)."""

    inside: int
    outside: int
    length: int


@dataclass(frozen=True, slots=True)
class IdSet:
    """The container ids a map covers (what `in` asks of fs.union.UnionSpec.mapped_ids)."""

    ranges: tuple[range, ...]

    @classmethod
    def of(cls, lines: tuple[MapLine, ...]) -> IdSet:
        return cls(tuple(range(line.inside, line.inside + line.length) for line in lines))

    def __contains__(self, value: object) -> bool:
        return any(value in r for r in self.ranges)


def map_lines(host: int, inside: int, sub: SubRange | None, size: int) -> tuple[MapLine, ...]:
    """The map for one kind of id: `inside` is the host id `host`; with a subordinate range
    the container ids [0, size) other than `inside` take it in order."""
    if sub is None:
        return (MapLine(inside, host, 1),)
    n = size - 1  # subordinate ids used
    if inside >= n:  # a host id above the range: 0..n-1 from the range, then ours
        return (MapLine(0, sub.start, n), MapLine(inside, host, 1))
    lines = [MapLine(0, sub.start, inside)] if inside > 0 else []
    lines.append(MapLine(inside, host, 1))
    lines.append(MapLine(inside + 1, sub.start + inside, n - inside))
    return tuple(lines)


def proc_map_text(lines: tuple[MapLine, ...]) -> str:
    """What to write to /proc/PID/uid_map or gid_map."""
    return "".join(f"{a} {b} {c}\n" for a, b, c in lines)


@dataclass(frozen=True, slots=True)
class IdMap:
    """Container ids [0, size) and how to map them for host uid/gid; `keep_id`: the host
    user is its own ids inside, not 0 (the module's note)."""

    uid: int
    gid: int
    subuid: SubRange | None  # None: single map
    subgid: SubRange | None
    keep_id: bool = False

    @property
    def full(self) -> bool:
        return self.subuid is not None and self.subgid is not None

    @property
    def size(self) -> int:
        """How many container ids (from 0) are mapped for both uids and gids."""
        if self.subuid is None or self.subgid is None:
            return 1
        return 1 + min(self.subuid.count, self.subgid.count, FULL_SIZE - 1)

    @property
    def inside_uid(self) -> int:
        """The container uid that is the host user."""
        return self.uid if self.keep_id else 0

    @property
    def inside_gid(self) -> int:
        return self.gid if self.keep_id else 0

    def uid_lines(self) -> tuple[MapLine, ...]:
        return map_lines(self.uid, self.inside_uid, self.subuid if self.full else None, self.size)

    def gid_lines(self) -> tuple[MapLine, ...]:
        return map_lines(self.gid, self.inside_gid, self.subgid if self.full else None, self.size)

    def mapped_uids(self) -> IdSet:
        return IdSet.of(self.uid_lines())

    def mapped_gids(self) -> IdSet:
        return IdSet.of(self.gid_lines())

    @property
    def unmapped_as(self) -> tuple[int, int]:
        """The uid and gid the union shows an owner outside the map as. On the single map
        `0 U 1` that is root; on keep-id's single map `U U 1` it is the user, not the
        kernel's overflow id 65534: the kernel grants no capability over an inode whose
        owner the namespace does not map (capable_wrt_inode_uidgid), so P3 could not make
        a mount point (`-v SRC:/new`, /etc/hosts) in the image's directories, nor the user
        anything outside /tmp. Without a subordinate range you are the only user there is,
        as on the host, where every file of the container is yours. The image's owners stay
        in the union's metadata either way (commit keeps them)."""
        if 0 in self.mapped_uids():
            return (0, 0)
        return (self.inside_uid, self.inside_gid)

    def newuidmap_args(self) -> list[str]:
        return [str(v) for line in self.uid_lines() for v in line]

    def newgidmap_args(self) -> list[str]:
        return [str(v) for line in self.gid_lines() for v in line]


def parse_subid(text: str, user: str, uid: int) -> SubRange | None:
    """First `name:start:count` or `uid:start:count` line for this user in /etc/sub[ug]id."""
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            return SubRange(start, count)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def host_idmap(mode: str) -> IdMap:
    """The map for `--userns MODE`: `auto` takes the full map when the user has subordinate
    ranges and the setuid helpers exist, else the single map; `single` always the latter;
    `keep-id` is `auto` with the host user at its own ids (the module's note)."""
    uid, gid = os.getuid(), os.getgid()
    keep = mode == "keep-id"
    if mode == "single" or not full_map_possible():
        return IdMap(uid, gid, None, None, keep)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    subuid = parse_subid(_read("/etc/subuid"), user, uid)
    subgid = parse_subid(_read("/etc/subgid"), user, uid)
    if subuid is None or subgid is None:
        return IdMap(uid, gid, None, None, keep)
    return IdMap(uid, gid, subuid, subgid, keep)


def full_map_possible() -> bool:
    return shutil.which("newuidmap") is not None and shutil.which("newgidmap") is not None
