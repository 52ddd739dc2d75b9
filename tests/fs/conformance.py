"""POSIX checks run the same way on the FUSE mount and on a plain local directory.

    python -m tests.fs.conformance ROOT OUT.json [CHECK ...]

ROOT holds the BASE tree plus each check's EXTRA (from a lower layer on the mount, a plain
copy locally) and what `prewrite` put there (in the upper on the mount). Every check runs
in a fresh sub-directory where it can, catches its own failure and the result map
{check name: null | error text} is written to OUT.json. tests/fs/test_conformance.py runs
this in both places (inside the same user namespace, so chown means the same) and asserts
every check passed in both: the local run proves the expectations are right.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.fs.layers import Tree, remove_tree, write_tree

# The lower tree. Files are 0644, dirs 0755 (what make_layer and a copy give).
BASE: dict[str, str | tuple[str, str]] = {
    "f": "lower\n",
    "g": "other\n",
    "d/x": "x\n",
    "d/sub/y": "y\n",
    "e/z": "z\n",
    "ln": ("->", "f"),
}

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)

# An id other than the caller's that the namespace maps (0 under the single-id map).
ID = int(os.environ.get("CONFORMANCE_ID", "1000"))

DEPTH = 2000  # levels of tree_2000_deep: ~4000 bytes of path, past PATH_MAX
BIG = 100_000  # entries of the directory rename_100k_dir_while_another_process_stats moves
# Lower entries of one check only, next to its BASE copy.
EXTRA: dict[str, Tree] = {
    "names_of_255_bytes": {"L" * 255: "lower\n", "D" * 255 + "/in": "in\n", "G" * 255: "g\n"},
    "tree_2000_deep": {"lowerdeep": ("deep", str(DEPTH))},
    "copy_up_keeps_holes": {"sparse": ("sparse", str(64 << 20))},
}
# The checks that copy lower entries up (run again on rsbox-overlayfs, mounted by
# mount(8), with its upper and its lower on two different filesystems).
COPY_UP = (
    "chmod_keeps_setuid_and_type",
    "chown_within_mapped_ids",
    "truncate_lower_file_grow_and_shrink",
    "utimens_omit_and_now",
    "open_excl_trunc_append",
    "read_handle_sees_writes_after_copy_up",
    "rename_exchange",
    "rename_lower_directory_no_exdev",
    "hard_link_one_inode_and_nlink",
    "user_xattrs",
    "security_capability_xattr",
    "copy_up_keeps_holes",
    "names_of_255_bytes",
)

CHECKS: dict[str, Callable[[], None]] = {}


def check(fn: Callable[[], None]) -> Callable[[], None]:
    CHECKS[fn.__name__] = fn
    return fn


def expect_errno(want: int | tuple[int, ...], fn: Callable[[], object]) -> None:
    wants = want if isinstance(want, tuple) else (want,)
    try:
        fn()
    except OSError as exc:
        assert exc.errno in wants, f"errno {errno.errorcode.get(exc.errno or 0)}, want {wants}"
        return
    raise AssertionError(f"no error, want {[errno.errorcode[w] for w in wants]}")


def renameat2(old: str, new: str, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path: str, atime: tuple[int, int], mtime: tuple[int, int]) -> None:
    ts = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if _libc.utimensat(AT_FDCWD, path.encode(), ts, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def read(p: str) -> str:
    with open(p) as f:
        return f.read()


# ---- attributes ---------------------------------------------------------------------


@check
def chmod_keeps_setuid_and_type() -> None:
    os.chmod("g", 0o4755)
    st = os.stat("g")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and stat.S_ISREG(st.st_mode), oct(st.st_mode)


@check
def chown_within_mapped_ids() -> None:
    os.chown("d/x", ID, ID + 1 if ID else 0)
    st = os.stat("d/x")
    assert (st.st_uid, st.st_gid) == (ID, ID + 1 if ID else 0), (st.st_uid, st.st_gid)
    os.chown("d/x", -1, 0)
    assert os.stat("d/x").st_gid == 0 and os.stat("d/x").st_uid == ID
    expect_errno(errno.EINVAL, lambda: os.chown("d/x", 70000, -1))  # not mapped


@check
def lchown_of_a_symlink() -> None:
    os.symlink("f", "sl_own")
    os.chown("sl_own", ID, ID, follow_symlinks=False)
    st = os.lstat("sl_own")
    assert (st.st_uid, st.st_gid) == (ID, ID), (st.st_uid, st.st_gid)
    assert os.stat("f").st_uid == 0  # the target did not change


@check
def truncate_lower_file_grow_and_shrink() -> None:
    os.truncate("e/z", 1)
    assert read("e/z") == "z"
    os.truncate("e/z", 4)
    assert read("e/z") == "z\0\0\0"


@check
def utimens_omit_and_now() -> None:
    os.utime("d/sub/y", ns=(1_000_000_000, 2_000_000_000))
    utimensat("d/sub/y", (5, UTIME_OMIT), (7, 0))
    st = os.stat("d/sub/y")
    assert st.st_atime_ns == 1_000_000_000 and st.st_mtime_ns == 7_000_000_000, st
    utimensat("d/sub/y", (0, UTIME_OMIT), (0, UTIME_NOW))
    st = os.stat("d/sub/y")
    assert st.st_atime_ns == 1_000_000_000 and st.st_mtime_ns > 7_000_000_000, st


# ---- directories --------------------------------------------------------------------


@check
def readdir_offsets_stable_while_entries_change() -> None:
    os.mkdir("rd")
    names = {f"entry-with-a-fairly-long-name-{i:05d}" for i in range(3000)}
    for n in names:
        open(f"rd/{n}", "w").close()
    seen: list[str] = []
    removed: set[str] = set()
    with os.scandir("rd") as it:
        for i, e in enumerate(it):
            seen.append(e.name)
            if i == 100:  # change the directory in the middle of the listing
                for n in sorted(names)[-500:]:
                    if n not in seen:
                        os.unlink(f"rd/{n}")
                        removed.add(n)
                for j in range(500):
                    open(f"rd/new-{j}", "w").close()
    assert len(seen) == len(set(seen)), "an entry was returned twice"
    kept = names - removed
    missing = kept - set(seen)
    assert not missing, f"{len(missing)} unchanged entries were not returned"


@check
def rm_rf_lower_dir_then_mkdir_is_empty() -> None:
    for p in ("d/sub/y", "d/x"):
        os.unlink(p)
    os.rmdir("d/sub")
    os.rmdir("d")
    os.mkdir("d")
    assert os.listdir("d") == []


@check
def namespace_errors() -> None:
    expect_errno(errno.EEXIST, lambda: os.mkdir("e"))
    expect_errno(errno.ENOTEMPTY, lambda: os.rmdir("e"))
    expect_errno(errno.ENOTDIR, lambda: os.rmdir("f"))
    expect_errno(errno.EISDIR, lambda: os.unlink("e"))
    expect_errno(errno.ENOENT, lambda: os.unlink("missing"))
    expect_errno(errno.ENOENT, lambda: os.open("missing", os.O_RDONLY))
    expect_errno(errno.ENOTDIR, lambda: os.open("f/x", os.O_RDONLY))
    expect_errno(errno.EEXIST, lambda: os.symlink("x", "f"))
    expect_errno(errno.EEXIST, lambda: os.link("f", "g"))
    expect_errno(errno.EPERM, lambda: os.link("e", "e2"))


# ---- open flags ---------------------------------------------------------------------


@check
def open_excl_trunc_append() -> None:
    expect_errno(errno.EEXIST, lambda: os.open("f", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    fd = os.open("new_excl", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    os.close(fd)
    assert stat.S_IMODE(os.stat("new_excl").st_mode) == 0o640 & ~_umask()
    fd = os.open("g", os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert os.stat("g").st_size == 0
    fd = os.open("d/x", os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"more\n")
    os.close(fd)
    assert read("d/x") == "x\nmore\n"


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


@check
def o_tmpfile_works_or_is_eopnotsupp() -> None:
    try:
        fd = os.open(".", O_TMPFILE | os.O_RDWR, 0o600)
    except OSError as exc:
        assert exc.errno == errno.EOPNOTSUPP, errno.errorcode.get(exc.errno or 0)
        return
    os.write(fd, b"tmp")
    assert os.pread(fd, 3, 0) == b"tmp" and os.fstat(fd).st_nlink == 0
    os.close(fd)
    assert "tmp" not in "".join(os.listdir("."))


@check
def read_handle_sees_writes_after_copy_up() -> None:
    r = os.open("f", os.O_RDONLY)
    assert os.pread(r, 100, 0) == b"lower\n"
    with open("f", "r+") as w:
        w.write("UPPER")
    assert os.pread(r, 100, 0) == b"UPPER\n", os.pread(r, 100, 0)
    os.close(r)


@check
def deleted_open_file_stays_usable() -> None:
    fd = os.open("tmpdel", os.O_CREAT | os.O_RDWR, 0o600)
    os.unlink("tmpdel")
    os.write(fd, b"abc")
    assert os.fstat(fd).st_size == 3 and os.fstat(fd).st_nlink == 0
    assert os.pread(fd, 3, 0) == b"abc"
    os.ftruncate(fd, 1)
    assert os.fstat(fd).st_size == 1
    os.close(fd)
    expect_errno(errno.ENOENT, lambda: os.stat("tmpdel"))


@check
def posix_fallocate_extends() -> None:
    fd = os.open("falloc", os.O_CREAT | os.O_RDWR, 0o644)
    os.posix_fallocate(fd, 0, 1 << 20)
    assert os.fstat(fd).st_size == 1 << 20
    os.close(fd)


@check
def lseek_data_and_hole() -> None:
    fd = os.open("sparse", os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, b"a", 0)
    os.ftruncate(fd, 1 << 20)
    assert os.lseek(fd, 0, os.SEEK_DATA) == 0
    hole = os.lseek(fd, 0, os.SEEK_HOLE)
    assert 0 < hole <= 1 << 20, hole
    expect_errno(errno.ENXIO, lambda: os.lseek(fd, 2 << 20, os.SEEK_DATA))
    os.close(fd)


# ---- rename -------------------------------------------------------------------------


@check
def rename_noreplace() -> None:
    expect_errno(errno.EEXIST, lambda: renameat2("f", "g", RENAME_NOREPLACE))
    renameat2("g", "g2", RENAME_NOREPLACE)
    assert read("g2") == "other\n" and not os.path.lexists("g")


@check
def rename_exchange() -> None:
    with open("new_x", "w") as f:
        f.write("new")
    ino_f = os.stat("f").st_ino
    renameat2("f", "new_x", RENAME_EXCHANGE)
    assert read("f") == "new" and read("new_x") == "lower\n"
    assert os.stat("new_x").st_ino == ino_f
    renameat2("d", "e", RENAME_EXCHANGE)  # two lower directories
    assert sorted(os.listdir("e")) == ["sub", "x"] and os.listdir("d") == ["z"]
    expect_errno(errno.ENOENT, lambda: renameat2("f", "nope", RENAME_EXCHANGE))


@check
def rename_lower_directory_no_exdev() -> None:
    ino = os.stat("d/x").st_ino
    os.rename("d", "moved")
    assert not os.path.exists("d")
    assert read("moved/x") == "x\n" and read("moved/sub/y") == "y\n"
    assert os.stat("moved/x").st_ino == ino
    os.mkdir("d")
    assert os.listdir("d") == []


@check
def rename_errors() -> None:
    os.mkdir("rdir")
    expect_errno(errno.ENOTEMPTY, lambda: os.rename("rdir", "e"))
    expect_errno(errno.ENOTDIR, lambda: os.rename("rdir", "f"))
    expect_errno(errno.EISDIR, lambda: os.rename("f", "rdir"))
    expect_errno(errno.EINVAL, lambda: os.rename("d", "d/sub/in"))
    expect_errno(errno.ENOENT, lambda: os.rename("missing", "x"))
    os.rename("rdir", "e/inner")  # an empty dir into a lower dir
    assert os.path.isdir("e/inner")


# ---- links --------------------------------------------------------------------------


@check
def hard_link_one_inode_and_nlink() -> None:
    os.link("f", "hl")  # a lower file: copy-up then link
    a, b = os.stat("f"), os.stat("hl")
    assert a.st_ino == b.st_ino, (a.st_ino, b.st_ino)
    assert a.st_nlink == b.st_nlink == 2, (a.st_nlink, b.st_nlink)
    with open("hl", "a") as f:
        f.write("via hl\n")
    assert read("f") == "lower\nvia hl\n"
    os.rename("hl", "f")  # two links of one file: nothing happens
    assert os.path.exists("hl") and os.stat("f").st_nlink == 2
    os.unlink("f")
    assert os.stat("hl").st_nlink == 1 and read("hl") == "lower\nvia hl\n"


@check
def symlink_and_readlink() -> None:
    assert os.readlink("ln") == "f" and read("ln") == "lower\n"
    os.symlink("d/sub/y", "sl")
    assert os.readlink("sl") == "d/sub/y" and read("sl") == "y\n"
    assert stat.S_ISLNK(os.lstat("sl").st_mode)


# ---- special files ------------------------------------------------------------------


@check
def fifo_and_socket() -> None:
    os.mkfifo("fifo", 0o600)
    assert stat.S_ISFIFO(os.stat("fifo").st_mode)
    fd = os.open("fifo", os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, b"p")
    assert os.read(fd, 1) == b"p"
    os.close(fd)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind("sock")
    srv.listen(1)
    assert stat.S_ISSOCK(os.stat("sock").st_mode)
    cli = socket.socket(socket.AF_UNIX)
    cli.connect("sock")
    conn, _ = srv.accept()
    cli.send(b"s")
    assert conn.recv(1) == b"s"
    for s in (conn, cli, srv):
        s.close()


# ---- xattrs, statfs, access, locks ----------------------------------------------------


@check
def user_xattrs() -> None:
    os.setxattr("f", "user.a", b"1")
    assert os.getxattr("f", "user.a") == b"1"
    assert "user.a" in os.listxattr("f")
    expect_errno(errno.EEXIST, lambda: os.setxattr("f", "user.a", b"2", os.XATTR_CREATE))
    expect_errno(errno.ENODATA, lambda: os.setxattr("f", "user.b", b"2", os.XATTR_REPLACE))
    os.setxattr("f", "user.a", b"3", os.XATTR_REPLACE)
    assert os.getxattr("f", "user.a") == b"3"
    os.removexattr("f", "user.a")
    expect_errno(errno.ENODATA, lambda: os.getxattr("f", "user.a"))
    expect_errno(errno.ENODATA, lambda: os.removexattr("f", "user.a"))
    os.setxattr("e", "user.dir", b"d")
    assert os.getxattr("e", "user.dir") == b"d"


@check
def security_capability_xattr() -> None:
    # vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE
    caps = (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)
    os.setxattr("g", "security.capability", caps)
    assert os.getxattr("g", "security.capability") == caps


@check
def statfs_reports_sizes() -> None:
    st = os.statvfs(".")
    assert st.f_bsize > 0 and st.f_blocks > 0 and st.f_namemax >= 255, st


@check
def access_checks() -> None:
    assert os.access("f", os.R_OK | os.W_OK)
    assert os.access("e", os.X_OK)
    assert not os.access("missing", os.F_OK)
    assert not os.access("f", os.X_OK)  # no x bit: even root is refused


@check
def flock_and_posix_locks() -> None:
    a = os.open("f", os.O_RDWR)
    b = os.open("f", os.O_RDWR)
    fcntl.flock(a, fcntl.LOCK_EX)
    expect_errno((errno.EWOULDBLOCK,), lambda: fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB))
    fcntl.flock(a, fcntl.LOCK_UN)
    fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(b, fcntl.LOCK_UN)
    fcntl.lockf(a, fcntl.LOCK_EX)
    pid = os.fork()
    if pid == 0:
        try:
            fcntl.lockf(os.open("f", os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os._exit(1)
        except OSError as exc:
            os._exit(0 if exc.errno in (errno.EAGAIN, errno.EACCES) else 2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "posix lock did not conflict"
    os.close(a)
    os.close(b)


@check
def copy_up_keeps_holes() -> None:
    """A 64 MiB lower file of 8 bytes stays sparse in the upper once written."""
    assert os.stat("sparse").st_size == 64 << 20
    with open("sparse", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"mid")
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        assert f.read(4) == b"head"
        f.seek((64 << 20) - 4)
        assert f.read(4) == b"tail"
    st = os.stat("sparse")
    assert st.st_size == 64 << 20 and st.st_blocks * 512 < 1 << 20, st


# ---- limits: long names, deep trees, many symlinks, a big rename ---------------------

U255 = "\u00e9" * 127 + "u"  # 255 bytes of UTF-8 in 128 characters


@check
def names_of_255_bytes() -> None:
    """Any name the filesystem takes (NAME_MAX 255 bytes) can be created, renamed,
    linked, deleted and copied up, in the upper and from a lower layer."""
    for n in (252, 253, 254, 255):
        with open("a" * n, "w") as f:
            f.write(str(n))
        assert read("a" * n) == str(n)
    assert sorted(x for x in os.listdir(".") if x.startswith("aaa")) == [
        "a" * n for n in (252, 253, 254, 255)
    ]
    expect_errno(errno.ENAMETOOLONG, lambda: os.open("a" * 256, os.O_CREAT | os.O_WRONLY))
    os.rename("a" * 255, U255)
    renameat2(U255, "b" * 255, RENAME_NOREPLACE)
    os.link("b" * 255, "c" * 255)
    assert os.stat("c" * 255).st_ino == os.stat("b" * 255).st_ino
    assert os.stat("c" * 255).st_nlink == 2
    os.unlink("b" * 255)
    assert os.stat("c" * 255).st_nlink == 1 and not os.path.lexists("b" * 255)
    os.symlink("c" * 255, "s" * 255)
    os.chown("s" * 255, ID, ID, follow_symlinks=False)
    assert os.lstat("s" * 255).st_uid == ID and read("s" * 255) == "255"
    os.mkdir("m" * 255)
    with open("m" * 255 + "/" + "f" * 255, "w") as f:
        f.write("inside")
    os.rename("m" * 255, "k" * 255)
    assert read("k" * 255 + "/" + "f" * 255) == "inside"
    # from the lower layer: copied up, re-owned, deleted (a whiteout), created again
    low = "L" * 255
    assert read(low) == "lower\n"
    with open(low, "a") as f:
        f.write("more\n")
    assert read(low) == "lower\nmore\n"
    os.chown(low, ID, ID)
    assert os.stat(low).st_uid == ID
    os.unlink(low)
    expect_errno(errno.ENOENT, lambda: os.stat(low))
    assert low not in os.listdir(".")
    with open(low, "w") as f:
        f.write("new\n")
    assert read(low) == "new\n"
    # a lower directory renamed away (copied up whole) and made again empty
    os.rename("D" * 255, "E" * 255)
    assert read("E" * 255 + "/in") == "in\n" and not os.path.lexists("D" * 255)
    os.mkdir("D" * 255)
    assert os.listdir("D" * 255) == []
    # a lower file renamed away and back
    os.rename("G" * 255, "g2")
    assert not os.path.lexists("G" * 255) and "G" * 255 not in os.listdir(".")
    os.rename("g2", "G" * 255)
    assert read("G" * 255) == "g\n"


def _owner(i: int) -> tuple[int, int]:
    """A distinct owner per i under the full map; the single-id map has only 0."""
    return (ID + i, ID + 2000 + i) if ID else (0, 0)


@check
def symlinks_1000_distinct_owners() -> None:
    """1000 symlinks in one directory, each with its own owner (`chown -h`), keep them
    through renames, hard links, deletions and chown of their neighbours."""
    os.mkdir("many")
    for i in range(1000):
        os.symlink(f"target-{i}", f"many/l{i:04d}")
        os.chown(f"many/l{i:04d}", *_owner(i), follow_symlinks=False)
    for i in range(1000):
        st = os.lstat(f"many/l{i:04d}")
        assert (st.st_uid, st.st_gid) == _owner(i), (i, st.st_uid, st.st_gid)
        assert os.readlink(f"many/l{i:04d}") == f"target-{i}"
    os.mkdir("other")
    for i in range(0, 1000, 3):
        os.rename(f"many/l{i:04d}", f"other/r{i:04d}")
    for i in range(1, 1000, 3):
        os.unlink(f"many/l{i:04d}")
    os.link("many/l0002", "other/hl", follow_symlinks=False)
    os.chown("other/hl", *_owner(999), follow_symlinks=False)  # one inode: both names
    os.chown("many/l0005", 0, 0, follow_symlinks=False)
    want = {f"other/r{i:04d}": _owner(i) for i in range(0, 1000, 3)}
    want |= {f"many/l{i:04d}": _owner(i) for i in range(2, 1000, 3)}
    want |= {"many/l0002": _owner(999), "other/hl": _owner(999), "many/l0005": (0, 0)}
    for p, owner in want.items():
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == owner, (p, st.st_uid, st.st_gid)
    assert len(os.listdir("many")) == 333 and len(os.listdir("other")) == 335
    os.chown("ln", *_owner(1000), follow_symlinks=False)  # a lower symlink: copied up
    st = os.lstat("ln")
    assert (st.st_uid, st.st_gid) == _owner(1000) and os.stat("f").st_uid == 0


def _down(fd: int, name: str) -> int:
    """The directory `name` under `fd` (O_PATH: no OPENDIR for the mount); closes `fd`."""
    try:
        return os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def _descend(top: str, names: Iterable[str]) -> int:
    fd = os.open(top, os.O_PATH | os.O_DIRECTORY)
    for name in names:
        fd = _down(fd, name)
    return fd


def _depth(top: str, name: str) -> int:
    fd, n = os.open(top, os.O_PATH | os.O_DIRECTORY), 0
    try:
        while True:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return n
            assert stat.S_ISDIR(st.st_mode)
            fd, n = _down(fd, name), n + 1
    finally:
        os.close(fd)


def _read_at(fd: int, name: str) -> bytes:
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 100)
    finally:
        os.close(f)


@check
def tree_2000_deep() -> None:
    """2000 levels, walked with directory fds as find and rm -rf do: the path strings
    down there are past PATH_MAX (6000 bytes), the levels themselves are not a limit."""
    fd = _descend(".", [])
    for _ in range(DEPTH):
        os.mkdir("tt", dir_fd=fd)
        fd = _down(fd, "tt")
    f = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, b"bottom\n")
    os.close(f)
    os.rename("leaf", "leaf2", src_dir_fd=fd, dst_dir_fd=fd)
    os.symlink("leaf2", "sl", dir_fd=fd)
    os.chown("sl", ID, ID, dir_fd=fd, follow_symlinks=False)
    assert os.stat("sl", dir_fd=fd, follow_symlinks=False).st_uid == ID
    assert _read_at(fd, "sl") == b"bottom\n"
    os.close(fd)
    assert _depth(".", "tt") == DEPTH
    expect_errno(errno.ENAMETOOLONG, lambda: os.stat("/".join(["tt"] * DEPTH)))
    fd = _descend(".", ["tt"] * (DEPTH // 2))  # a 1000-deep subtree moves
    os.rename("tt", "uu", src_dir_fd=fd, dst_dir_fd=fd)
    os.close(fd)
    fd = _descend(".", ["tt"] * (DEPTH // 2) + ["uu"] + ["tt"] * (DEPTH // 2 - 1))
    assert _read_at(fd, "leaf2") == b"bottom\n"
    os.close(fd)
    # the image's own 2000 levels: read, written at the bottom (every level copied up)
    fd = _descend("lowerdeep", ["dd"] * DEPTH)
    assert _read_at(fd, "leaf") == b"deep\n"
    f = os.open("leaf", os.O_WRONLY | os.O_APPEND, dir_fd=fd)
    os.write(f, b"more\n")
    os.close(f)
    assert _read_at(fd, "leaf") == b"deep\nmore\n"
    os.close(fd)
    remove_tree(Path("tt"))  # rm -rf, one level at a time
    remove_tree(Path("lowerdeep/dd"))
    assert not os.path.lexists("tt") and os.listdir("lowerdeep") == []


def prewrite(root: Path) -> None:
    """What checks find written before they run: in the upper on the mount (as an
    earlier run of the container would leave it; 100k creates through FUSE would cost a
    minute), beside the lower tree locally."""
    big = root / "rename_100k_dir_while_another_process_stats" / "big"
    big.mkdir(parents=True)
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(BIG):
            os.close(os.open(f"f{i:06d}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


@check
def rename_100k_dir_while_another_process_stats() -> None:
    """A directory of 100k entries, all known to the kernel, renamed while another
    process keeps looking names up elsewhere: both go on unharmed, every moved entry
    keeps its inode and is reachable by its new name (its attributes, xattrs and mode
    reach the server, which must know where it went). Timing is tests/bench_fs.py's."""
    names = os.listdir("big")
    assert len(names) == BIG
    inos = {n: os.stat(f"big/{n}").st_ino for n in names}  # the kernel knows every one
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other process: stat a lower file and fresh names, from before the
        code = 0  # rename until 100 stats after it
        try:
            os.set_blocking(stop_r, False)
            count = errors = 0
            after = -1
            while after < 100:
                if count == 100:
                    os.write(ready_w, b"r")
                if after >= 0:
                    after += 1
                else:
                    try:
                        os.read(stop_r, 1)
                        after = 0
                    except BlockingIOError:
                        pass
                try:
                    assert os.stat("f").st_size == 6
                    os.stat(f"absent-{count}")
                    errors += 1  # it exists?
                except FileNotFoundError:
                    pass
                except Exception:
                    errors += 1
                count += 1
            os.write(out_w, json.dumps([count, errors]).encode())
        except BaseException:
            code = 1
        os._exit(code)
    assert os.read(ready_r, 1) == b"r"
    os.rename("big", "moved")
    os.write(stop_w, b"s")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stats, errors = json.loads(os.read(out_r, 100))
    for fd in (ready_r, ready_w, stop_r, stop_w, out_r, out_w):
        os.close(fd)
    assert stats > 0 and errors == 0, (stats, errors)
    assert not os.path.lexists("big")
    assert len(os.listdir("moved")) == BIG
    for i, name in enumerate(sorted(names)):
        assert os.stat(f"moved/{name}").st_ino == inos[name]
        if i % 100 == 0:  # these reach the server through the moved node
            os.chmod(f"moved/{name}", 0o600)
            assert stat.S_IMODE(os.stat(f"moved/{name}").st_mode) == 0o600
            assert "user.none" not in os.listxattr(f"moved/{name}")
            with open(f"moved/{name}", "w") as f:
                f.write(name)
            assert read(f"moved/{name}") == name
    os.rename("moved", "big")
    first = min(names)
    assert read(f"big/{first}") == first


# ---- runner -------------------------------------------------------------------------


def tree(names: Iterable[str] | None = None) -> dict[str, str | tuple[str, str]]:
    """BASE (and its EXTRA) once per check, under the check's name: each starts from
    untouched lower files."""
    return {
        f"{name}/{rel}": v
        for name in (CHECKS if names is None else names)
        for rel, v in {**BASE, **EXTRA.get(name, {})}.items()
    }


def main() -> int:
    if sys.argv[1:2] == ["--tree"]:  # write the lower tree of some checks (as make_layer)
        write_tree(Path(sys.argv[2]), tree(sys.argv[3:] or None))
        return 0
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    only = sys.argv[3:]
    results: dict[str, str | None] = {}
    for name, fn in CHECKS.items():
        if only and name not in only:
            continue
        case = root / name
        os.chdir(case)
        try:
            fn()
            results[name] = None
        except Exception:
            results[name] = traceback.format_exc(limit=3)
        finally:
            os.chdir(root)
    out.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
