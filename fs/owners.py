"""Emulated process credentials, for true ownership under a single-id user namespace.

With only uid/gid 0 mapped (no /etc/subuid range), the kernel refuses every id but 0:
chown(f, 1000) and setresuid(42, ...) fail with EINVAL before the union sees them, and
every container process really stays uid 0 with its capabilities. In fakeroot mode the
launcher (rootless/launch/fakeroot.py) answers the set*id and get*id syscalls of the
container through seccomp user notification from this table, and the union gives the
files a process creates its emulated fsuid/fsgid (`CredentialTable.fs_owner`).

What is emulated, and its limits:
- Per process (thread group), POSIX's real/effective/saved/filesystem uid and gid and the
  supplementary groups, changed by the rules of the kernel's kernel/sys.c. "Privileged"
  (CAP_SETUID/CAP_SETGID) is euid 0, CAP_CHOWN is fsuid 0: what the kernel's
  capability emulation on id changes (cap_emulate_setxuid) gives a process that started
  as root with every capability. So after apt drops to _apt, setuid(0) fails with EPERM.
- The kernel's credentials do not change: a process that "is" _apt keeps root's
  capabilities for everything else (file permission checks, kill, ...). The emulation
  is for what programs verify and for the owners recorded in the image, not a boundary;
  the user namespace is the boundary, as before.
- A process inherits its parent's credentials when it is first seen; a process that
  changes its credentials first gives its children that have no record yet a copy of
  the old ones, which is what fork gave them. A child that was never seen and whose parent
  exited is judged by its new parent (the container's init): wrong only if the dead
  parent had changed credentials after the fork and the child never made a notified call.
- Records are keyed by thread-group id and the process's start time (so a reused pid never
  inherits a dead process's record), and dropped once their process is gone (`sweep`,
  whenever the table has doubled). Every process seen gets one, so that a second call
  costs one read of /proc/PID/stat.

Pids: FUSE requests and seccomp notifications both carry the calling *thread's* id in
the pid namespace of the process that mounted /dev/fuse and that receives the
notifications, which is P1 in both cases (outside the container's pid namespace). So one
table, read through P1's /proc, serves both.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, replace
from pathlib import Path

UNCHANGED = 0xFFFFFFFF  # (uid_t)-1: "leave this id as it is"
NGROUPS_MAX = 65536
MAX_ANCESTORS = 64  # a parent chain longer than this is not the container's


def _perm() -> OSError:
    return OSError(errno.EPERM, os.strerror(errno.EPERM))


def check_id(value: int, ids: range) -> int:
    """An id argument as the kernel reads it (low 32 bits); EINVAL if the container's map
    (the full map a subordinate range would give) has no such id."""
    value &= 0xFFFFFFFF
    if value != UNCHANGED and value not in ids:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    return value


@dataclass(frozen=True, slots=True)
class Credentials:
    ruid: int = 0
    euid: int = 0
    suid: int = 0
    fsuid: int = 0
    rgid: int = 0
    egid: int = 0
    sgid: int = 0
    fsgid: int = 0
    groups: tuple[int, ...] = ()

    @property
    def may_set_ids(self) -> bool:  # CAP_SETUID, CAP_SETGID
        return self.euid == 0

    @property
    def may_chown(self) -> bool:  # CAP_CHOWN (a filesystem capability: fsuid decides)
        return self.fsuid == 0


ROOT = Credentials()

# --- the set*id rules of kernel/sys.c (ids already checked with `check_id`) ---------------


def _set(old: tuple[int, int, int], new: int, privileged: bool) -> tuple[int, int, int]:
    """setuid/setgid on (real, effective, saved): all three when privileged, else only the
    effective one, to the real or the saved id."""
    r, _, s = old
    if privileged:
        return new, new, new
    if new in (r, s):
        return r, new, s
    raise _perm()


def setuid(c: Credentials, uid: int) -> Credentials:
    ruid, euid, suid = _set((c.ruid, c.euid, c.suid), uid, c.may_set_ids)
    return replace(c, ruid=ruid, euid=euid, suid=suid, fsuid=euid)


def setgid(c: Credentials, gid: int) -> Credentials:
    rgid, egid, sgid = _set((c.rgid, c.egid, c.sgid), gid, c.may_set_ids)
    return replace(c, rgid=rgid, egid=egid, sgid=sgid, fsgid=egid)


def _setre(
    r_old: int, e_old: int, s_old: int, r: int, e: int, privileged: bool
) -> tuple[int, int, int]:
    ruid, euid, suid = r_old, e_old, s_old
    if r != UNCHANGED:
        if not privileged and r not in (r_old, e_old):
            raise _perm()
        ruid = r
    if e != UNCHANGED:
        if not privileged and e not in (r_old, e_old, s_old):
            raise _perm()
        euid = e
    if r != UNCHANGED or (e != UNCHANGED and e != r_old):
        suid = euid
    return ruid, euid, suid


def setreuid(c: Credentials, r: int, e: int) -> Credentials:
    ruid, euid, suid = _setre(c.ruid, c.euid, c.suid, r, e, c.may_set_ids)
    return replace(c, ruid=ruid, euid=euid, suid=suid, fsuid=euid)


def setregid(c: Credentials, r: int, e: int) -> Credentials:
    rgid, egid, sgid = _setre(c.rgid, c.egid, c.sgid, r, e, c.may_set_ids)
    return replace(c, rgid=rgid, egid=egid, sgid=sgid, fsgid=egid)


def _setres(
    old: tuple[int, int, int], new: tuple[int, int, int], privileged: bool
) -> tuple[int, int, int]:
    if not privileged and any(v != UNCHANGED and v not in old for v in new):
        raise _perm()
    r, e, s = (o if v == UNCHANGED else v for o, v in zip(old, new, strict=True))
    return r, e, s


def setresuid(c: Credentials, r: int, e: int, s: int) -> Credentials:
    ruid, euid, suid = _setres((c.ruid, c.euid, c.suid), (r, e, s), c.may_set_ids)
    return replace(c, ruid=ruid, euid=euid, suid=suid, fsuid=euid)


def setresgid(c: Credentials, r: int, e: int, s: int) -> Credentials:
    rgid, egid, sgid = _setres((c.rgid, c.egid, c.sgid), (r, e, s), c.may_set_ids)
    return replace(c, rgid=rgid, egid=egid, sgid=sgid, fsgid=egid)


def setfsuid(c: Credentials, uid: int) -> tuple[Credentials, int]:
    """(new credentials, the old fsuid: what setfsuid returns; it never fails)."""
    if uid != UNCHANGED and (c.may_set_ids or uid in (c.ruid, c.euid, c.suid, c.fsuid)):
        return replace(c, fsuid=uid), c.fsuid
    return c, c.fsuid


def setfsgid(c: Credentials, gid: int) -> tuple[Credentials, int]:
    if gid != UNCHANGED and (c.may_set_ids or gid in (c.rgid, c.egid, c.sgid, c.fsgid)):
        return replace(c, fsgid=gid), c.fsgid
    return c, c.fsgid


def setgroups(c: Credentials, groups: tuple[int, ...]) -> Credentials:
    if not c.may_set_ids:
        raise _perm()
    return replace(c, groups=tuple(sorted(groups)))  # the kernel keeps them sorted


def may_chown(c: Credentials, owner: tuple[int, int], uid: int, gid: int) -> bool:
    """chown(2)'s permission rule (fs/attr.c chown_ok/chgrp_ok): CAP_CHOWN may do anything;
    the owner may keep the uid and give the file one of its own groups."""
    if c.may_chown:
        return True
    mine = owner[0] == c.fsuid
    uid_ok = uid == UNCHANGED or (mine and uid == owner[0])
    gid_ok = gid == UNCHANGED or (mine and (gid in (owner[1], c.fsgid) or gid in c.groups))
    return uid_ok and gid_ok


# --- the table ----------------------------------------------------------------------------


def _stat_fields(proc: Path, pid: int) -> tuple[int, int] | None:
    """(ppid, start time) from /proc/PID/stat, or None once the process is gone."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # the name may hold spaces and ")"
    return int(fields[1]), int(fields[19])  # fields 4 and 22 of proc(5)


