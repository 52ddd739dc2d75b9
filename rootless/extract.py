"""Safe, unprivileged extraction of one (hostile) layer tarball.

A layer tarball is untrusted input. The rules this module follows, and why:

* Nothing is ever written outside the layer directory. Every parent directory of an
  entry is reached by walking from the layer root one component at a time with
  ``os.open(name, O_PATH | O_NOFOLLOW | O_DIRECTORY, dir_fd=parent)``: a symlink or a file
  where a directory is expected makes the walk fail, so the kernel never follows a link
  that the tarball planted. Entries are then created relative to that parent fd
  (``O_CREAT | O_EXCL | O_NOFOLLOW``, ``mkdirat``, ``symlinkat``, ``linkat`` without
  ``AT_SYMLINK_FOLLOW``). No path string is ever joined and handed to a following call.

* Policy per hostile case (Docker's behaviour where it has one):

  =============================  =====================================================
  leading ``/`` (``/etc/x``)     neutralised: stripped, as Docker and tar do
  ``.`` and empty components     neutralised: dropped
  ``..`` that stays inside       neutralised: resolved lexically (``a/../b`` -> ``b``)
  ``..`` that escapes the root   rejected (``LayerError``)
  symlink/file in a parent path  rejected: ``a -> /etc`` then ``a/passwd`` never writes
  hardlink target outside/absent rejected; a hardlink to a symlink links the symlink
                                 itself (``linkat`` without follow), never its target
  device node, FIFO              neutralised: empty regular placeholder (mode 0600) on
                                 disk, the full st_mode and rdev in ``meta``
  setuid/setgid bits             stripped on disk (a setuid file owned by the user is a
                                 hazard on a shared machine), kept in ``meta``
  modes locking the user out     dirs get u+rwx, files u+rw on disk; true mode in meta
  uid/gid != 0                   everything on disk belongs to the user; ids in meta
  xattrs (PAX SCHILY.xattr.*)    never set on disk (security.* cannot be, user.* would
                                 be served twice); kept in ``meta``
  entry replaces an earlier one  later entry wins, like tar; a dir over a dir merges
  uncompressed size > limit      rejected (decompression bombs)
  sparse member (GNU, PAX 0.x/1) written sparse: only its data regions are written
  all-zero blocks of any member  left as holes (a gzip bomb of zeros costs no disk)
  store filesystem near full     rejected before it drops below the reserve (StoreFull)
  =============================  =====================================================

* What reaches the disk is bounded by what the data really holds, not by what it
  expands to. A file is created empty (``O_EXCL``), its non-zero 4 KiB blocks are written
  with ``pwrite`` at their offsets, and ``ftruncate`` gives it its full length at the end:
  the kernel reads the blocks never written as zeros and allocates nothing for them
  (ext4, xfs, btrfs, tmpfs all keep holes; ``st_blocks`` shows what is allocated). A
  sparse member's map (``TarInfo.sparse``) says where its data regions go; only those
  bytes are read from the archive, so a 10 KiB tar describing 2 GiB costs 10 KiB of
  reading too. Runs of zeros inside data (and any member of a bomb) are skipped the same
  way, block by block.

* Every byte written is charged to a `SpaceGuard` first (one block more per entry, for
  its inode and directory slot). It looks at ``statvfs`` again after every
  `RECHECK_BYTES` charged, or sooner when that would eat into the reserve. ext4 and xfs
  count written-but-not-yet-allocated (delalloc) blocks as used in ``f_bavail`` at once
  (tmpfs has nothing to delay), so each look sees what this and every other process
  really wrote. Several writers at once can overshoot the reserve by at most
  `RECHECK_BYTES` each.

* OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are ordinary empty files in the tarball
  and stay ordinary empty files on disk: interpreting them is the union filesystem's job.
  Where ``.wh.NAME`` does not fit in 255 bytes (NAME of 252-255), the whiteout is
  overlayfs's marker instead, a 0/0 character device at NAME, which the union also reads
  as a whiteout and which an unprivileged user may create (Linux >= 5.8).

* The diff_id (sha256 of the uncompressed stream, end-of-archive padding included) is
  computed while extracting, in the same single pass.

Directory modes and times are applied at the end, deepest first, again through fd walks
(a later entry may have replaced a directory by a symlink; then it is skipped).
"""

from __future__ import annotations

import base64
import bz2
import errno
import gzip
import hashlib
import importlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from fs.meta import EntryMeta, LayerMeta

from .errors import LayerError, StoreFull

