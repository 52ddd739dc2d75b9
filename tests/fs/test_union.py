"""fs.union without a mount: the whiteout, copy-up and metadata decisions."""

from __future__ import annotations

import errno
import gc
import json
import os
import stat
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fs.meta import EntryMeta
from fs.union import (
    OPAQUE_MARKER,
    OVERRIDE_XATTR,
    ROOT_INODE,
    Attr,
    Union,
    UnionSpec,
    read_override,
)
from tests.fs.layers import Tree, make_layer, remove_tree
from tests.shared import unavailable


def _union(
    tmp_path: Path,
    *trees: Tree,
    metas: list[dict[str, EntryMeta]] | None = None,
    ids: range = range(0, 65536),
) -> Union:
    lowers = tuple(
        make_layer(tmp_path / f"l{i}", t, (metas or [{}] * len(trees))[i])
        for i, t in enumerate(trees)
    )
    return Union(UnionSpec(lowers, tmp_path / "upper", ids))


def _walk(u: Union, path: str) -> Attr:
    attr = u.getattr(ROOT_INODE)
    for part in path.split("/"):
        attr = u.lookup(attr.ino, part)
    return attr


def _ls(u: Union, path: str = "") -> list[str]:
    ino = _walk(u, path).ino if path else ROOT_INODE
    fh = u.opendir(ino)
    try:
        return sorted(e[1] for e in u.readdir(fh, 0) if e[1] not in (".", ".."))
    finally:
        u.release(fh)


def _read(u: Union, path: str) -> bytes:
    fh, _ = u.open(_walk(u, path).ino, os.O_RDONLY)
    try:
        return u.read(fh, 0, 1 << 20)
    finally:
        u.release(fh)


def _write(u: Union, path: str, data: bytes, off: int = 0) -> None:
    fh, keep = u.open(_walk(u, path).ino, os.O_WRONLY)
    assert keep  # every write goes through the kernel: its page cache stays right
    try:
        assert u.write(fh, off, data) == len(data)
    finally:
        u.release(fh)


def _errno(exc: pytest.ExceptionInfo[OSError]) -> int | None:
    return exc.value.errno


def test_lookup_prefers_the_top_layer(tmp_path: Path) -> None:
    u = _union(tmp_path, {"etc/os": "old"}, {"etc/os": "new"})
    assert _read(u, "etc/os") == b"new"


def test_whiteout_hides_lower_file(tmp_path: Path) -> None:
    u = _union(tmp_path, {"etc/a": "a", "etc/b": "b"}, {"etc/.wh.a": ""})
    with pytest.raises(FileNotFoundError):
        _walk(u, "etc/a")
    assert _ls(u, "etc") == ["b"]


def test_opaque_dir_hides_everything_below(tmp_path: Path) -> None:
    u = _union(tmp_path, {"d/old": "x", "d/sub/f": "y"}, {f"d/{OPAQUE_MARKER}": "", "d/new": "n"})
    assert _ls(u, "d") == ["new"]
    with pytest.raises(FileNotFoundError):
        _walk(u, "d/sub/f")


def test_parent_whiteout_applies_to_children(tmp_path: Path) -> None:
    u = _union(tmp_path, {"d/sub/f": "y"}, {".wh.d": ""}, {"d/other": "z"})
    assert _ls(u, "d") == ["other"]
    with pytest.raises(FileNotFoundError):
        _walk(u, "d/sub")


def test_non_directory_hides_lower_directory(tmp_path: Path) -> None:
    u = _union(tmp_path, {"x/inside": "1"}, {"x": "file"})
    attr = _walk(u, "x")
    assert stat.S_ISREG(attr.mode)
    assert _read(u, "x") == b"file"


def test_directories_merge_across_layers(tmp_path: Path) -> None:
    u = _union(tmp_path, {"usr/bin/a": "", "usr/lib/": ""}, {"usr/bin/b": ""})
    assert _ls(u, "usr/bin") == ["a", "b"]
    assert _ls(u) == ["usr"]


def test_reserved_names_are_hidden_and_cannot_be_created(tmp_path: Path) -> None:
    u = _union(tmp_path, {"etc/.wh.gone": "", "etc/f": ""})
    assert _ls(u, "etc") == ["f"]
    etc = _walk(u, "etc").ino
    with pytest.raises(FileNotFoundError):
        u.lookup(etc, ".wh.gone")
    with pytest.raises(OSError) as e1:
        u.create(etc, ".wh.x", 0o644, os.O_WRONLY, 0, 0)
    with pytest.raises(OSError) as e2:
        u.mkdir(etc, ".wh..wh..opq", 0o755, 0, 0)
    assert {_errno(e1), _errno(e2)} <= {errno.EPERM, errno.EINVAL}


