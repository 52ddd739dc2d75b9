"""The floor of rsbox's filesystem design, for `nox -s bench -- --only fs` (kind "floor").

What any server built as fs.server is pays per request, with a union that costs nothing:
pyfuse3, trio, fs.server's own session loop (`serve`), the same libfuse shim (listings and
symlinks cached by the kernel, directories opened without the server, READ and the
RELEASE of read-only handles answered in C). The merged tree of the lowers (bottom first,
upper layers' names over lower ones; the bench image has no whiteouts) is read into memory
before the mount, and every answer about it is prebuilt; what is created goes straight to
the upper directory (no copy-up, no whiteouts, no recorded metadata, no locks, no checks):
enough for the bench's workloads (walks, reads, tar c, untar + make, the storm), and
nothing more. Not a filesystem to use: only a yardstick for the rsbox column.

    python -m tests.bench_floor MOUNTPOINT --upper DIR --lower LAYER [--lower LAYER ...]
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# The libfuse shim before pyfuse3, as fs.server has it.
from fs import kcache, server

# isort: split
import pyfuse3

TIMEOUT = server.CACHE_TIMEOUT


def _entry(ino: int, st: os.stat_result) -> pyfuse3.EntryAttributes:
    e = pyfuse3.EntryAttributes()
    e.st_ino = pyfuse3.InodeT(ino)
    e.entry_timeout = e.attr_timeout = TIMEOUT
    e.st_mode = pyfuse3.ModeT(st.st_mode)
    e.st_nlink = st.st_nlink
    e.st_uid, e.st_gid, e.st_rdev = st.st_uid, st.st_gid, st.st_rdev
    e.st_size, e.st_blksize, e.st_blocks = st.st_size, st.st_blksize, st.st_blocks
    e.st_atime_ns, e.st_mtime_ns, e.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
    return e


class _Node:
    __slots__ = ("attr", "children", "host", "upper")

    def __init__(self, host: str, attr: pyfuse3.EntryAttributes, upper: bool) -> None:
        self.host, self.attr, self.upper = host, attr, upper
        self.children: dict[bytes, int] | None = None


class Floor(pyfuse3.Operations):
    def __init__(self, lowers: Sequence[Path], upper: Path) -> None:
        super().__init__()
        self.upper = str(upper)
        self.inos = itertools.count(pyfuse3.ROOT_INODE + 1)
        self.fhs = itertools.count(1)
        self.nodes: dict[int, _Node] = {}
        self.fds: dict[int, int] = {}
        root = _Node(self.upper, _entry(pyfuse3.ROOT_INODE, os.lstat(self.upper)), True)
        root.children = {}
        self.nodes[pyfuse3.ROOT_INODE] = root
        self.paths: dict[str, int] = {"": pyfuse3.ROOT_INODE}  # only while loading
        for layer in lowers:
            self._load(str(layer / "fs"))
        del self.paths

    def _load(self, top: str) -> None:
        for where, dirs, files in os.walk(top):
            rel = os.path.relpath(where, top)
            parent = self.nodes[self.paths["" if rel == "." else rel]]
            assert parent.children is not None
            for name in dirs + files:
                path = os.path.join(where, name)
                key = name if rel == "." else f"{rel}/{name}"
                st = os.lstat(path)
                known = self.paths.get(key)
                if known is not None and stat.S_ISDIR(st.st_mode):
                    continue  # a directory of a lower layer too: merged
                ino = next(self.inos) if known is None else known
                node = _Node(path, _entry(ino, st), False)
                if stat.S_ISDIR(st.st_mode):
                    node.children = {}
                self.nodes[ino] = node
                self.paths[key] = ino
                parent.children[os.fsencode(name)] = ino

    def _child(self, parent: int, name: bytes) -> int:
        children = self.nodes[parent].children
        ino = children.get(name) if children is not None else None
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return ino

    def _upper_dir(self, parent: int) -> str:
        """The parent's directory in the upper: the root's or one made through the mount;
        a lower directory is read-only here (no copy-up: a floor)."""
        node = self.nodes[parent]
        if not node.upper:
            raise pyfuse3.FUSEError(errno.EROFS)
        return node.host

    def _add(self, parent: int, name: bytes, host: str) -> pyfuse3.EntryAttributes:
        ino = next(self.inos)
        node = _Node(host, _entry(ino, os.lstat(host)), True)
        if stat.S_ISDIR(node.attr.st_mode):
            node.children = {}
        self.nodes[ino] = node
        children = self.nodes[parent].children
        assert children is not None
        children[name] = ino
        return node.attr

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self.nodes[self._child(parent_inode, name)].attr

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.nodes[inode]
        if node.upper:
            node.attr = _entry(inode, os.lstat(node.host))
        return node.attr

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self.nodes[inode]
        if not node.upper:
            raise pyfuse3.FUSEError(errno.EROFS)
        if fields.update_size:
            os.truncate(node.host, attr.st_size)
        if fields.update_mode:
            os.chmod(node.host, stat.S_IMODE(attr.st_mode))
        if fields.update_mtime or fields.update_atime:
            os.utime(node.host, ns=(attr.st_atime_ns, attr.st_mtime_ns))
        return await self.getattr(inode, ctx)

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(os.readlink(self.nodes[inode].host))

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        children = self.nodes[fh].children or {}
        nodes = self.nodes
        entries = itertools.islice(children.items(), start_id, None)
        for i, (name, ino) in enumerate(entries, start_id + 1):
            if not pyfuse3.readdir_reply(token, name, nodes[ino].attr, i):
                break

    async def releasedir(self, fh: int) -> None:
        pass

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        host = os.path.join(self._upper_dir(parent_inode), os.fsdecode(name))
        os.mkdir(host, mode & ~ctx.umask)
        return self._add(parent_inode, name, host)

    async def create(
        self,
        parent_inode: int,
        name: bytes,
        mode: int,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        host = os.path.join(self._upper_dir(parent_inode), os.fsdecode(name))
        fd = os.open(host, flags | os.O_CREAT | os.O_CLOEXEC, mode & ~ctx.umask)
        attr = self._add(parent_inode, name, host)
        return self._opened(fd, False), attr

    def _opened(self, fd: int, read_only: bool) -> pyfuse3.FileInfo:
        for fh in kcache.released():
            os.close(self.fds.pop(fh))
        fh = next(self.fhs)
        self.fds[fh] = fd
        kcache.serve_reads(fh, fd, read_only)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=True)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.nodes[inode]
        writing = flags & os.O_ACCMODE != os.O_RDONLY
        if writing and not node.upper:
            raise pyfuse3.FUSEError(errno.EROFS)
        fd = os.open(node.host, flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY) | os.O_CLOEXEC)
        return self._opened(fd, not writing)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(self.fds[fh], size, off)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(self.fds[fh], buf, off)

    async def flush(self, fh: int) -> None:
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def release(self, fh: int) -> None:
        os.close(self.fds.pop(fh))

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._remove(parent_inode, name, os.unlink)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._remove(parent_inode, name, os.rmdir)

    def _remove(self, parent: int, name: bytes, how: Callable[[str], None]) -> None:
        ino = self._child(parent, name)
        node = self.nodes[ino]
        if not node.upper:
            raise pyfuse3.FUSEError(errno.EROFS)
        how(node.host)
        children = self.nodes[parent].children
        assert children is not None
        del children[name]

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        raise pyfuse3.FUSEError(errno.ENODATA)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return []

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = os.statvfs(self.upper)
        out = pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail"):
            setattr(out, f, getattr(st, f))
        for f in ("f_files", "f_ffree", "f_favail", "f_namemax"):
            setattr(out, f, getattr(st, f))
        return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench_floor")
    ap.add_argument("mountpoint", type=Path)
    ap.add_argument("--upper", type=Path, required=True)
    ap.add_argument("--lower", type=Path, action="append", default=[])
    ns = ap.parse_args(argv)
    ops = Floor(ns.lower, ns.upper)
    kcache.configure(kcache.wanted())
    pyfuse3.init(ops, str(ns.mountpoint), set(server.MOUNT_OPTIONS))
    server.serve_until_signal()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