#: Default cap on the uncompressed size of one layer (decompression bombs, absurd sizes).
DEFAULT_MAX_BYTES = 256 * 1024**3

#: How many bytes a `SpaceGuard` lets through between two looks at ``statvfs``.
RECHECK_BYTES = 8 * 1024 * 1024

_CHUNK = 1024 * 1024
_BLOCK = 4096  # the unit of holes: a file system block (4 KiB nearly everywhere)
_ZERO_BLOCK = bytes(_BLOCK)
_DIR_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_HINT_HOSTILE = "the image is malformed or hostile; rsbox will not extract it"
_HINT_CORRUPT = "the blob is damaged or not a layer tarball; re-import or re-pull the image"


@dataclass(frozen=True)
class ExtractResult:
    diff_id: str  # hex sha256 of the uncompressed tar stream
    size: int  # bytes of the uncompressed tar stream
    meta: LayerMeta = field(repr=False)


# --- decompression ---------------------------------------------------------------------


def detect_compression(head: bytes) -> str:
    """Name the compression of a stream from its first bytes ("none" for a plain tar)."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"BZh"):
        return "bzip2"
    return "none"


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def open_decompressed(raw: BinaryIO) -> Readable:
    """Wrap ``raw`` (seekable or not) in a decompressor chosen by magic bytes."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(Any, raw))
    kind = detect_compression(buffered.peek(8)[:8])
    if kind == "gzip":
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(buffered, "rb")
    if kind == "bzip2":
        return bz2.BZ2File(buffered, "rb")
    if kind == "zstd":
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError as exc:
            raise LayerError(
                "layer is zstd-compressed and the zstandard module is not installed",
                hint="install it in rsbox's environment: pip install zstandard",
            ) from exc
        reader: Readable = zstandard.ZstdDecompressor().stream_reader(buffered)
        return reader
    return buffered


_CORRUPT: tuple[type[Exception], ...] = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def _zstd_errors() -> tuple[type[Exception], ...]:
    """zstandard.ZstdError (a damaged zstd frame), if the module is there."""
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        return ()
    return (zstandard.ZstdError,)


class _HashingReader(io.RawIOBase):
    """Counts and hashes every byte read through it; enforces the size cap."""

    def __init__(self, inner: Readable, max_bytes: int) -> None:
        self._inner = inner
        self._max = max_bytes
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._inner.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.sha.update(data)
        self.count += n
        if self.count > self._max:
            raise LayerError(
                f"layer is larger than the limit of {self._max} bytes uncompressed",
                hint=_HINT_HOSTILE,
            )
        return n

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


# --- writing: bounded by the store's free space, zeros left as holes -------------------