def test_meta_overrides_ownership_mode_and_device(tmp_path: Path) -> None:
    chr_mode = stat.S_IFCHR | 0o666
    meta = {
        "usr/bin/passwd": EntryMeta(uid=0, gid=0, mode=stat.S_IFREG | 0o4755),
        "home/u": EntryMeta(uid=1000, gid=1000, mode=stat.S_IFDIR | 0o700),
        "dev/null": EntryMeta(uid=0, gid=0, mode=chr_mode, rdev=os.makedev(1, 3)),
    }
    u = _union(tmp_path, {"usr/bin/passwd": "", "home/u/": "", "dev/null": ""}, metas=[meta])
    passwd = _walk(u, "usr/bin/passwd")
    assert passwd.mode == stat.S_IFREG | 0o4755
    home = _walk(u, "home/u")
    assert (home.uid, home.gid, home.mode) == (1000, 1000, stat.S_IFDIR | 0o700)
    null = _walk(u, "dev/null")
    assert (null.mode, null.rdev) == (chr_mode, os.makedev(1, 3))


def test_ids_outside_mapped_ids_are_shown_as_0(tmp_path: Path) -> None:
    meta = {"home/u": EntryMeta(uid=1000, gid=1001, mode=stat.S_IFDIR | 0o700)}
    u = _union(tmp_path, {"home/u/": ""}, metas=[meta], ids=range(0, 1))
    home = _walk(u, "home/u")
    assert (home.uid, home.gid) == (0, 0)
    # ...and the truth is kept: a copy-up records 1000:1001, not 0:0
    u.setattr(home.ino, mode=0o750)
    ov = read_override(tmp_path / "upper/home/u")
    assert ov is not None and (ov.uid, ov.gid) == (1000, 1001)


def test_keep_id_single_map_shows_other_owners_as_the_user(tmp_path: Path) -> None:
    """rsbox --userns keep-id without a range maps uid 1000 and gid 1001 only (separately):
    root's files and another user's show as the mapped ids; the truth stays in meta."""
    meta = {"home/u": EntryMeta(uid=5, gid=6, mode=stat.S_IFDIR | 0o700)}
    lowers = (make_layer(tmp_path / "l0", {"etc/f": "", "home/u/": ""}, meta),)
    spec = UnionSpec(
        lowers,
        tmp_path / "upper",
        mapped_ids=range(1000, 1001),
        mapped_gids=range(1001, 1002),
        unmapped_as=(1000, 1001),
    )
    u = Union(spec)
    for path in ("etc/f", "home/u"):
        attr = _walk(u, path)
        assert (attr.uid, attr.gid) == (1000, 1001), path
    u.setattr(_walk(u, "home/u").ino, mode=0o750)
    ov = read_override(tmp_path / "upper/home/u")
    assert ov is not None and (ov.uid, ov.gid) == (5, 6)


def test_write_copies_up_and_never_touches_lower(tmp_path: Path) -> None:
    u = _union(tmp_path, {"etc/conf": "lower"})
    _write(u, "etc/conf", b"UPPER")
    assert _read(u, "etc/conf") == b"UPPER"
    assert (tmp_path / "l0/fs/etc/conf").read_text() == "lower"
    assert (tmp_path / "upper/etc/conf").read_text() == "UPPER"


def test_copy_up_keeps_mode_owner_times_xattrs_and_inode(tmp_path: Path) -> None:
    meta = {
        "bin/tool": EntryMeta(
            uid=7, gid=8, mode=stat.S_IFREG | 0o4711, xattrs={"security.capability": b"\x01cap"}
        )
    }
    u = _union(tmp_path, {"bin/tool": "x"}, metas=[meta])
    os.utime(tmp_path / "l0/fs/bin/tool", ns=(1_000_000_000, 2_000_000_000))
    before = _walk(u, "bin/tool")
    _write(u, "bin/tool", b"y", off=1)
    after = u.getattr(before.ino)
    assert after.ino == before.ino
    assert (after.uid, after.gid, after.mode) == (7, 8, stat.S_IFREG | 0o4711)
    assert after.size == 2
    assert u.getxattr(before.ino, "security.capability") == b"\x01cap"
    disk = os.lstat(tmp_path / "upper/bin/tool")
    assert not disk.st_mode & stat.S_ISUID  # setuid lives in the override, never on disk
    # the parent was copied up with its metadata too
    assert read_override(tmp_path / "upper/bin") is not None


def test_copy_up_read_error_fails_and_leaves_nothing_in_upper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # data, hole, data, trailing hole: the copy walks it with SEEK_DATA/SEEK_HOLE
    u = _union(tmp_path, {"var/big": ""})
    lower = tmp_path / "l0/fs/var/big"
    with lower.open("r+b") as f:
        f.write(b"head")
        f.seek(256 << 10)
        f.write(b"tail")
        f.truncate(512 << 10)
        if os.lseek(f.fileno(), 0, os.SEEK_HOLE) >= 512 << 10:
            pytest.skip("this filesystem reports no holes")
    expected = lower.read_bytes()

    # a disk error cannot be made on demand: the second SEEK_DATA (past the first
    # extent) fails as a failing disk would
    real_lseek = os.lseek

    def eio_after_first_extent(fd: int, pos: int, how: int) -> int:
        if how == os.SEEK_DATA and pos > 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_lseek(fd, pos, how)

    monkeypatch.setattr(os, "lseek", eio_after_first_extent)
    with pytest.raises(OSError) as exc:
        _write(u, "var/big", b"H")
    assert _errno(exc) == errno.EIO  # not a copy with zeros where "tail" was
    assert os.listdir(tmp_path / "upper/var") == []  # no temporary, no half copy
    assert _read(u, "var/big") == expected  # still the lower file

    monkeypatch.undo()  # the disk is back: the same write copies up in full
    _write(u, "var/big", b"H")
    assert (tmp_path / "upper/var/big").read_bytes() == b"H" + expected[1:]
    assert _read(u, "var/big") == b"H" + expected[1:]