def _tgid(proc: Path, tid: int) -> int | None:
    try:
        text = (proc / str(tid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    return None


def _children(proc: Path, pid: int) -> list[int]:
    """Every child of every thread of `pid` (/proc/PID/task/TID/children)."""
    out: list[int] = []
    try:
        tasks = os.listdir(proc / str(pid) / "task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out += [
                int(p) for p in (proc / str(pid) / "task" / tid / "children").read_text().split()
            ]
        except OSError:
            continue
    return out


class CredentialTable:
    """Emulated credentials per process, as P1 sees the container's pids (module essay)."""

    def __init__(self, proc: Path = Path("/proc"), outside: int = 0) -> None:
        """`outside`: the pid (as `proc` shows it) whose children are the container's
        edge: P1, parent of P2, parent of the container's pid 1."""
        self.proc = proc
        self.outside = outside
        self._records: dict[int, tuple[int, Credentials]] = {}  # tgid -> (start, creds)
        self._next_sweep = 1024
        self.anyone_dropped = False  # some process set a non-root fsuid/fsgid (fast path)

    def __len__(self) -> int:
        return len(self._records)

    def _recorded(self, pid: int, start: int) -> Credentials | None:
        rec = self._records.get(pid)
        if rec is None:
            return None
        if rec[0] != start:  # the pid was reused: the record belonged to a dead process
            del self._records[pid]
            return None
        return rec[1]

    def lookup(self, tid: int) -> tuple[int, Credentials] | None:
        """(thread-group id, credentials) of thread `tid`, None if it is gone. A process
        without a record gets its nearest recorded ancestor's (root's if none, up to the
        container's edge), and keeps a copy: next time one /proc read answers."""
        fields = _stat_fields(self.proc, tid)
        if fields is None:
            return None
        rec = self._records.get(tid)
        if rec is not None and rec[0] == fields[1]:
            return tid, rec[1]  # a recorded process (its main thread): the common case
        tgid = _tgid(self.proc, tid)
        if tgid is None:
            return None
        if tgid != tid:
            fields = _stat_fields(self.proc, tgid)
            if fields is None:
                return None
            known = self._recorded(tgid, fields[1])
            if known is not None:
                return tgid, known
        ppid, start = fields
        found, pid = ROOT, ppid
        for _ in range(MAX_ANCESTORS):
            if pid <= 0 or pid == self.outside:
                break
            up = _stat_fields(self.proc, pid)
            if up is None:
                break
            creds = self._recorded(pid, up[1])
            if creds is not None:
                found = creds
                break
            pid = up[0]
        self._remember(tgid, start, found)
        return tgid, found

    def _remember(self, tgid: int, start: int, creds: Credentials) -> None:
        self._records[tgid] = (start, creds)
        if len(self._records) >= self._next_sweep:
            self.sweep()
            self._next_sweep = 2 * len(self._records) + 1024

    def set(self, tgid: int, new: Credentials) -> None:
        """Record `new` for `tgid`; its unrecorded children keep the credentials they had."""
        fields = _stat_fields(self.proc, tgid)
        if fields is None:
            return
        old = self._recorded(tgid, fields[1]) or ROOT
        if old != new:
            for child in _children(self.proc, tgid):
                cf = _stat_fields(self.proc, child)
                if cf is not None and self._recorded(child, cf[1]) is None:
                    self._remember(child, cf[1], old)
        if new.fsuid or new.fsgid:
            self.anyone_dropped = True
        self._remember(tgid, fields[1], new)

    def fs_owner(self, tid: int) -> tuple[int, int] | None:
        """The (fsuid, fsgid) a file created by thread `tid` gets, when not root's."""
        if not self.anyone_dropped or tid <= 0:
            return None
        found = self.lookup(tid)
        if found is None:
            return None
        c = found[1]
        return (c.fsuid, c.fsgid) if c.fsuid or c.fsgid else None

    def sweep(self) -> None:
        """Forget the records of processes that are gone."""
        for pid, (start, _) in list(self._records.items()):
            fields = _stat_fields(self.proc, pid)
            if fields is None or fields[1] != start:
                del self._records[pid]
