"""Copying one entry from a lower layer into the upper, keeping its metadata.

The caller (fs.union) orders the work (parents first) and owns the inode table; this
module only moves bytes and metadata. A regular file is written under a temporary name
in the same directory (rename(2) must stay on one filesystem) and renamed into place, so
a crash never leaves a half-copied file under the real name. The reserved `.wh..wh.`
prefix keeps the temporary out of every listing, even after a crash.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from pathlib import Path

from fs.meta import EntryMeta
from fs.resolve import disk_mode, update_links, write_override

TMP_PREFIX = ".wh..wh..rsbox-tmp."
_seq = itertools.count(1)


def _copy_data(src: str, dst: str) -> None:
    """Regular file contents; sparse regions stay sparse (SEEK_DATA/SEEK_HOLE walk)."""
    fi = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fi).st_size
            off = 0
            while off < size:
                try:
                    data = os.lseek(fi, off, os.SEEK_DATA)
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        raise  # EIO and the like: a read error, not the end of the data
                    break  # ENXIO: only a hole is left
                hole = os.lseek(fi, data, os.SEEK_HOLE)
                pos = data
                while pos < hole:
                    n = os.copy_file_range(fi, fo, hole - pos, pos, pos)
                    if n == 0:
                        break
                    pos += n
                off = hole
            os.ftruncate(fo, size)
        finally:
            os.close(fo)
    finally:
        os.close(fi)


def copy_entry(src: str, dst: Path, meta: EntryMeta, st: os.stat_result) -> None:
    """Create `dst` in the upper as a copy of lower entry `src` (lstat `st`)."""
    times = (st.st_atime_ns, st.st_mtime_ns)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, disk_mode(meta.mode))
        write_override(dst, meta)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        update_links(dst.parent, dst.name, meta)
    else:
        tmp = dst.with_name(f"{TMP_PREFIX}{os.getpid()}.{next(_seq)}")
        try:
            if stat.S_ISREG(st.st_mode):
                _copy_data(src, os.fspath(tmp))
            else:  # fifo/socket/device on disk or placeholder: the override keeps the type
                tmp.touch()
            os.chmod(tmp, disk_mode(meta.mode))
            write_override(tmp, meta)
            os.utime(tmp, ns=times)
            os.rename(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.utime(dst, ns=times, follow_symlinks=False)