def test_unlink_lower_file_writes_whiteout(tmp_path: Path) -> None:
    u = _union(tmp_path, {"etc/a": "a"})
    u.unlink(_walk(u, "etc").ino, "a")
    assert (tmp_path / "upper/etc/.wh.a").is_file()
    assert (tmp_path / "l0/fs/etc/a").exists()
    assert _ls(u, "etc") == []


def test_unlink_upper_only_file_leaves_no_whiteout(tmp_path: Path) -> None:
    u = _union(tmp_path, {"etc/": ""})
    etc = _walk(u, "etc").ino
    fh, _ = u.create(etc, "new", 0o644, os.O_WRONLY, 5, 6)
    u.release(fh)
    u.unlink(etc, "new")
    assert sorted(os.listdir(tmp_path / "upper/etc")) == []


def test_create_records_the_callers_ownership(tmp_path: Path) -> None:
    u = _union(tmp_path, {"tmp/": ""})
    fh, attr = u.create(_walk(u, "tmp").ino, "f", 0o640, os.O_WRONLY, 1000, 100)
    u.release(fh)
    assert (attr.uid, attr.gid, attr.mode) == (1000, 100, stat.S_IFREG | 0o640)
    ov = read_override(tmp_path / "upper/tmp/f")
    assert ov is not None and (ov.uid, ov.gid) == (1000, 100)


def test_a_new_entry_records_only_what_the_host_does_not_show(tmp_path: Path) -> None:
    """Root creating with a mode the disk keeps shows that without a record (bare_meta);
    another owner, or a mode the disk cannot keep (0o444 is 0o644 on disk), is recorded.
    Each shows what was asked for either way, and again after the node is forgotten."""
    u = _union(tmp_path, {"tmp/": ""})
    tmp = _walk(u, "tmp").ino
    cases = {"plain": (0, 0, 0o644), "owned": (33, 44, 0o644), "readonly": (0, 0, 0o444)}
    for name, (uid, gid, mode) in cases.items():
        fh, attr = u.create(tmp, name, mode, os.O_WRONLY, uid, gid)
        u.release(fh)
        assert (attr.uid, attr.gid, attr.mode) == (uid, gid, stat.S_IFREG | mode)
    u.mkdir(tmp, "dir", 0o755, 0, 0)
    u.mkdir(tmp, "dir2", 0o750, 5, 6)
    recorded = {
        n for n in os.listdir(tmp_path / "upper/tmp") if read_override(tmp_path / "upper/tmp" / n)
    }
    assert recorded == {"owned", "readonly", "dir2"}
    again = _union(tmp_path, {"tmp/": ""})  # a fresh server over the same upper
    for name, (uid, gid, mode) in cases.items():
        attr = _walk(again, f"tmp/{name}")
        assert (attr.uid, attr.gid, attr.mode) == (uid, gid, stat.S_IFREG | mode)
    assert (_walk(again, "tmp/dir").mode, _walk(again, "tmp/dir2").uid) == (
        stat.S_IFDIR | 0o755,
        5,
    )


def test_rmdir_is_enotempty_through_lower_entries(tmp_path: Path) -> None:
    u = _union(tmp_path, {"d/f": ""})
    with pytest.raises(OSError) as exc:
        u.rmdir(ROOT_INODE, "d")
    assert _errno(exc) == errno.ENOTEMPTY


def test_rm_rf_lower_dir_then_mkdir_gives_an_empty_dir(tmp_path: Path) -> None:
    u = _union(tmp_path, {"d/f": "", "d/sub/g": ""})
    d = _walk(u, "d").ino
    u.unlink(d, "f")
    u.unlink(_walk(u, "d/sub").ino, "g")
    u.rmdir(d, "sub")
    u.rmdir(ROOT_INODE, "d")
    assert _ls(u) == []
    u.mkdir(ROOT_INODE, "d", 0o755, 0, 0)
    assert _ls(u, "d") == []
    assert (tmp_path / "upper/d" / OPAQUE_MARKER).is_file()
    assert not (tmp_path / "upper/.wh.d").exists()


def test_rename_of_a_lower_directory(tmp_path: Path) -> None:
    u = _union(tmp_path, {"a/f": "1", "a/sub/g": "2", "a/.wh.gone": ""}, {"a/h": "3"})
    sub_ino = _walk(u, "a/sub").ino
    u.rename(ROOT_INODE, "a", ROOT_INODE, "b", 0)
    assert _ls(u) == ["b"]
    assert _ls(u, "b") == ["f", "h", "sub"]
    assert _read(u, "b/sub/g") == b"2"
    assert _walk(u, "b/sub").ino == sub_ino  # the kernel's inode follows the move
    assert (tmp_path / "upper/.wh.a").is_file()
    assert (tmp_path / "upper/b" / OPAQUE_MARKER).is_file()
    with pytest.raises(FileNotFoundError):
        _walk(u, "a")


