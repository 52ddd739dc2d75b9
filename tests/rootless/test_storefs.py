"""rootless.storefs: the filesystem under a store and what the store does about it."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from rootless import syscalls as sc
from rootless.errors import StoreError
from rootless.store import Store
from rootless.storefs import (
    FILESYSTEMS,
    GROUP_WRITES,
    Kind,
    StoreFs,
    classify,
    detect,
    plan,
    private_dir,
    probe_user_xattrs,
)


@pytest.mark.parametrize(
    ("f_type", "name", "kind"),
    [
        (0x6969, "nfs", Kind.NETWORK),
        (0x0BD00BD0, "lustre", Kind.NETWORK),
        (0x47504653, "gpfs", Kind.NETWORK),
        (0x19830326, "beegfs", Kind.NETWORK),
        (0xFF534D42, "cifs", Kind.NETWORK),
        (0xFE534D42, "smb2", Kind.NETWORK),
        (0x65735546, "fuse", Kind.FUSE),
        (0xEF53, "ext4", Kind.LOCAL),
        (0x58465342, "xfs", Kind.LOCAL),
        (0x01021994, "tmpfs", Kind.LOCAL),
    ],
)
def test_the_f_type_table(f_type: int, name: str, kind: Kind) -> None:
    assert classify(f_type) == (name, kind)


def test_an_unknown_f_type_is_named_by_its_number_and_gets_the_safe_choices() -> None:
    name, kind = classify(0x12345678)
    assert (name, kind) == ("unknown (0x12345678)", Kind.UNKNOWN)
    choice = plan(StoreFs(name, kind, user_xattrs=True), shared=False)
    assert choice.journal_mode == "delete" and choice.local_uppers


def test_every_magic_is_32_bits_and_named_once() -> None:
    assert all(0 < m < 1 << 32 for m in FILESYSTEMS)
    names = [n for n, _ in FILESYSTEMS.values()]
    assert len(names) == len(set(names))


def test_statfs_names_real_filesystems(tmp_path: Path) -> None:
    assert classify(sc.statfs_type("/proc"))[0].startswith("unknown")  # proc: not a store
    assert classify(sc.statfs_type("/dev/shm")) == ("tmpfs", Kind.LOCAL)
    assert sc.statfs_type(tmp_path) in FILESYSTEMS  # the suite runs on a known local fs
    with pytest.raises(FileNotFoundError):
        sc.statfs_type(tmp_path / "missing")


@pytest.mark.parametrize(
    ("kind", "xattrs", "shared", "journal", "local"),
    [
        (Kind.LOCAL, True, False, "wal", False),
        (Kind.LOCAL, True, True, "delete", False),  # others read it: no -shm for them
        (Kind.LOCAL, False, False, "wal", False),  # no user xattrs: the union uses files
        (Kind.NETWORK, True, False, "delete", True),
        (Kind.NETWORK, False, True, "delete", True),
        (Kind.FUSE, True, False, "delete", True),
    ],
)
def test_plan(kind: Kind, xattrs: bool, shared: bool, journal: str, local: bool) -> None:
    choice = plan(StoreFs("x", kind, xattrs), shared)
    assert (choice.journal_mode, choice.local_uppers) == (journal, local)
    assert choice.journal_why and choice.uppers_why


def test_the_xattr_probe_is_real_and_leaves_nothing(tmp_path: Path) -> None:
    assert probe_user_xattrs(tmp_path) is True  # ext4/tmpfs here take user.* xattrs
    assert list(tmp_path.iterdir()) == []
    # /proc takes no files at all: the probe's failure is an error, not a "no"
    with pytest.raises(OSError):
        probe_user_xattrs(Path("/proc"))


def test_the_probe_runs_once_per_store_and_again_when_the_device_changes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    (root / "cache").mkdir()
    calls: list[Path] = []

    def probe(d: Path) -> bool:
        calls.append(d)
        return False

    first = detect(root, probe)
    assert detect(root, probe) == first and first.user_xattrs is False
    assert calls == [root / "tmp"]
    cache = root / "cache" / "filesystem.json"
    cache.write_text(cache.read_text().replace('"dev": ', '"dev": 1'))  # another device
    detect(root, probe)
    assert len(calls) == 2


def test_tmp_root_takes_the_writable_layers(tmp_path: Path, busybox_tar: Path) -> None:
    from rootless.image_import import import_rootfs

    local = tmp_path / "local"
    with Store.open(tmp_path / "root", tmp_root=local) as s:
        assert s.plan is not None and s.plan.local_uppers
        image = import_rootfs(s, busybox_tar, "busybox")
        c = s.create_container(image, "web", {})
        assert c.upper.is_dir() and c.upper.is_relative_to(local)
        assert os.readlink(c.dir / "upper") == str(c.upper)
        assert s.container("web") == c
        (c.upper / "written").write_text("x")
        s.remove_container("web")
        assert list(local.iterdir()) == [] and not c.dir.exists()
    # without --tmp-root, on a local filesystem, they stay in the store
    with Store.open(tmp_path / "root2") as s:
        c = s.create_container(import_rootfs(s, busybox_tar, "busybox"), "web", {})
        assert c.upper == c.dir / "upper" and not c.upper.is_symlink()


def test_a_tmp_root_that_others_can_write_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(StoreError, match="not a directory private to you"):
        private_dir(d)
    d.chmod(0o700)
    assert private_dir(d) == d
    assert stat.S_IMODE(private_dir(tmp_path / "new" / "dir").stat().st_mode) == 0o700


def _journal(root: Path) -> str:
    db = sqlite3.connect(f"file:{root / 'store.db'}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        db.close()


def test_a_private_store_runs_wal_and_a_shared_one_a_rollback_journal(tmp_path: Path) -> None:
    root = tmp_path / "root"
    Store.open(root).close()
    assert _journal(root) == "wal"
    root.chmod(0o711)
    with Store.open(root) as s:
        assert s.plan is not None and s.plan.journal_mode == "delete"
    assert _journal(root) == "delete"
    assert not (root / "store.db-wal").exists() and not (root / "store.db-shm").exists()
    root.chmod(0o700)
    Store.open(root).close()
    assert _journal(root) == "wal"


def test_a_group_writable_store_opens_its_own_files_to_the_group(
    tmp_path: Path, busybox_tar: Path
) -> None:
    """What the group's members write into (tests/multiuser pulls as one of them); the
    blobs and layers stay read-only, and a store that is not group-writable gets nothing."""
    from rootless.image_import import import_rootfs

    private, group = tmp_path / "private", tmp_path / "group"
    group.mkdir(mode=0o775)
    group.chmod(0o2775)  # as the README says; mkdir's mode is cut by the umask
    for root in (private, group):
        with Store.open(root) as s:
            import_rootfs(s, busybox_tar, "bb")
        Store.open(root).close()  # a second command: the lock files exist now
    for sub in GROUP_WRITES:
        assert os.stat(group / sub).st_mode & stat.S_IWGRP, sub
        assert not os.stat(private / sub).st_mode & stat.S_IWGRP, sub
    written = [p for p in group.glob("*/*/*") if p.parts[-3] in ("blobs", "layers")]
    assert written and not [p for p in written if os.stat(p).st_mode & 0o022]


_IMPORT = """
import sys
from pathlib import Path
from rootless.store import Store
from rootless.image_import import import_rootfs
with Store.open(Path(sys.argv[1])) as s:
    print(import_rootfs(s, Path(sys.argv[2]), sys.argv[3]).id)
"""


def test_concurrent_writers_keep_a_rollback_journal_store_consistent(
    tmp_path: Path, busybox_tar: Path
) -> None:
    """The locking of the mode chosen for network filesystems (no NFS server in this
    kernel: the same journal mode and fcntl locks, on the local disk)."""
    import subprocess
    import sys

    root = tmp_path / "root"
    Store.open(root).close()
    root.chmod(0o711)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _IMPORT, str(root), str(busybox_tar), f"img{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1] for o in outs]
    assert _journal(root) == "delete"
    with Store.open(root) as s:
        assert sorted(n for i in s.images() for n in i.names) == [
            f"localhost/img{i}:latest" for i in range(4)
        ]
        assert len(list((root / "layers").iterdir())) == 1
    db = sqlite3.connect(root / "store.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