def _gib(n: int) -> str:
    """``2 GiB``, ``1.5 GiB``, ``512 MiB``: a size for a one-line message."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


class SpaceGuard:
    """Refuses, before they happen, writes that would leave less than ``reserve`` bytes
    free (to an unprivileged user: ``f_bavail``) on the filesystem of ``where``.

    ``charge(n)`` comes before n bytes are written; it raises `StoreFull` naming ``what``
    (``layer sha256:...``). ``statvfs`` is a parameter so that tests can give a fake
    filesystem of any size."""

    def __init__(
        self,
        where: Path,
        reserve: int,
        what: str,
        *,
        hint: str | None = None,
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.where = where
        self.reserve = reserve
        self.what = what
        self.hint = hint
        self._statvfs = statvfs
        self._unchecked = 0  # charged since the last look
        self._margin = -1  # what may be charged before the next look (-1: look first)

    def charge(self, nbytes: int) -> None:
        self._unchecked += nbytes
        if self._unchecked > self._margin:
            self._look(nbytes)

    def _look(self, pending: int) -> None:
        # Everything charged before this call is written and counted in f_bavail;
        # `pending` is about to be.
        st = self._statvfs(self.where)
        room = st.f_bavail * st.f_frsize - self.reserve - pending
        if room < 0:
            raise StoreFull(
                f"{self.what} would leave less than {_gib(self.reserve)} free on {self.where}",
                hint=self.hint,
            )
        self._margin = min(room, RECHECK_BYTES)
        self._unchecked = 0


def _data_runs(data: bytes, offset: int) -> list[tuple[int, int]]:
    """The (start, end) slices of ``data`` (to go at file ``offset``) that must be
    written: all but the all-zero pieces of 4 KiB-aligned blocks."""
    n = len(data)
    if _ZERO_BLOCK not in data:  # no aligned zero block can hide in it: one write
        return [(0, n)] if n else []
    if data == bytes(n):
        return []
    runs: list[tuple[int, int]] = []
    start: int | None = None
    i = 0
    while i < n:
        end = min(n, i + _BLOCK - (offset + i) % _BLOCK)
        if data[i:end] == _ZERO_BLOCK[: end - i]:
            if start is not None:
                runs.append((start, i))
                start = None
        elif start is None:
            start = i
        i = end
    if start is not None:
        runs.append((start, n))
    return runs


def write_sparse(fd: int, offset: int, data: bytes, guard: SpaceGuard | None) -> None:
    """Write ``data`` at ``offset`` of the new (all-hole) file ``fd``, leaving its
    all-zero blocks unwritten. The caller gives the file its length (``ftruncate``)."""
    for start, end in _data_runs(data, offset):
        if guard is not None:
            guard.charge(end - start)
        view = memoryview(data)[start:end]
        pos = offset + start
        while view:
            written = os.pwrite(fd, view, pos)
            view = view[written:]
            pos += written


def copy_stream_sparse(src: Readable, fd: int, guard: SpaceGuard | None) -> tuple[str, int]:
    """Copy ``src`` to the new file ``fd`` (zeros as holes, full length); return its
    sha256 (hex) and size."""
    sha = hashlib.sha256()
    pos = 0
    while chunk := src.read(_CHUNK):
        sha.update(chunk)
        write_sparse(fd, pos, chunk, guard)
        pos += len(chunk)
    os.ftruncate(fd, pos)
    return sha.hexdigest(), pos


def _data_regions(member: tarfile.TarInfo) -> list[tuple[int, int]]:
    """(offset, size) of the data a regular member stores, in archive order: the whole
    file, or a sparse member's map (checked: in order, inside the file)."""
    sparse = cast("list[tuple[int, int]] | None", member.sparse)  # typeshed says int
    if not sparse:
        return [(0, member.size)]
    regions = []
    end = 0
    for offset, size in sparse:
        if size == 0:
            continue  # GNU writes a (0, 0) terminator; PAX an empty last region
        if offset < end or size < 0 or offset + size > member.size:
            raise LayerError(
                f"layer entry {member.name!r} has a malformed sparse map", hint=_HINT_HOSTILE
            )
        regions.append((offset, size))
        end = offset + size
    return regions


def copy_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, guard: SpaceGuard | None
) -> None:
    """Copy the regular member's data into the new file ``fd``: a sparse member stays
    sparse, zero blocks become holes, the file gets its full length. Reads the archive
    directly from the member's data offset (forward only: works on a stream too)."""
    fileobj = cast(Any, tar.fileobj)
    fileobj.seek(member.offset_data)
    for offset, size in _data_regions(member):
        pos, left = offset, size
        while left:
            chunk = fileobj.read(min(_CHUNK, left))
            if not chunk:
                raise tarfile.ReadError(f"unexpected end of data in {member.name!r}")
            write_sparse(fd, pos, chunk, guard)
            pos += len(chunk)
            left -= len(chunk)
    os.ftruncate(fd, member.size)


# --- path handling ---------------------------------------------------------------------


def clean_member_path(name: str) -> tuple[str, ...]:
    """Normalise a member name into components inside the layer root (see module doc).

    Returns () for the root itself; raises LayerError if ``..`` escapes the root.
    """
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise LayerError(
                    f"layer entry {name!r} points outside the layer ('..')", hint=_HINT_HOSTILE
                )
            parts.pop()
            continue
        if "\x00" in comp:
            raise LayerError(f"layer entry {name!r} contains a NUL byte", hint=_HINT_HOSTILE)
        parts.append(comp)
    return tuple(parts)