def test_rename_file_over_lower_file(tmp_path: Path) -> None:
    u = _union(tmp_path, {"x": "X", "y": "Y"})
    u.rename(ROOT_INODE, "x", ROOT_INODE, "y", 0)
    assert _ls(u) == ["y"]
    assert _read(u, "y") == b"X"


def test_rename_dir_over_nonempty_dir_fails(tmp_path: Path) -> None:
    u = _union(tmp_path, {"a/": "", "b/f": ""})
    with pytest.raises(OSError) as exc:
        u.rename(ROOT_INODE, "a", ROOT_INODE, "b", 0)
    assert _errno(exc) == errno.ENOTEMPTY


def test_setattr_chmod_chown_truncate_utime(tmp_path: Path) -> None:
    u = _union(tmp_path, {"f": "hello"})
    ino = _walk(u, "f").ino
    attr = u.setattr(ino, mode=0o600, uid=33, gid=44, size=2, atime_ns=10**9, mtime_ns=3 * 10**9)
    assert (attr.mode, attr.uid, attr.gid, attr.size) == (stat.S_IFREG | 0o600, 33, 44, 2)
    assert (attr.atime_ns, attr.mtime_ns) == (10**9, 3 * 10**9)
    assert (tmp_path / "l0/fs/f").read_text() == "hello"


def test_symlink_readlink_and_link(tmp_path: Path) -> None:
    u = _union(tmp_path, {"t": "target", "old": ("->", "t")})
    assert u.readlink(_walk(u, "old").ino) == "t"
    attr = u.symlink(ROOT_INODE, "s", "t")
    assert stat.S_ISLNK(attr.mode)
    assert u.readlink(attr.ino) == "t"
    linked = u.link(_walk(u, "t").ino, ROOT_INODE, "hard")
    assert linked.nlink == 2
    assert _read(u, "hard") == b"target"


def test_xattrs_from_meta_are_listed_and_override_is_private(tmp_path: Path) -> None:
    meta = {"f": EntryMeta(uid=0, gid=0, mode=stat.S_IFREG | 0o644, xattrs={"user.a": b"1"})}
    u = _union(tmp_path, {"f": ""}, metas=[meta])
    ino = _walk(u, "f").ino
    u.setxattr(ino, "user.b", b"2")
    assert u.listxattr(ino) == ["user.a", "user.b"]
    with pytest.raises(OSError) as exc:
        u.getxattr(ino, OVERRIDE_XATTR)
    assert _errno(exc) == errno.ENODATA


def test_forget_drops_nodes_the_kernel_forgot(tmp_path: Path) -> None:
    u = _union(tmp_path, {"f": ""})
    attr = u.lookup(ROOT_INODE, "f")
    u.lookup(ROOT_INODE, "f")
    u.forget([(attr.ino, 1)])
    assert u.getattr(attr.ino).ino == attr.ino
    u.forget([(attr.ino, 1)])
    with pytest.raises(OSError):
        u.getattr(attr.ino)
    assert u.lookup(ROOT_INODE, "f").ino != attr.ino  # numbers are never reused


def test_missing_meta_file_means_no_overrides(tmp_path: Path) -> None:
    u = _union(tmp_path, {"f": ""})
    assert not (tmp_path / "l0/meta").exists()
    attr = _walk(u, "f")
    assert (attr.uid, attr.gid) == (0, 0)


