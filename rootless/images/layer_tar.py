"""Tarballs of a container's files: OCI layers (`rsbox commit`), flat trees (`rsbox
export`, `rsbox cp` out of a container).

What a member says comes from the union's metadata (fs.changes.Entry), never from the
disk: every file in the store belongs to the host user, while the container saw root's
/etc, a setuid binary, a device node (an empty placeholder on disk), xattrs such as
security.capability. So:

- uid, gid, mode (setuid/setgid/sticky included), device numbers and xattrs are the
  container's; user and group names are left empty (ids are the truth, as in Docker's
  layers); xattrs are PAX `SCHILY.xattr.NAME` records, sorted by name (binary values
  as they are: Python's tarfile then adds `hdrcharset=BINARY`, which Go's archive/tar
  and GNU tar read);
- a file with several names is written once, at its first name in walk order, and
  each other name is a hard link (`Lnk`) to it;
- sockets are left out (no tar type holds one), as Docker does;
- deletions are OCI whiteouts: an empty `.wh.NAME`, and `.wh..wh..opq` in a directory
  that hides what the layers below hold in it (mode 0644, owner 0:0, mtime 0);
- times: the mtime in whole seconds (Docker truncates too), no atime or ctime; with a
  `clamp` (rsbox commit --timestamp, SOURCE_DATE_EPOCH) no mtime is later than it.

Reproducible bytes: the members come in the walk's order (sorted, see fs.changes), the
PAX records in a fixed order, gzip's header has no name and mtime 0 (level 6, Go's
default, what Docker and containerd write), zstd uses level 3 in one thread. The same
changes with the same clamp give the same blob, byte for byte.

The diff_id (sha256 of the tar) and the blob digest are computed while writing, in one
pass.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

from fs.changes import Entry, LayerItem, Opaque, Whiteout
from fs.resolve import OPAQUE_MARKER, WHITEOUT_PREFIX, join, split
from rootless.errors import UsageError

COMPRESSIONS = ("gzip", "zstd")
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


class HashingWriter:
    """A write-only stream that hashes and counts what goes through it to `sink`."""

    def __init__(self, sink: BinaryIO | HashingWriter | None = None) -> None:
        self._sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        if self._sink is not None:
            self._sink.flush()

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def _header(name: str, entry: Entry, clamp: int | None) -> tarfile.TarInfo | None:
    """The member for `entry` under `name` (None for a socket); data not included."""
    m = entry.meta
    info = tarfile.TarInfo(name)
    info.uid, info.gid = m.uid, m.gid
    info.uname = info.gname = ""
    info.mode = m.mode & 0o7777
    mtime = entry.mtime_ns // 1_000_000_000
    info.mtime = mtime if clamp is None else min(mtime, clamp)
    kind = stat.S_IFMT(m.mode)
    if kind == stat.S_IFDIR:
        info.type = tarfile.DIRTYPE
    elif kind == stat.S_IFLNK:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(m.rdev), os.minor(m.rdev)
    elif kind == stat.S_IFIFO:
        info.type = tarfile.FIFOTYPE
    elif kind == stat.S_IFSOCK:
        return None
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    if m.xattrs:
        info.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
            for k, v in sorted(m.xattrs.items())
        }
    return info


def _marker(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.uname = info.gname = ""
    return info


class TarWriter:
    """Members from fs.changes items onto a stream (`w|`: pipes and stdout work).

    `add` takes an item and, optionally, the name to give it (`rsbox cp` renames the
    top of what it copies); hard links are tracked across calls."""

    def __init__(self, out: BinaryIO | HashingWriter, *, clamp: int | None = None) -> None:
        self._tar = tarfile.open(  # noqa: SIM115 (closed by close())
            fileobj=cast("IO[bytes]", out),  # a write()-only stream is enough for w|
            mode="w|",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",
        )
        self._clamp = clamp
        self._first: dict[tuple[int, int], str] = {}  # a file's first name, by host inode

    def add(self, item: LayerItem, name: str | None = None) -> None:
        if isinstance(item, Whiteout):
            parent, base = split(name if name is not None else item.path)
            self._tar.addfile(_marker(join(parent, WHITEOUT_PREFIX + base)))
            return
        if isinstance(item, Opaque):
            self._tar.addfile(_marker(join(name if name is not None else item.path, OPAQUE_MARKER)))
            return
        name = item.path if name is None else name
        info = _header(name, item, self._clamp)
        if info is None:
            return
        if item.inode is not None and not item.is_dir:
            first = self._first.get(item.inode)
            if first is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                info.size = 0
                info.pax_headers = {}
                self._tar.addfile(info)
                return
            self._first[item.inode] = name
        if info.type == tarfile.REGTYPE:
            with item.open() as f:
                self._tar.addfile(info, f)
        else:
            self._tar.addfile(info)

    def close(self) -> None:
        self._tar.close()


@dataclass(frozen=True)
class WrittenLayer:
    diff_id: str  # hex sha256 of the tar
    digest: str  # hex sha256 of the compressed blob
    size: int  # bytes of the tar
    blob_size: int  # bytes of the blob
    media_type: str


def check_compression(name: str) -> str:
    if name not in COMPRESSIONS:
        raise UsageError(
            f"unknown compression {name!r}", hint="use --compression gzip or --compression zstd"
        )
    return name


def write_layer(
    items: Iterable[LayerItem],
    dest: BinaryIO,
    *,
    compression: str = "gzip",
    clamp: int | None = None,
) -> WrittenLayer:
    """Write the layer blob of `items` (fs.changes order) to `dest`."""
    check_compression(compression)
    blob = HashingWriter(dest)
    compressor: Any
    if compression == "gzip":
        compressor = gzip.GzipFile(
            filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=blob, mtime=0
        )
    else:
        zstandard: Any = importlib.import_module("zstandard")
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0).stream_writer(
            blob, closefd=False
        )
    tar_stream = HashingWriter(compressor)
    writer = TarWriter(tar_stream, clamp=clamp)
    for item in items:
        writer.add(item)
    writer.close()
    compressor.close()
    blob.flush()
    return WrittenLayer(
        diff_id=tar_stream.hexdigest(),
        digest=blob.hexdigest(),
        size=tar_stream.size,
        blob_size=blob.size,
        media_type=MEDIA_TYPES[compression],
    )
