"""Copying one entry from a lower layer into the upper, keeping its metadata.

The caller (fs.union) orders the work (parents first), owns the inode table and writes a
symlink's metadata (fs.resolve.write_link_meta); this module only moves bytes and the
override of files and directories. A regular file is written under a temporary name in the
same directory (rename(2) must stay on one filesystem) and renamed into place, so a crash
never leaves a half-copied file under the real name. The reserved `.wh..wh.` prefix keeps
the temporary out of every listing, even after a crash. That copy is a `FileCopy` in
steps, so that fs.server can move the bytes of a big file on a worker thread while it
goes on answering other requests (the temporary is all the thread touches).

Bytes move with copy_file_range(2), in the kernel (a reflink where the filesystem can),
region by region between SEEK_DATA and SEEK_HOLE so holes stay holes. Since Linux 5.19 it
fails with EXDEV between two filesystems (a layer on one tmpfs, the upper on another, or
any lower on NFS); then, as fuse-overlayfs does, the same regions are copied with
pread/pwrite, still skipping the holes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass

from fs.meta import EntryMeta
from fs.resolve import Layer, disk_mode, join, split, temp_name, write_override

# copy_file_range cannot do this pair: EXDEV across filesystems, the others from
# filesystems (or kernels) without it. The data regions are copied by hand instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})
_CHUNK = 1 << 20


def _copy_region(fi: int, fo: int, pos: int, end: int, in_kernel: bool) -> bool:
    """Bytes [pos, end) of `fi` to the same offsets of `fo`; returns whether the kernel
    copy still works (False once it has refused this pair of files)."""
    while pos < end:
        if in_kernel:
            try:
                n = os.copy_file_range(fi, fo, end - pos, pos, pos)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                in_kernel = False
                continue
        else:
            buf = os.pread(fi, min(end - pos, _CHUNK), pos)
            n = len(buf)
            done = 0
            while done < n:
                done += os.pwrite(fo, buf[done:], pos + done)
        if n == 0:
            break  # the file shrank under us: the rest reads as the hole ftruncate makes
        pos += n
    return in_kernel


def _copy_data(src: str, dst: str) -> None:
    """Regular file contents; sparse regions stay sparse (SEEK_DATA/SEEK_HOLE walk)."""
    fi = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fi).st_size
            off = 0
            in_kernel = True
            while off < size:
                try:
                    data = os.lseek(fi, off, os.SEEK_DATA)
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        raise  # EIO and the like: a read error, not the end of the data
                    break  # ENXIO: only a hole is left
                hole = os.lseek(fi, data, os.SEEK_HOLE)
                in_kernel = _copy_region(fi, fo, data, hole, in_kernel)
                off = hole
            os.ftruncate(fo, size)
        finally:
            os.close(fo)
    finally:
        os.close(fi)


@dataclass(frozen=True)
class FileCopy:
    """A file's copy-up in steps, so that the bytes can move on another thread while the
    caller goes on answering requests (fs.server does, for big files):

    - `run` writes the temporary next to the target: the data (`data`), or nothing when
      the caller truncates the copy to 0 at once (an open with O_TRUNC). It touches
      nothing else, so it may run on any thread, and leaves nothing behind if it fails.
    - `finish` gives the temporary its metadata and renames it into place; `abort`
      removes it instead.
    """

    src: str
    tmp: str
    dst: str
    meta: EntryMeta
    st: os.stat_result
    data: bool = True

    @classmethod
    def plan(
        cls, src: str, upper: Layer, path: str, meta: EntryMeta, st: os.stat_result, data: bool
    ) -> FileCopy:
        tmp = upper.at(join(split(path)[0], temp_name()))
        return cls(src, tmp, upper.at(path), meta, st, data and stat.S_ISREG(st.st_mode))

    @property
    def size(self) -> int:
        """Bytes `run` copies (at most: holes are skipped)."""
        return self.st.st_size if self.data else 0

    def run(self) -> None:
        try:
            if self.data:
                _copy_data(self.src, self.tmp)
            else:  # truncated at once, or fifo/socket/device: the override keeps the type
                os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC))
        except BaseException:
            self.abort()
            raise

    def finish(self) -> None:
        times = (self.st.st_atime_ns, self.st.st_mtime_ns)
        try:
            os.chmod(self.tmp, disk_mode(self.meta.mode))
            write_override(self.tmp, self.meta)
            os.utime(self.tmp, ns=times)
            os.rename(self.tmp, self.dst)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def copy_entry(
    src: str, upper: Layer, path: str, meta: EntryMeta, st: os.stat_result, *, data: bool = True
) -> None:
    """Create `path` in the upper as a copy of lower entry `src` (lstat `st`); `data`
    False leaves a regular file empty (its caller truncates it to 0 at once)."""
    times = (st.st_atime_ns, st.st_mtime_ns)
    dst = upper.at(path)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, disk_mode(meta.mode))
        write_override(dst, meta)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    else:
        job = FileCopy.plan(src, upper, path, meta, st, data)
        job.run()
        job.finish()
    os.utime(dst, ns=times, follow_symlinks=False)