def test_mknod_keeps_type_and_rdev_in_the_override(tmp_path: Path) -> None:
    u = _union(tmp_path, {"dev/": ""})
    dev = _walk(u, "dev").ino
    attr = u.mknod(dev, "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5), 0, 0)
    assert (attr.mode, attr.rdev) == (stat.S_IFCHR | 0o666, os.makedev(1, 5))
    fifo = u.mknod(dev, "pipe", stat.S_IFIFO | 0o600, 0, 0, 0)
    assert stat.S_ISFIFO(fifo.mode)
    assert stat.S_ISREG(os.lstat(tmp_path / "upper/dev/zero").st_mode)  # a placeholder


def test_deleted_open_file_still_has_attributes(tmp_path: Path) -> None:
    u = _union(tmp_path, {"tmp/": ""})
    tmp = _walk(u, "tmp").ino
    fh, attr = u.create(tmp, "scratch", 0o600, os.O_RDWR, 1000, 1000)
    u.write(fh, 0, b"abc")
    u.unlink(tmp, "scratch")
    after = u.getattr(attr.ino)
    assert (after.size, after.uid) == (3, 1000)
    u.release(fh)


def test_rename_keeps_the_inode_of_a_lower_file(tmp_path: Path) -> None:
    u = _union(tmp_path, {"a/f": "x", "b/": ""})
    ino = _walk(u, "a/f").ino
    u.rename(_walk(u, "a").ino, "f", _walk(u, "b").ino, "g", 0)
    assert _walk(u, "b/g").ino == ino
    assert (tmp_path / "upper/a/.wh.f").is_file()


def test_root_shows_the_image_root_not_the_upper_dir(tmp_path: Path) -> None:
    meta = {"": EntryMeta(uid=0, gid=0, mode=stat.S_IFDIR | 0o755)}
    u = _union(tmp_path, {"f": ""}, metas=[meta])
    os.chmod(tmp_path / "upper", 0o700)
    assert u.getattr(ROOT_INODE).mode == stat.S_IFDIR | 0o755


def test_corrupt_meta_is_an_oserror_naming_the_file(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "l0", {"f": ""})
    (layer / "meta").write_text('{"version": 99}')
    with pytest.raises(OSError, match="corrupt layer metadata") as exc:
        Union(UnionSpec((layer,), tmp_path / "upper"))
    assert exc.value.filename == str(layer / "meta")


# ---- limits: long names, many symlinks, deep trees, big renames, other filesystems ----


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """tmp_path for trees deeper than pytest's own cleanup can remove (Python 3.11's
    shutil.rmtree recurses once per level): emptied here, whatever the outcome."""
    yield tmp_path
    for p in tmp_path.iterdir():
        remove_tree(p)


def _whiteout_device(p: Path) -> None:
    """A 0/0 character device, as overlayfs (and we, for long names) mark a whiteout."""
    try:
        os.mknod(p, stat.S_IFCHR | 0o600, 0)
    except PermissionError:
        unavailable("this kernel refuses unprivileged whiteout devices (Linux < 5.8)")


def test_names_of_255_bytes_are_created_renamed_linked_and_whited_out(tmp_path: Path) -> None:
    low = "L" * 255
    u = _union(tmp_path, {low: "lower", "d/": ""})
    d = _walk(u, "d").ino
    for n in (252, 253, 254, 255):
        fh, _ = u.create(d, "a" * n, 0o644, os.O_WRONLY, 0, 0)
        u.release(fh)
    assert _ls(u, "d") == ["a" * n for n in (252, 253, 254, 255)]
    u.rename(d, "a" * 255, ROOT_INODE, "b" * 255, 0)
    assert u.link(_walk(u, "b" * 255).ino, d, "c" * 255).nlink == 2
    u.unlink(d, "c" * 255)
    # a lower file of 255 bytes: copied up, then deleted: `.wh.` + 255 bytes would not fit
    _write(u, low, b"UPPER")
    assert _read(u, low) == b"UPPER"
    u.unlink(ROOT_INODE, low)
    st = os.lstat(tmp_path / "upper" / low)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # the whiteout, at the name
    assert low not in _ls(u)
    with pytest.raises(OSError) as exc:
        u.lookup(ROOT_INODE, low)
    assert _errno(exc) == errno.ENOENT
    fh, _ = u.create(ROOT_INODE, low, 0o600, os.O_WRONLY, 0, 0)  # over the whiteout
    u.release(fh)
    assert stat.S_ISREG(os.lstat(tmp_path / "upper" / low).st_mode) and _read(u, low) == b""


def test_a_lower_layer_whiteout_device_hides_a_long_name(tmp_path: Path) -> None:
    """What extraction writes for a `.wh.` + 252-255 byte name (it cannot be a file)."""
    name = "x" * 255
    lowers = (
        make_layer(tmp_path / "l0", {name: "old", "keep": ""}),
        make_layer(tmp_path / "l1", {"other": ""}),
    )
    _whiteout_device(tmp_path / "l1/fs" / name)
    u = Union(UnionSpec(lowers, tmp_path / "upper"))
    assert _ls(u) == ["keep", "other"]
    with pytest.raises(OSError) as exc:
        u.lookup(ROOT_INODE, name)
    assert _errno(exc) == errno.ENOENT


def test_1000_symlinks_keep_distinct_owners_per_entry(tmp_path: Path) -> None:
    u = _union(tmp_path, {"d/": ""})
    d = _walk(u, "d").ino
    for i in range(1000):
        u.symlink(d, f"l{i}", f"t{i}", 1000 + i, 2000 + i)
    u.setattr(_walk(u, "d/l7").ino, uid=0, gid=0)
    u.rename(d, "l8", ROOT_INODE, "moved", 0)
    assert "user.rsbox.links" not in os.listxattr(tmp_path / "upper/d")
    fresh = Union(UnionSpec((tmp_path / "l0",), tmp_path / "upper"))  # remounted
    for i in range(1000):
        path = "moved" if i == 8 else f"d/l{i}"
        attr = _walk(fresh, path)
        assert (attr.uid, attr.gid) == ((0, 0) if i == 7 else (1000 + i, 2000 + i)), path


def test_symlink_owners_of_an_older_upper_are_still_read(tmp_path: Path) -> None:
    """Uppers written before the sidecars: one JSON map per directory."""
    (tmp_path / "upper/d").mkdir(parents=True)
    os.symlink("t", tmp_path / "upper/d/old")
    legacy = {"old": EntryMeta(uid=5, gid=6, mode=stat.S_IFLNK | 0o777).to_json()}
    os.setxattr(tmp_path / "upper/d", "user.rsbox.links", json.dumps(legacy).encode())
    u = _union(tmp_path, {"d/": ""})
    attr = _walk(u, "d/old")
    assert (attr.uid, attr.gid) == (5, 6)
    assert u.setattr(attr.ino, uid=7).uid == 7
    assert "user.rsbox.links" not in os.listxattr(tmp_path / "upper/d")  # moved over
    assert _walk(Union(UnionSpec((tmp_path / "l0",), tmp_path / "upper")), "d/old").uid == 7


def test_a_tree_2000_levels_deep_in_upper_and_lower(deep_tmp: Path) -> None:
    """Past PATH_MAX (6000 bytes below the root): made, written, renamed in the middle,
    and the image's own 2000 levels copied up for a write at the bottom."""
    u = _union(deep_tmp, {"low": ("deep", "2000")})
    ino = ROOT_INODE
    for _ in range(2000):
        ino = u.mkdir(ino, "tt", 0o755, 0, 0).ino
    fh, leaf = u.create(ino, "leaf", 0o644, os.O_RDWR, 0, 0)
    u.write(fh, 0, b"bottom")
    u.release(fh)
    mid = _walk(u, "/".join(["tt"] * 1000))
    u.rename(mid.ino, "tt", mid.ino, "uu", 0)
    assert _walk(u, "/".join(["tt"] * 1000 + ["uu"] + ["tt"] * 999 + ["leaf"])).ino == leaf.ino
    assert _read(u, "/".join(["tt"] * 1000 + ["uu"] + ["tt"] * 999 + ["leaf"])) == b"bottom"
    deep = "/".join(["low", *["dd"] * 2000, "leaf"])
    _write(u, deep, b"DEEP", off=0)
    assert _read(u, deep) == b"DEEP\n"
    u.unlink(_walk(u, deep.rsplit("/", 1)[0]).ino, "leaf")
    assert _ls(u, deep.rsplit("/", 1)[0]) == []


def test_paths_past_path_max_fail_with_enametoolong_without_proc(
    deep_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /proc is missing the long path goes to the kernel as it is: a real errno."""
    from fs import longpath

    monkeypatch.setattr(longpath, "_PROC_FD", str(deep_tmp / "no-proc"))
    layer = make_layer(deep_tmp / "l0", {"low": ("deep", "2000")})
    u = Union(UnionSpec((layer,), deep_tmp / "upper"))
    with pytest.raises(OSError) as exc:
        _walk(u, "/".join(["low", *["dd"] * 2000]))
    assert _errno(exc) == errno.ENAMETOOLONG


def _rename_syscalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int) -> int:
    """lstat calls of renaming an upper directory of `files` known files; checks that the
    children are found where they went."""
    u = _union(tmp_path, {"etc/": ""})
    big = u.mkdir(ROOT_INODE, "big", 0o755, 0, 0).ino
    inos = []
    for i in range(files):
        fh, attr = u.create(big, f"f{i}", 0o644, os.O_WRONLY, 0, 0)  # known: looked up
        u.write(fh, 0, str(i).encode())
        u.release(fh)
        inos.append(attr.ino)
    etc = _walk(u, "etc").ino
    calls = _lstats(monkeypatch, lambda: u.rename(ROOT_INODE, "big", etc, "moved", 0))
    for i in (0, files // 2, files - 1):
        fh, _ = u.open(inos[i], os.O_RDONLY)  # by inode: the node knows its new path
        assert u.read(fh, 0, 100) == str(i).encode()
        u.release(fh)
    assert _walk(u, f"etc/moved/f{files - 1}").ino == inos[-1]
    return calls


def test_renaming_an_upper_directory_costs_the_same_whatever_is_known_below(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No per-child work: the syscalls of the rename do not grow with the children the
    kernel knows (100k of them stalled every request ~3 s, see tests/bench_fs.py)."""
    few = _rename_syscalls(tmp_path / "few", monkeypatch, 10)
    many = _rename_syscalls(tmp_path / "many", monkeypatch, 3000)
    assert few == many, (few, many)


def test_copy_up_across_filesystems_falls_back_and_keeps_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_file_range between two filesystems fails with EXDEV (Linux >= 5.19): the data
    regions are copied by hand, the holes stay holes. (The real thing, two tmpfs, is
    tests/fs/test_overlayfs_cli.py's mount(8) test.)"""
    u = _union(tmp_path, {"var/big": ("sparse", str(64 << 20))})
    tried = {"n": 0}

    def exdev(*args: object) -> int:
        tried["n"] += 1
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "copy_file_range", exdev)
    _write(u, "var/big", b"H")
    assert tried["n"] == 1  # tried once, then by hand for every region
    upper = tmp_path / "upper/var/big"
    with upper.open("rb") as f:
        assert f.read(4) == b"Head"
        f.seek((64 << 20) - 4)
        assert f.read() == b"tail"
    assert upper.stat().st_size == 64 << 20
    assert upper.stat().st_blocks * 512 < 1 << 20  # 8 bytes of data, not 64 MiB


def _tmp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".wh..wh..rsbox-tmp.*")]


