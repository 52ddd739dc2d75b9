"""The union's metadata for an upper whose filesystem refuses user.* xattrs.

Normally what the container set on an upper entry (owner, full mode, rdev, xattrs) is
the `user.rsbox.override` xattr of that entry (fs.resolve). NFS without xattr support,
Lustre without `user_xattr`, vfat, ramfs and some FUSE filesystems refuse it. There the
same EntryMeta JSON goes into a small file named after the entry's inode number, in one
directory at the top of the upper (fs.resolve.META_DIR, hidden like every `.wh..wh.`
name). Keyed by inode, not by name, it follows the entry through rename, exchange and
hard links exactly as an xattr does, and an open file that was unlinked keeps it.

- Atomic: each write is a new file in the same directory renamed over the old one, so a
  reader (or a crash) sees the old metadata or the new, whole. No fsync, as for the xattr:
  the union's own writes are not fsynced either unless the container asks.
- An inode number is reused once its file is gone: the union drops the file of an inode
  when its last name goes (unlink, rmdir, rename over it). One left behind by a crash
  could be read for a new entry with the same number; each read therefore checks that
  the recorded type (directory, symlink, other) is the entry's, and every entry the union
  creates gets its metadata written at once, replacing any stale file.
- Cost: a lookup of an upper entry reads one small file (open, read, close) where the
  xattr was one getxattr; lower layers (most of a tree) are not concerned.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat

from fs.meta import EntryMeta, decode_entry, encode_entry

_seq = itertools.count(1)


def _kind(mode: int) -> int:
    if stat.S_ISDIR(mode):
        return 1
    if stat.S_ISLNK(mode):
        return 2
    return 3  # files, and the placeholders of devices, fifos and sockets


class InodeMeta:
    """The metadata files of one upper, in directory `root`."""

    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, st: os.stat_result) -> str:
        return f"{self.root}/{st.st_ino}"

    def read(self, st: os.stat_result) -> EntryMeta | None:
        """The metadata recorded for the entry whose lstat/fstat is `st`, or None."""
        try:
            with open(self._path(st), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        meta = decode_entry(raw)
        if _kind(meta.mode) != _kind(st.st_mode):
            return None  # left by a crash for an inode number now reused
        return meta

    def write(self, st: os.stat_result, meta: EntryMeta) -> None:
        tmp = f"{self.root}/.tmp.{os.getpid()}.{next(_seq)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.write(fd, encode_entry(meta))
            finally:
                os.close(fd)
            os.rename(tmp, self._path(st))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def drop(self, st: os.stat_result) -> None:
        """The entry's inode is going away (its last name is removed)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(st))


def takes_user_xattrs(directory: str) -> bool:
    """Whether the filesystem of `directory` keeps user.* xattrs on a new file there."""
    name = f"{directory}/.wh..wh..rsbox-tmp.probe.{os.getpid()}.{next(_seq)}"
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.setxattr(fd, "user.rsbox.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)
        os.unlink(name)
    return True
