"""The union's metadata in files by inode (fs.inode_meta), for an upper whose filesystem
keeps no user.* xattrs. The unions here are told so (`user_xattrs=False`) on the test's
own directory; tests/fs/test_conformance.py's "noxattr" run finds it by itself on a real
ramfs, through FUSE."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from fs.changes import Entry, Stack, upper_changes
from fs.meta import EntryMeta
from fs.resolve import META_DIR, OVERRIDE_XATTR
from fs.union import ROOT_INODE
from tests.fs.upper import Scratch

BASE = {"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "usr/bin/tool": "#!/bin/sh\n"}


def _entries(s: Scratch) -> dict[str, Entry]:
    items = upper_changes(Stack.of(s.lowers, s.upper)).items
    return {i.path: i for i in items if isinstance(i, Entry)}


def _files(s: Scratch) -> set[str]:
    return {n for n in os.listdir(s.upper / META_DIR) if not n.startswith(".tmp")}


def _no_xattrs_written(root: Path) -> bool:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in (dirpath, *(os.path.join(dirpath, f) for f in (*dirnames, *filenames))):
            if not os.path.islink(n) and OVERRIDE_XATTR in os.listxattr(n):
                return False
    return True


def test_owners_modes_devices_and_xattrs_live_in_files_and_commit_reads_them(
    tmp_path: Path,
) -> None:
    s = Scratch(tmp_path, BASE, user_xattrs=False)
    s.mkdir("home", 0o755)
    s.mkdir("home/app", 0o750, uid=1000, gid=1000)
    s.write("home/app/data", b"d", mode=0o640, uid=1000, gid=100)
    s.chmod("home/app/data", 0o4750)
    s.symlink("home/app/link", "data", uid=1000, gid=1000)
    s.mknod("null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    s.setxattr("usr/bin/tool", "user.note", b"hello")  # a lower file: copied up
    s.chown("usr/bin/tool", 7, 8)
    items = _entries(s)
    assert (items["home/app/data"].meta.uid, items["home/app/data"].meta.gid) == (1000, 100)
    assert items["home/app/data"].meta.mode == stat.S_IFREG | 0o4750
    assert (items["home/app/link"].meta.uid, items["home/app/link"].link) == (1000, "data")
    assert items["home/app"].meta.mode == stat.S_IFDIR | 0o750
    assert items["null"].meta.rdev == os.makedev(1, 3)
    assert items["usr/bin/tool"].meta.xattrs == {"user.note": b"hello"}
    assert (items["usr/bin/tool"].meta.uid, items["usr/bin/tool"].meta.gid) == (7, 8)
    assert META_DIR not in {i.split("/")[0] for i in items}  # never part of a layer
    attr = s.u.getattr(s.ino("home/app/data"))
    assert (attr.uid, attr.gid, attr.mode) == (1000, 100, stat.S_IFREG | 0o4750)
    # nothing went into xattrs; the same writes with xattrs do use them
    assert _no_xattrs_written(s.upper)
    x = Scratch(tmp_path / "x", BASE)
    x.write("f", b"d", uid=1000)
    assert not (x.upper / META_DIR).exists()
    assert OVERRIDE_XATTR in os.listxattr(x.upper / "f")


def test_a_new_entry_always_gets_its_file_so_a_stale_one_never_speaks_for_it(
    tmp_path: Path,
) -> None:
    """Unlike an xattr (tests/fs/test_union.py: root's 0644 file gets none), a record
    file is named by the inode number: a crash can leave one behind for a number the next
    creation reuses. So every new entry writes its own, even one that shows its owner and
    mode by itself."""
    s = Scratch(tmp_path, BASE, user_xattrs=False)
    s.write("old", b"x", uid=33, gid=33)
    old = os.lstat(s.upper / "old").st_ino
    os.unlink(s.upper / "old")  # a crash: the name is gone, its record file is not
    assert str(old) in _files(s)
    before = _files(s)
    s.write("new", b"y")  # root, 0644: what bare_meta shows
    new = os.lstat(s.upper / "new").st_ino
    assert _files(s) == before | {str(new)}
    attr = s.u.getattr(s.ino("new"))  # when `new` reuses `old`'s number, 33 was on file
    assert (attr.uid, attr.gid, attr.mode) == (0, 0, stat.S_IFREG | 0o644)


def test_metadata_follows_rename_and_links_and_goes_with_the_last_name(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE, user_xattrs=False)
    s.write("a", b"x", uid=5, gid=6)
    s.link("a", "b")
    s.rename("a", "c")
    assert s.u.getattr(s.ino("c")).uid == 5 and s.u.getattr(s.ino("b")).uid == 5
    s.chown("b", 9, 9)
    assert s.u.getattr(s.ino("c")).uid == 9  # one inode, one record
    before = _files(s)
    s.rm("b")
    assert _files(s) == before  # "c" still names it
    s.write("d", b"y", uid=3)
    s.rename("d", "c")  # over the last name of the other inode
    assert len(_files(s)) == len(before)
    assert s.u.getattr(s.ino("c")).uid == 3
    s.rm("c")
    assert len(_files(s)) == len(before) - 1


def test_an_open_unlinked_file_keeps_its_owner_until_released(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE, user_xattrs=False)
    parent = ROOT_INODE
    fh, attr = s.u.create(parent, "tmp", 0o600, os.O_RDWR, 42, 42)
    before = _files(s)
    s.u.unlink(parent, "tmp")
    assert s.u.getattr(attr.ino).uid == 42
    assert _files(s) == before
    s.u.release(fh)
    assert len(_files(s)) == len(before) - 1


def test_a_record_left_for_a_reused_inode_of_another_type_is_ignored(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE, user_xattrs=False)
    s.mkdir("d", 0o700, uid=4)
    st = os.lstat(s.upper / "d")
    stale = EntryMeta(uid=99, gid=99, mode=stat.S_IFREG | 0o4755)
    (s.upper / META_DIR / str(st.st_ino)).write_text(json.dumps(stale.to_json()))
    meta = s.u.getattr(s.ino("d"))
    assert stat.S_ISDIR(meta.mode) and meta.uid != 99


def test_an_upper_once_without_xattrs_stays_so(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE, user_xattrs=False)
    s.write("f", b"x", uid=11)
    again = Scratch.over(s.lowers, s.upper)  # probes: xattrs work here, the files stay
    assert again.u.getattr(again.ino("f")).uid == 11