def test_copy_up_in_steps_equals_the_one_step_copy_up(tmp_path: Path) -> None:
    """copy_up_start / run (any thread) / copy_up_finish: the same result as a write's
    own copy-up; the lower stays untouched and no temporary is left."""
    u = _union(tmp_path, {"d/big": "0123456789" * 1000})
    attr = _walk(u, "d/big")
    job = u.copy_up_start(attr.ino)
    assert job is not None and job.size == 10_000
    assert (tmp_path / "upper/d").is_dir() and not (tmp_path / "upper/d/big").exists()
    assert _read(u, "d/big") == b"0123456789" * 1000  # still served from the lower
    job.file.run()
    u.copy_up_finish(job)
    assert (tmp_path / "upper/d/big").read_bytes() == b"0123456789" * 1000
    assert u.getattr(attr.ino).ino == attr.ino
    assert u.copy_up_start(attr.ino) is None  # in the upper now
    assert _tmp_files(tmp_path / "upper") == []
    assert (tmp_path / "l0/fs/d/big").read_text() == "0123456789" * 1000


def test_copy_up_without_data_for_a_truncating_open(tmp_path: Path) -> None:
    u = _union(tmp_path, {"f": "old content"})
    fh, _ = u.open(_walk(u, "f").ino, os.O_WRONLY | os.O_TRUNC)
    u.write(fh, 0, b"new")
    u.release(fh)
    assert (tmp_path / "upper/f").read_bytes() == b"new"
    assert (tmp_path / "l0/fs/f").read_text() == "old content"


