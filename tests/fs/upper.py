"""A container's writes without a mount: fs.union.Union driven by path, the way the
kernel would drive it, so that tests get an upper layer written exactly as a running
container writes it (overrides, sidecars, whiteouts, opaque markers)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fs.meta import EntryMeta
from fs.union import ROOT_INODE, Union, UnionSpec
from tests.fs.layers import Tree, make_layer


class Scratch:
    """A union of `trees` (bottom first) and a fresh upper under `base`."""

    def __init__(
        self,
        base: Path,
        *trees: Tree,
        metas: list[dict[str, EntryMeta]] | None = None,
        user_xattrs: bool | None = None,
    ) -> None:
        self.lowers = tuple(
            make_layer(base / f"l{i}", t, (metas or [{}] * len(trees))[i])
            for i, t in enumerate(trees)
        )
        self.upper = base / "upper"
        self.u = Union(UnionSpec(self.lowers, self.upper, user_xattrs=user_xattrs))

    @classmethod
    def over(cls, lowers: tuple[Path, ...], upper: Path) -> Scratch:
        """Write into an existing stack (a container of a store)."""
        s = cls.__new__(cls)
        s.lowers, s.upper = lowers, upper
        s.u = Union(UnionSpec(lowers, upper))
        return s

    def ino(self, path: str) -> int:
        ino = ROOT_INODE
        for name in [p for p in path.split("/") if p]:
            ino = self.u.lookup(ino, name).ino
        return ino

    def _parent(self, path: str) -> tuple[int, str]:
        head, _, name = path.rpartition("/")
        return self.ino(head), name

    def write(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        """Create (or overwrite from the start) a regular file."""
        try:
            ino = self.ino(path)
        except FileNotFoundError:
            parent, name = self._parent(path)
            fh, _ = self.u.create(parent, name, mode, os.O_WRONLY, uid, gid)
        else:
            fh, _ = self.u.open(ino, os.O_WRONLY | os.O_TRUNC)
            self.u.setattr(ino, size=0)
        try:
            self.u.write(fh, 0, data)
        finally:
            self.u.release(fh)

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        parent, name = self._parent(path)
        self.u.mkdir(parent, name, mode, uid, gid)

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0) -> None:
        parent, name = self._parent(path)
        self.u.symlink(parent, name, target, uid, gid)

    def link(self, existing: str, path: str) -> None:
        parent, name = self._parent(path)
        self.u.link(self.ino(existing), parent, name)

    def mknod(self, path: str, mode: int, rdev: int = 0) -> None:
        parent, name = self._parent(path)
        self.u.mknod(parent, name, mode, rdev, 0, 0)

    def rm(self, path: str) -> None:
        self.u.unlink(*self._parent(path))

    def rmdir(self, path: str) -> None:
        self.u.rmdir(*self._parent(path))

    def rm_rf(self, path: str) -> None:
        ino = self.ino(path)
        if not stat.S_ISDIR(self.u.getattr(ino).mode):
            self.rm(path)
            return
        fh = self.u.opendir(ino)
        try:
            names = [e[1] for e in self.u.readdir(fh, 0) if e[1] not in (".", "..")]
        finally:
            self.u.release(fh)
        for n in names:
            self.rm_rf(f"{path}/{n}")
        self.rmdir(path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.u.setattr(self.ino(path), uid=uid, gid=gid)

    def chmod(self, path: str, mode: int) -> None:
        self.u.setattr(self.ino(path), mode=mode)

    def utime(self, path: str, seconds: int) -> None:
        ns = seconds * 1_000_000_000
        self.u.setattr(self.ino(path), atime_ns=ns, mtime_ns=ns)

    def setxattr(self, path: str, name: str, value: bytes) -> None:
        self.u.setxattr(self.ino(path), name, value)

    def rename(self, old: str, new: str) -> None:
        op, on = self._parent(old)
        np_, nn = self._parent(new)
        self.u.rename(op, on, np_, nn, 0)
