"""User-namespace id maps, as pure functions.

Two maps, as Podman does:

* full: container 0 -> the host user U, container 1..N -> the user's subordinate range
  from /etc/subuid and /etc/subgid (N = 65535 when the range allows). Only the setuid
  helpers `newuidmap`/`newgidmap` (package `uidmap`) may write such a map for us.
* single: `0 U 1`. An unprivileged process may write that for a namespace it created,
  but only after denying setgroups(2) (the kernel's rule since 3.19, CVE-2014-8989), so
  in this mode the container can never call setgroups.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

FULL_SIZE = 65536  # container ids 0..65535, what images expect


@dataclass(frozen=True, slots=True)
class SubRange:
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class IdMap:
    """Container ids [0, size) and how to map them for host uid/gid."""

    uid: int
    gid: int
    subuid: SubRange | None  # None: single map
    subgid: SubRange | None

    @property
    def full(self) -> bool:
        return self.subuid is not None and self.subgid is not None

    @property
    def size(self) -> int:
        """How many container ids (from 0) are mapped for both uids and gids."""
        if self.subuid is None or self.subgid is None:
            return 1
        return 1 + min(self.subuid.count, self.subgid.count, FULL_SIZE - 1)

    def newuidmap_args(self) -> list[str]:
        assert self.subuid is not None
        return ["0", str(self.uid), "1", "1", str(self.subuid.start), str(self.size - 1)]

    def newgidmap_args(self) -> list[str]:
        assert self.subgid is not None
        return ["0", str(self.gid), "1", "1", str(self.subgid.start), str(self.size - 1)]


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
    ranges and the setuid helpers exist, else the single map; `single` always the latter."""
    uid, gid = os.getuid(), os.getgid()
    if mode == "single" or not full_map_possible():
        return IdMap(uid, gid, None, None)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    subuid = parse_subid(_read("/etc/subuid"), user, uid)
    subgid = parse_subid(_read("/etc/subgid"), user, uid)
    if subuid is None or subgid is None:
        return IdMap(uid, gid, None, None)
    return IdMap(uid, gid, subuid, subgid)


def full_map_possible() -> bool:
    return shutil.which("newuidmap") is not None and shutil.which("newgidmap") is not None