def test_copy_up_of_a_directory_or_symlink_needs_no_second_step(tmp_path: Path) -> None:
    u = _union(tmp_path, {"d/": "", "l": ("->", "d")})
    assert u.copy_up_start(_walk(u, "d").ino) is None
    assert u.copy_up_start(_walk(u, "l").ino) is None
    assert (tmp_path / "upper/d").is_dir() and (tmp_path / "upper/l").is_symlink()


def test_copy_up_abort_or_a_moved_node_leaves_nothing(tmp_path: Path) -> None:
    u = _union(tmp_path, {"a/f": "x" * 100})
    ino = _walk(u, "a/f").ino
    job = u.copy_up_start(ino)
    assert job is not None
    job.file.run()
    job.file.abort()
    assert _tmp_files(tmp_path / "upper") == [] and not (tmp_path / "upper/a/f").exists()
    job = u.copy_up_start(ino)
    assert job is not None
    job.file.run()
    u.rename(_walk(u, "a").ino, "f", ROOT_INODE, "g", 0)  # what fs.server never lets happen
    with pytest.raises(OSError) as exc:
        u.copy_up_finish(job)
    assert _errno(exc) == errno.EIO
    assert _tmp_files(tmp_path / "upper") == []
    assert _read(u, "g") == b"x" * 100


def test_is_within_names_the_node_and_every_directory_above_it(tmp_path: Path) -> None:
    u = _union(tmp_path, {"a/b/f": "", "a/c": "", "z": ""})
    f = _walk(u, "a/b/f").ino
    a, b = _walk(u, "a").ino, _walk(u, "a/b").ino
    assert u.is_within(f, ROOT_INODE, "a") and u.is_within(f, a, "b") and u.is_within(f, b, "f")
    assert not u.is_within(f, a, "c") and not u.is_within(f, ROOT_INODE, "z")
    assert not u.is_within(f, b, "missing")
    fh, _ = u.open(f, os.O_WRONLY)  # a hard link's names count too
    u.release(fh)
    u.link(f, ROOT_INODE, "other")
    assert u.is_within(f, ROOT_INODE, "other")


def _ls_ino(u: Union, ino: int, stop_after: int | None = None, start: int = 0) -> list[int]:
    """Offsets from readdir_ino, as the server takes them (stopping early if asked)."""
    out = []
    for off, _name, _node, _attr, _counted in u.readdir_ino(ino, start):
        out.append(off)
        if stop_after is not None and len(out) == stop_after:
            break
    return out


def test_readdir_by_inode_keeps_each_readers_snapshot(tmp_path: Path) -> None:
    """Without OPENDIR (fs.kcache) there is no handle: each listing's offsets carry its
    snapshot, so readers that interleave with a change each see a consistent listing."""
    u = _union(tmp_path, {f"d/f{i}": "" for i in range(10)})
    d = _walk(u, "d").ino

    def names(ino: int, start: int) -> list[str]:
        return [e[1] for e in u.readdir_ino(ino, start)]

    first = _ls_ino(u, d, stop_after=5)  # ".", "..", f0, f1, f2
    u.unlink(d, "f0")  # both positions 2 of the old listing and of a new one change
    u.create(d, "a-new", 0o644, os.O_WRONLY, 0, 0)
    second = _ls_ino(u, d, stop_after=3)
    rest_first = names(d, first[-1])
    assert rest_first == [f"f{i}" for i in range(3, 10)]  # the old snapshot, f0 gone: skipped
    assert sorted(names(d, second[-1])) == sorted(f"f{i}" for i in range(1, 10))
    assert all(0 < off < 2**31 for off in first + second)  # 32-bit readdir stays happy
    assert first[0] >> 23 != second[0] >> 23  # two snapshots


def test_readdir_by_inode_with_a_lost_snapshot_reads_a_fresh_listing(tmp_path: Path) -> None:
    u = _union(tmp_path, {f"d/f{i}": "" for i in range(5)})
    d = _walk(u, "d").ino
    offs = _ls_ino(u, d, stop_after=3)
    for _ in range(300):  # 255 newer listings push it out
        _ls_ino(u, d, stop_after=1)
    rest = [e[1] for e in u.readdir_ino(d, offs[-1])]
    assert rest == ["f1", "f2", "f3", "f4"]  # the same positions, in a fresh listing