@contextmanager
def _walk_parent(root_fd: int, parts: tuple[str, ...], *, create: bool) -> Iterator[int]:
    """Yield an O_PATH fd of the directory ``parts`` below ``root_fd``, never following
    symlinks; missing directories are created (mode 0755) when ``create``."""
    fd = os.dup(root_fd)
    try:
        for i, comp in enumerate(parts):
            try:
                nfd = os.open(comp, _DIR_WALK, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    _fchmod_dir(fd, comp, 0o755)  # an implicit parent: 0755, whatever the umask
                nfd = os.open(comp, _DIR_WALK, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = "/".join(parts[: i + 1])
                raise LayerError(
                    f"layer entry below {where!r}: {where!r} is a symlink or not a directory",
                    hint=_HINT_HOSTILE,
                ) from exc
            os.close(fd)
            fd = nfd
        yield fd
    finally:
        os.close(fd)


def _fchmod_dir(parent_fd: int, name: str, mode: int) -> None:
    fd = os.open(
        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
    )
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _remove_existing(parent_fd: int, name: str, *, keep_dir: bool) -> bool:
    """Make room for a new entry ``name``. Returns True if a directory was kept."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
        try:
            os.fchmod(dfd, 0o700)
        finally:
            os.close(dfd)
        shutil.rmtree(name, dir_fd=parent_fd)
    else:
        os.unlink(name, dir_fd=parent_fd)
    return False


# --- metadata --------------------------------------------------------------------------


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            try:
                out[key[len("LIBARCHIVE.xattr.") :]] = base64.b64decode(value + "==")
            except ValueError:
                continue
    return out


def _disk_mode(member: tarfile.TarInfo) -> int:
    """Permission bits to put on disk for a file or directory (see module doc)."""
    perm = member.mode & 0o7777 & ~(stat.S_ISUID | stat.S_ISGID)
    return perm | (0o700 if member.isdir() else 0o600)


def _true_mode(member: tarfile.TarInfo) -> int:
    perm = member.mode & 0o7777
    if member.isdir():
        return stat.S_IFDIR | perm
    if member.issym():
        return stat.S_IFLNK | 0o777
    if member.ischr():
        return stat.S_IFCHR | perm
    if member.isblk():
        return stat.S_IFBLK | perm
    if member.isfifo():
        return stat.S_IFIFO | perm
    return stat.S_IFREG | perm


def _entry_meta(member: tarfile.TarInfo, disk_mode: int) -> EntryMeta | None:
    """The meta override for ``member``, or None when disk already tells the truth."""
    true_mode = _true_mode(member)
    xattrs = _xattrs(member)
    rdev = 0
    if member.ischr() or member.isblk():
        rdev = os.makedev(member.devmajor, member.devminor)
    if member.uid == 0 and member.gid == 0 and true_mode == disk_mode and not rdev and not xattrs:
        return None
    return EntryMeta(uid=member.uid, gid=member.gid, mode=true_mode, rdev=rdev, xattrs=xattrs)


# --- extraction ------------------------------------------------------------------------


def extract_layer(
    blob: Path,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    guard: SpaceGuard | None = None,
) -> ExtractResult:
    """Extract the layer tarball ``blob`` (plain, gzip, xz, bzip2, zstd if available) into
    ``dest/fs`` and write ``dest/meta``. ``dest`` must be an empty or missing directory
    (in the store's tmp/; the store renames it into place once complete)."""
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    (dest / "fs").mkdir(mode=0o755)
    os.chmod(dest / "fs", 0o755)  # the image's "/", independent of the user's umask
    with open(blob, "rb") as raw:
        result = extract_stream(raw, dest / "fs", max_bytes=max_bytes, guard=guard)
    result.meta.save(dest / "meta")
    return result


def extract_stream(
    raw: BinaryIO,
    fs_dir: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    guard: SpaceGuard | None = None,
) -> ExtractResult:
    """Extract a (possibly compressed) tar stream into the existing directory ``fs_dir``,
    every write charged to ``guard`` first."""
    meta = LayerMeta()
    dirs: dict[tuple[str, ...], tuple[int, float]] = {}
    written = 0
    root_fd = os.open(fs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            dec = open_decompressed(raw)
            reader = _HashingReader(dec, max_bytes)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    if member.isreg():
                        # member.size is the expanded size (sparse files included): a tiny
                        # sparse entry must not fill the disk.
                        written += member.size
                        if written > max_bytes:
                            raise LayerError(
                                f"layer expands to more than the limit of {max_bytes} bytes",
                                hint=_HINT_HOSTILE,
                            )
                    if guard is not None:
                        guard.charge(_BLOCK)  # its inode and directory slot, roughly
                    _extract_member(tar, member, root_fd, meta, dirs, guard)
                    tar.members = []  # type: ignore[attr-defined]  # stream mode: do not keep every header in memory
            reader.drain()
        except LayerError:
            raise
        except _CORRUPT + _zstd_errors() as exc:
            raise LayerError(f"corrupt layer tarball: {exc}", hint=_HINT_CORRUPT) from exc
        except OSError as exc:
            if isinstance(exc, gzip.BadGzipFile) or exc.errno is None:
                raise LayerError(f"corrupt layer tarball: {exc}", hint=_HINT_CORRUPT) from exc
            raise LayerError(
                f"cannot extract layer: {exc}",
                hint="check free space and permissions of the rsbox store",
            ) from exc
        _finish_dirs(root_fd, dirs)
    finally:
        os.close(root_fd)
    return ExtractResult(diff_id=reader.sha.hexdigest(), size=reader.count, meta=meta)


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    root_fd: int,
    meta: LayerMeta,
    dirs: dict[tuple[str, ...], tuple[int, float]],
    guard: SpaceGuard | None,
) -> None:
    parts = clean_member_path(member.name)
    if not parts:
        return  # "./": the layer root itself; its mode is not the image's business
    rel = "/".join(parts)
    with _walk_parent(root_fd, parts[:-1], create=True) as pfd:
        name = parts[-1]
        if member.isdir():
            if not _remove_existing(pfd, name, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=pfd)
            else:
                # Keep the walk honest: the existing entry must still be a real dir.
                os.close(os.open(name, _DIR_WALK, dir_fd=pfd))
            disk = _disk_mode(member)
            dirs[parts] = (disk, float(member.mtime))
            _record(meta, rel, _entry_meta(member, stat.S_IFDIR | disk))
            return
        if member.isreg() and _too_long_for_a_whiteout(name):
            hidden = name[len(WHITEOUT_PREFIX) :]
            _remove_existing(pfd, hidden, keep_dir=False)
            os.mknod(hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
            _record(meta, "/".join((*parts[:-1], hidden)), None)
            return
        _remove_existing(pfd, name, keep_dir=False)
        dirs.pop(parts, None)
        if member.issym():
            os.symlink(member.linkname, name, dir_fd=pfd)
            _utime(pfd, name, member.mtime)
            _record(meta, rel, _entry_meta(member, stat.S_IFLNK | 0o777))
        elif member.islnk():
            _hardlink(member, root_fd, pfd, name, rel, meta)
        elif member.ischr() or member.isblk() or member.isfifo():
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=pfd
            )
            os.close(fd)
            _utime(pfd, name, member.mtime)
            _record(meta, rel, _entry_meta(member, stat.S_IFREG | 0o600))
        elif member.isreg():
            disk = _disk_mode(member)
            _write_file(tar, member, pfd, name, disk, guard)
            _record(meta, rel, _entry_meta(member, stat.S_IFREG | disk))
        else:
            raise LayerError(
                f"layer entry {rel!r} has an unsupported type {member.type!r}", hint=_HINT_HOSTILE
            )


WHITEOUT_PREFIX = ".wh."


def _too_long_for_a_whiteout(name: str) -> bool:
    """`.wh.NAME` whose name the filesystem cannot hold (NAME is 252-255 bytes)."""
    return name.startswith(WHITEOUT_PREFIX) and len(name.encode("utf-8", "surrogateescape")) > 255


def _record(meta: LayerMeta, rel: str, entry: EntryMeta | None) -> None:
    if entry is None:
        meta.entries.pop(rel, None)
    else:
        meta.set(rel, entry)


def _utime(pfd: int, name: str, mtime: float) -> None:
    os.utime(name, (mtime, mtime), dir_fd=pfd, follow_symlinks=False)


def _write_file(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    pfd: int,
    name: str,
    mode: int,
    guard: SpaceGuard | None,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=pfd)
    try:
        copy_member(tar, member, fd, guard)
        os.fchmod(fd, mode)
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)


def _hardlink(
    member: tarfile.TarInfo, root_fd: int, pfd: int, name: str, rel: str, meta: LayerMeta
) -> None:
    target = clean_member_path(member.linkname)
    if not target:
        raise LayerError(f"hardlink {rel!r} points at the layer root", hint=_HINT_HOSTILE)
    try:
        with _walk_parent(root_fd, target[:-1], create=False) as tfd:
            st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(f"hardlink {rel!r} points at a directory", hint=_HINT_HOSTILE)
            os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise LayerError(
            f"hardlink {rel!r} points at {member.linkname!r}, which is not in the layer",
            hint=_HINT_HOSTILE,
        ) from exc
    target_meta = meta.get("/".join(target))
    if target_meta is not None:
        meta.set(rel, target_meta)
    else:
        meta.entries.pop(rel, None)


def _finish_dirs(root_fd: int, dirs: dict[tuple[str, ...], tuple[int, float]]) -> None:
    """Apply directory modes and mtimes, deepest first, through fresh no-follow walks."""
    for parts in sorted(dirs, key=len, reverse=True):
        mode, mtime = dirs[parts]
        try:
            with _walk_parent(root_fd, parts[:-1], create=False) as pfd:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
        except (OSError, LayerError):
            continue  # replaced by a non-directory later in the stream
        try:
            os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
