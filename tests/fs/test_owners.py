"""fs.owners: the set*id rules of kernel/sys.c and the credential table, without a kernel.

The same rules are checked against the real kernel end to end (tests/e2e/test_fakeroot.py
runs one probe under a full map, where the kernel answers, and under fakeroot's
emulation, and wants the same output)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from fs import owners
from fs.owners import ROOT, UNCHANGED, Credentials, CredentialTable

APT = 42


def _eperm(fn: object, *args: object) -> None:
    with pytest.raises(OSError) as exc:
        fn(*args)  # type: ignore[operator]
    assert exc.value.errno == errno.EPERM


def test_root_setuid_sets_every_uid_and_cannot_come_back() -> None:
    c = owners.setuid(ROOT, APT)
    assert (c.ruid, c.euid, c.suid, c.fsuid) == (APT, APT, APT, APT)
    _eperm(owners.setuid, c, 0)
    _eperm(owners.setresuid, c, UNCHANGED, 0, UNCHANGED)
    _eperm(owners.setgroups, c, (0,))
    assert owners.setuid(c, APT) == c  # to an id it holds: allowed


def test_seteuid_keeps_the_saved_id_so_root_can_return() -> None:
    c = owners.setresuid(ROOT, UNCHANGED, 1000, UNCHANGED)  # glibc's seteuid(1000)
    assert (c.ruid, c.euid, c.suid, c.fsuid) == (0, 1000, 0, 1000)
    assert not c.may_set_ids and not c.may_chown
    back = owners.setuid(c, 0)  # unprivileged: 0 is the real and saved uid
    assert (back.ruid, back.euid, back.suid) == (0, 0, 0) and back.may_chown


def test_setreuid_moves_the_saved_id_with_the_effective_one() -> None:
    c = owners.setreuid(ROOT, UNCHANGED, 1000)  # euid differs from ruid: suid follows
    assert (c.ruid, c.euid, c.suid) == (0, 1000, 1000)
    c = owners.setreuid(ROOT, 1000, UNCHANGED)  # ruid given: suid = euid
    assert (c.ruid, c.euid, c.suid) == (1000, 0, 0)
    dropped = owners.setreuid(ROOT, 1000, 1000)
    _eperm(owners.setreuid, dropped, 0, UNCHANGED)


def test_group_changes_need_an_effective_root() -> None:
    c = owners.setgroups(ROOT, (100, 5, 42))
    assert c.groups == (5, 42, 100)  # the kernel keeps them sorted
    c = owners.setresgid(c, APT, APT, APT)
    assert (c.rgid, c.egid, c.sgid, c.fsgid) == (APT, APT, APT, APT)
    user = owners.setuid(c, APT)
    _eperm(owners.setgid, user, 0)
    assert owners.setgid(user, APT) == user


def test_setfsuid_answers_the_old_id_and_never_fails() -> None:
    c, old = owners.setfsuid(ROOT, 1000)
    assert (old, c.fsuid, c.euid) == (0, 1000, 0)
    user = owners.setuid(ROOT, 1000)
    same, old = owners.setfsuid(user, 0)  # not allowed: unchanged, no error
    assert (same, old) == (user, 1000)
    probe, old = owners.setfsgid(ROOT, UNCHANGED)  # glibc's "what is it?"
    assert (probe, old) == (ROOT, 0)


def test_chown_rules_follow_chown_ok_and_chgrp_ok() -> None:
    bob = Credentials(1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, (1000, 2000))
    assert owners.may_chown(ROOT, (1000, 1000), 5, 5)
    assert owners.may_chown(bob, (1000, 1000), UNCHANGED, 2000)  # a group of his
    assert owners.may_chown(bob, (1000, 1000), 1000, 1000)
    assert not owners.may_chown(bob, (1000, 1000), 1001, UNCHANGED)  # giving away
    assert not owners.may_chown(bob, (1000, 1000), UNCHANGED, 3000)  # not his group
    assert not owners.may_chown(bob, (0, 0), 0, UNCHANGED)  # not his file


def test_ids_outside_the_full_map_are_invalid() -> None:
    ids = range(0, 65536)
    assert owners.check_id(0xFFFFFFFF, ids) == UNCHANGED
    assert owners.check_id((1 << 32) + 7, ids) == 7  # the kernel reads 32 bits
    with pytest.raises(OSError) as exc:
        owners.check_id(70000, ids)
    assert exc.value.errno == errno.EINVAL


# --- the table, on a /proc made of files -------------------------------------------------


class FakeProc:
    """Enough of /proc for the table: stat (ppid, start time), status (Tgid), children."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def spawn(self, pid: int, ppid: int, start: int, threads: tuple[int, ...] = ()) -> None:
        d = self.root / str(pid)
        (d / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
        fields = ["S", str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 10
        (d / "stat").write_text(f"{pid} (a (weird) name) {' '.join(fields)}\n")
        (d / "status").write_text(f"Name:\tx\nTgid:\t{pid}\nPid:\t{pid}\n")
        (d / "task" / str(pid) / "children").write_text("")
        for tid in threads:  # /proc/TID of a thread: its own start time, the same parent
            t = self.root / str(tid)
            t.mkdir(exist_ok=True)
            (t / "stat").write_text(f"{tid} (x) {' '.join(fields[:19])} {start + 1} 0\n")
            (t / "status").write_text(f"Name:\tx\nTgid:\t{pid}\nPid:\t{tid}\n")
        parent = self.root / str(ppid) / "task" / str(ppid) / "children"
        if parent.exists():
            parent.write_text(parent.read_text() + f"{pid} ")

    def exit(self, pid: int) -> None:
        import shutil

        shutil.rmtree(self.root / str(pid))


@pytest.fixture()
def proc(tmp_path: Path) -> FakeProc:
    p = FakeProc(tmp_path)
    p.spawn(1, 0, 100)
    return p


def test_a_new_process_inherits_its_parents_credentials(proc: FakeProc) -> None:
    table = CredentialTable(proc.root)
    proc.spawn(10, 1, 200, threads=(11,))
    apt = owners.setuid(ROOT, APT)
    table.set(10, apt)
    proc.spawn(20, 10, 300)
    assert table.lookup(20) == (20, apt)
    assert table.lookup(11) == (10, apt)  # a thread speaks for its process
    assert table.fs_owner(20) == (APT, 0)  # setuid moved the fsuid, not the fsgid


def test_a_child_keeps_what_it_had_when_the_parent_changes(proc: FakeProc) -> None:
    table = CredentialTable(proc.root)
    proc.spawn(10, 1, 200)
    proc.spawn(20, 10, 300)  # forked while 10 was root, never seen since
    table.set(10, owners.setuid(ROOT, APT))
    assert table.lookup(20) == (20, ROOT)
    assert table.lookup(10) == (10, owners.setuid(ROOT, APT))


def test_a_reused_pid_does_not_inherit_a_dead_processes_record(proc: FakeProc) -> None:
    table = CredentialTable(proc.root)
    proc.spawn(10, 1, 200)
    table.set(10, owners.setuid(ROOT, APT))
    proc.exit(10)
    proc.spawn(10, 1, 999)  # same pid, another process
    assert table.lookup(10) == (10, ROOT)


def test_files_get_the_emulated_fs_ids_and_sweep_forgets_the_dead(proc: FakeProc) -> None:
    table = CredentialTable(proc.root)
    proc.spawn(10, 1, 200)
    assert table.fs_owner(10) is None  # nobody dropped anything: no /proc read at all
    table.set(10, owners.setresgid(owners.setfsuid(ROOT, 1000)[0], 7, 7, 7))
    assert table.fs_owner(10) == (1000, 7)
    assert len(table) == 1
    proc.exit(10)
    assert table.fs_owner(10) is None
    table.sweep()
    assert len(table) == 0


# --- Union.chown: what a chown answered by fakeroot records -------------------------------


def test_union_chown_records_true_owners_and_drops_what_the_kernel_drops(tmp_path: Path) -> None:
    import stat

    from fs.meta import EntryMeta
    from fs.union import ROOT_INODE, Union, UnionSpec
    from tests.fs.layers import make_layer

    caps = {"security.capability": b"\x01\x00\x00\x02" + b"\x00" * 16}
    meta = {
        "suid": EntryMeta(0, 0, stat.S_IFREG | 0o6755, xattrs=caps),
        "sgid-noexec": EntryMeta(0, 0, stat.S_IFREG | 0o2644),
        "dir": EntryMeta(0, 0, stat.S_IFDIR | 0o2755),
    }
    lower = make_layer(tmp_path / "l0", {"suid": "x", "sgid-noexec": "y", "dir/": ""}, meta)
    # A single-id map shows every other id as 0; the truth is kept all the same.
    u = Union(UnionSpec((lower,), tmp_path / "upper", range(0, 1)))
    ino = {n: u.lookup(ROOT_INODE, n).ino for n in meta}
    shown = u.chown(ino["suid"], 1000, None)
    assert (shown.uid, shown.gid, shown.mode) == (0, 0, stat.S_IFREG | 0o755)
    assert u.owner(ino["suid"]) == (1000, 0)
    assert u.listxattr(ino["suid"]) == []  # the file capability goes too
    u.chown(ino["sgid-noexec"], None, 42)  # setgid without group-exec: mandatory locking
    assert u.getattr(ino["sgid-noexec"]).mode == stat.S_IFREG | 0o2644
    u.chown(ino["dir"], 7, 7)  # directories keep their bits
    assert (u.owner(ino["dir"]), u.getattr(ino["dir"]).mode) == ((7, 7), stat.S_IFDIR | 0o2755)