def _lstats(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> int:
    """How many times `run` calls os.lstat."""
    calls = 0
    real_lstat = os.lstat

    def counting(p: object, *args: object, **kwargs: object) -> os.stat_result:
        nonlocal calls
        calls += 1
        return real_lstat(p, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(os, "lstat", counting)
        run()
    return calls


def test_a_new_entry_costs_one_lstat_and_a_whiteout_above_still_hides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolution's lstat is the one the attributes are made from, and no whiteout is
    looked for in the lowest layer of a directory (it would hide nothing): a walk of a
    big tree made three lstats per entry."""
    u = _union(tmp_path, {"d/a": "", "d/b": "", "e/x": ""}, {"d/": "", "d/.wh.a": ""})
    d, e = _walk(u, "d").ino, _walk(u, "e").ino
    assert _lstats(monkeypatch, lambda: u.lookup(e, "x")) == 1
    with pytest.raises(FileNotFoundError):
        u.lookup(d, "a")  # the upper layer's whiteout of the two-layer d still counts
    assert u.lookup(d, "b").mode & 0o777 == 0o644
    assert [e[1] for e in u.readdir_ino(d, 0)] == [".", "..", "b"]


@pytest.mark.parametrize("ids", [range(0, 65536), range(0, 1)], ids=["full-map", "single-id"])
def test_a_listing_shows_what_a_lookup_shows(tmp_path: Path, ids: range) -> None:
    """A new entry's attributes in a listing are made from the lstat that resolved it
    (the cold path of readdirplus), a lookup's through the node: the same for every kind
    of entry, whichever layers hold it (one or several, the upper with its records)."""
    meta = {
        "one/suid": EntryMeta(uid=0, gid=0, mode=stat.S_IFREG | 0o4755),
        "one/home": EntryMeta(uid=1000, gid=1001, mode=stat.S_IFDIR | 0o700),
        "one/null": EntryMeta(uid=0, gid=0, mode=stat.S_IFCHR | 0o666, rdev=os.makedev(1, 3)),
        "both/low": EntryMeta(uid=7, gid=8, mode=stat.S_IFREG | 0o600),
    }
    lowers = (
        make_layer(
            tmp_path / "l0",
            {
                "one/suid": "x",
                "one/home/": "",
                "one/null": "",
                "one/link": ("->", "suid"),
                "both/low": "low",
                "both/hidden": "",
            },
            meta,
        ),
        make_layer(tmp_path / "l1", {"both/top": "top", "both/.wh.hidden": ""}),
    )
    os.link(tmp_path / "l0/fs/one/suid", tmp_path / "l0/fs/one/hard")
    _whiteout_device(tmp_path / "l0/fs/one/gone")  # a device whiteout in a one-layer dir
    spec = UnionSpec(lowers, tmp_path / "upper", ids)
    u = Union(spec)
    _write(u, "both/low", b"copied up")  # the upper's copy, with its record
    u.setattr(_walk(u, "both/top").ino, mode=0o640)
    fh, _ = u.create(_walk(u, "both").ino, "new", 0o600, os.O_WRONLY, 33, 33)
    u.release(fh)

    listed: dict[str, Attr] = {}
    fresh = Union(spec)  # nothing known: every entry takes the cold path
    todo = [("", ROOT_INODE)]
    while todo:
        at, ino = todo.pop()
        for _off, name, node, attr, counted in fresh.readdir_ino(ino, 0):
            if counted:
                path = f"{at}/{name}" if at else name
                listed[path] = attr
                if node.is_dir:
                    todo.append((path, node.ino))
    assert sorted(listed) == [
        "both",
        "both/low",
        "both/new",
        "both/top",
        "one",
        "one/hard",
        "one/home",
        "one/link",
        "one/null",
        "one/suid",
    ]
    assert listed["one/suid"].ino == listed["one/hard"].ino  # one node for both names
    looked = Union(spec)
    for path, attr in listed.items():  # atime: the listing itself reads directories
        seen = _walk(looked, path)
        assert attr._replace(ino=0, atime_ns=0) == seen._replace(ino=0, atime_ns=0), path
    if ids == range(0, 1):
        assert (listed["one/home"].uid, listed["both/new"].uid) == (0, 0)
    else:
        assert (listed["one/home"].uid, listed["both/new"].uid) == (1000, 33)


def test_a_known_file_weighs_under_half_a_kib(tmp_path: Path) -> None:
    """What the server keeps per entry the kernel knows (README "Filesystem": the inode
    table's cap is set from this): a node, its name in its directory's listing and
    table, no cached path, attributes or hard-link key for a plain file. ~1 KiB before."""
    files = 3000
    u = _union(tmp_path, {f"d{i // 100}/file-{i}": "" for i in range(files)})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        todo, known = [ROOT_INODE], 0
        while todo:
            for _off, _name, node, _attr, counted in u.readdir_ino(todo.pop(), 0):
                if counted:
                    u.took(node)  # what a readdirplus reply does
                    u.node_attr(node)
                    known += 1
                    if node.is_dir:
                        todo.append(node.ino)
        gc.collect()
        per_node = (tracemalloc.get_traced_memory()[0] - before) / known
    finally:
        tracemalloc.stop()
    assert known == files + files // 100
    assert per_node < 512, per_node
