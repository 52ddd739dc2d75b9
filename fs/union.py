"""The union of image layers and a writable upper directory, without FUSE.

How the stack is read (OCI image-spec "whiteouts", the same rules overlayfs applies):

- Layers are searched from the top: the upper (the container's writes), then the lowers
  from the last (newest) to the first. The first layer holding a name decides its type.
- `.wh.NAME` in a layer hides NAME in every layer below it. `.wh..wh..opq` inside a
  directory hides the content of that directory in every layer below. A non-directory
  hides whatever is below it, including a directory.
- A directory is therefore modelled as the ordered list of layers in which it is visible as
  a directory (`Node.dirs`), computed from its parent's list, so the parent's whiteouts and
  opaque markers apply to everything under it.

How the upper is written (so that a later commit can export it as an OCI layer as is):

- The server runs as the host user and cannot chown. What the container set (owner, full
  mode, rdev, xattrs) is stored on the upper entry in the xattr `user.rsbox.override`,
  in fs.meta's EntryMeta JSON: the same truth as a layer's `meta`, crash safe, no db.
  Linux refuses user.* xattrs on symlinks: upper symlinks are shown as 0:0 (known gap).
- Deleting a name that a lower layer holds writes the whiteout `.wh.NAME` into the upper;
  a directory created over a whiteout gets `.wh..wh..opq`, so `rm -rf d; mkdir d` is empty.
- Copy-up happens on the first change: parents first, then the file through a temporary
  name and rename(2), keeping the merged metadata. Inode numbers are ours (a counter per
  node), so copy-up and rename never change what stat reports.

Everything here is synchronous and raises OSError; fs.server turns that into FUSE replies.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NewType

from fs.meta import EntryMeta, LayerMeta

Inode = NewType("Inode", int)
FileHandle = NewType("FileHandle", int)

ROOT_INODE = Inode(1)
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERRIDE_XATTR = "user.rsbox.override"
RENAME_NOREPLACE = 1  # linux/fs.h; pyfuse3 passes the kernel's rename flags through
# Copy-up temporaries live next to their target (rename(2) must stay on one filesystem);
# the reserved prefix keeps them out of every listing even after a crash.
_TMP_PREFIX = ".wh..wh..rsbox-tmp."


@dataclass(frozen=True)
class UnionSpec:
    """What to stack: lower layer roots bottom->top, the upper dir, the mappable ids."""

    lowers: tuple[Path, ...]
    upper: Path
    mapped_ids: range = range(0, 65536)


@dataclass(frozen=True, slots=True)
class Attr:
    """What getattr reports, already overridden and id-clamped."""

    ino: Inode
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True, slots=True, eq=False)
class Layer:
    """One directory tree of the stack; `meta` is None for the upper."""

    root: Path
    meta: LayerMeta | None
    _prefix: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prefix", os.fspath(self.root) + "/")

    @property
    def is_upper(self) -> bool:
        return self.meta is None

    def at(self, path: str) -> str:
        """`real` as a plain string: lookups run this a lot, pathlib costs ~10 us."""
        return self._prefix + path

    def real(self, path: str) -> Path:
        return self.root / path if path else self.root


@dataclass(slots=True)
class Node:
    """A name the kernel knows about. `layer` holds it; `dirs` is set for directories."""

    ino: Inode
    path: str  # union-relative, "/"-separated, "" for the root
    layer: Layer
    dirs: tuple[Layer, ...]
    lookups: int = 0
    unlinked: bool = False

    @property
    def is_dir(self) -> bool:
        return bool(self.dirs)


@dataclass(frozen=True, slots=True)
class _Found:
    layer: Layer
    dirs: tuple[Layer, ...]


@dataclass(slots=True)
class _Open:
    fd: int
    node: Node
    names: list[str] = field(default_factory=list)  # directory snapshot for readdir


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _split(path: str) -> tuple[str, str]:
    head, _, tail = path.rpartition("/")
    return head, tail


def _lexists(p: str | Path) -> bool:
    try:
        os.lstat(p)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    return True


def _lstat(p: str | Path) -> os.stat_result | None:
    try:
        return os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None


def check_name(name: str) -> None:
    """Names the container may create. `.wh.*` would be read back as a whiteout."""
    if name.startswith(WHITEOUT_PREFIX):
        raise OSError(errno.EPERM, "reserved name (OCI whiteout prefix)", name)
    if not name or "/" in name or name in (".", ".."):
        raise OSError(errno.EINVAL, "invalid name", name)


def resolve_child(parent_dirs: Sequence[Layer], path: str) -> _Found | None:
    """The whiteout decision for one name, given the layers its parent is visible in."""
    parent, name = _split(path)
    top: Layer | None = None
    dirs: list[Layer] = []
    for layer in parent_dirs:
        st = _lstat(layer.at(path))
        if st is not None:
            is_dir = stat.S_ISDIR(st.st_mode)
            if top is None:
                top = layer
            if not is_dir:
                break  # a non-directory hides everything below, and ends a directory
            dirs.append(layer)
            if _lexists(layer.at(f"{path}/{OPAQUE_MARKER}" if path else OPAQUE_MARKER)):
                break
        if _lexists(layer.at(_join(parent, WHITEOUT_PREFIX + name))):
            break
    if top is None:
        return None
    return _Found(top, tuple(dirs))


def merged_names(dirs: Sequence[Layer], path: str) -> list[str]:
    """readdir of a directory visible in `dirs` (top first), whiteouts applied."""
    seen: set[str] = set()
    hidden: set[str] = set()
    out: list[str] = []
    for layer in dirs:
        try:
            names = sorted(os.listdir(layer.at(path)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for n in names:
            if n.startswith(WHITEOUT_PREFIX) or n in seen or n in hidden:
                continue
            seen.add(n)
            out.append(n)
        hidden.update(
            n[len(WHITEOUT_PREFIX) :]
            for n in names
            if n.startswith(WHITEOUT_PREFIX) and not n.startswith(".wh..wh.")
        )
    return out


def read_override(p: str | Path) -> EntryMeta | None:
    try:
        raw = os.getxattr(p, OVERRIDE_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return None
        raise
    return EntryMeta.from_json(json.loads(raw))


def write_override(p: Path, meta: EntryMeta) -> None:
    os.setxattr(p, OVERRIDE_XATTR, json.dumps(meta.to_json()).encode(), follow_symlinks=False)


def _load_meta(path: Path) -> LayerMeta:
    try:
        return LayerMeta.load(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise OSError(errno.EINVAL, f"corrupt layer metadata ({exc})", str(path)) from exc


def _disk_mode(mode: int) -> int:
    """Permissions on disk: the host user must always reach its own upper files; the
    container's mode (setuid bits included) lives in the override only."""
    if stat.S_ISDIR(mode):
        return (mode & 0o777) | 0o700
    return (mode & 0o777) | 0o600


class Union:
    """The layer stack plus the inode table the kernel sees."""

    def __init__(self, spec: UnionSpec) -> None:
        self.spec = spec
        spec.upper.mkdir(parents=True, exist_ok=True)
        self.upper = Layer(spec.upper, None)
        lowers = [Layer(p / "fs", _load_meta(p / "meta")) for p in spec.lowers]
        self.stack: tuple[Layer, ...] = (self.upper, *reversed(lowers))
        self._ino = itertools.count(ROOT_INODE + 1)
        self._fh = itertools.count(1)
        self.nodes: dict[Inode, Node] = {}
        self._by_path: dict[str, Inode] = {}
        root = Node(ROOT_INODE, "", self.upper, self._root_dirs(), lookups=1)
        self.nodes[ROOT_INODE] = root
        self._by_path[""] = ROOT_INODE
        self._open: dict[FileHandle, _Open] = {}

    # ---- resolution -------------------------------------------------------------------

    def _root_dirs(self) -> tuple[Layer, ...]:
        dirs: list[Layer] = []
        for layer in self.stack:
            if not layer.root.is_dir():
                continue
            dirs.append(layer)
            if _lexists(layer.root / OPAQUE_MARKER):
                break
        return tuple(dirs)

    def _resolve_path(self, path: str) -> _Found | None:
        if not path:
            return _Found(self.upper, self._root_dirs())
        parent, _ = _split(path)
        pf = self._resolve_path(parent)
        if pf is None or not pf.dirs:
            return None
        return resolve_child(pf.dirs, path)

    def _refresh_subtree(self, prefix: str) -> None:
        """Re-resolve every known node at or under `prefix` (after a rename)."""
        under = [i for p, i in self._by_path.items() if p == prefix or p.startswith(prefix + "/")]
        for ino in under:
            self._refresh(self.nodes[ino])

    def _refresh(self, node: Node) -> None:
        found = self._resolve_path(node.path)
        if found is None:
            self._drop_path(node)
        else:
            node.layer, node.dirs = found.layer, found.dirs

    def node(self, ino: int) -> Node:
        try:
            return self.nodes[Inode(ino)]
        except KeyError:
            raise OSError(errno.ESTALE, "unknown inode") from None

    def _dir(self, ino: int) -> Node:
        node = self.node(ino)
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory", node.path)
        return node

    def _child(self, parent: Node, name: str) -> tuple[str, _Found | None]:
        if name.startswith(WHITEOUT_PREFIX):
            return _join(parent.path, name), None
        path = _join(parent.path, name)
        ino = self._by_path.get(path)
        if ino is not None:
            n = self.nodes[ino]
            return path, _Found(n.layer, n.dirs)
        return path, resolve_child(parent.dirs, path)

    def _node_for(self, path: str, found: _Found) -> Node:
        ino = self._by_path.get(path)
        if ino is not None:
            return self.nodes[ino]
        node = Node(Inode(next(self._ino)), path, found.layer, found.dirs)
        self.nodes[node.ino] = node
        self._by_path[path] = node.ino
        return node

    def _drop_path(self, node: Node) -> None:
        if self._by_path.get(node.path) == node.ino:
            del self._by_path[node.path]
        node.unlinked = True
        if node.lookups <= 0 and node.ino != ROOT_INODE:
            self.nodes.pop(node.ino, None)

    # ---- kernel bookkeeping -----------------------------------------------------------

    def lookup(self, parent_ino: int, name: str) -> Attr:
        """Find `name`, and count one kernel reference to it."""
        node = self._find(parent_ino, name)
        node.lookups += 1
        return self._attr(node)

    def dot_attr(self, parent_ino: int, name: str) -> Attr:
        """Attributes of "." or ".." for readdir, which the kernel does not count."""
        try:
            return self._attr(self._find(parent_ino, name))
        except FileNotFoundError:  # ".." of a directory whose parent we forgot
            return self._attr(self._dir(parent_ino))

    def _find(self, parent_ino: int, name: str) -> Node:
        parent = self._dir(parent_ino)
        if name == ".":
            node = parent
        elif name == "..":
            up = self._by_path.get(_split(parent.path)[0]) if parent.path else ROOT_INODE
            if up is None:
                raise OSError(errno.ENOENT, "parent not known", parent.path)
            node = self.nodes[up]
        else:
            path, found = self._child(parent, name)
            if found is None:
                raise OSError(errno.ENOENT, "no such entry", path)
            node = self._node_for(path, found)
        return node

    def forget(self, items: Sequence[tuple[int, int]]) -> None:
        for ino, n in items:
            node = self.nodes.get(Inode(ino))
            if node is None or node.ino == ROOT_INODE:
                continue
            node.lookups -= n
            if node.lookups <= 0:
                del self.nodes[node.ino]
                if self._by_path.get(node.path) == node.ino:
                    del self._by_path[node.path]

    # ---- attributes -------------------------------------------------------------------

    def _meta(self, node: Node) -> tuple[os.stat_result, EntryMeta | None]:
        """lstat of the top entry plus what overrides it."""
        if node.unlinked:
            return self._meta_unlinked(node)
        return self._layer_meta(node.layer, node.path, node.dirs)

    def _layer_meta(
        self, layer: Layer, path: str, dirs: tuple[Layer, ...]
    ) -> tuple[os.stat_result, EntryMeta | None]:
        real = layer.at(path)
        st = os.lstat(real)
        if layer.meta is not None:
            return st, layer.meta.get(path) or (None if path else layer.meta.get("."))
        ov = None if stat.S_ISLNK(st.st_mode) else read_override(real)
        if ov is None and len(dirs) > 1 and dirs[0] is layer:
            # An upper dir we never wrote an override for (the upper root, made by the
            # launcher): the image below tells the truth about it.
            return self._layer_meta(dirs[1], path, dirs[1:])
        return st, ov

    def _meta_unlinked(self, node: Node) -> tuple[os.stat_result, EntryMeta | None]:
        """fstat of a deleted file that is still open (the tmpfile pattern)."""
        for of in self._open.values():
            if of.node is node and of.fd >= 0:
                try:
                    raw = os.getxattr(of.fd, OVERRIDE_XATTR)
                except OSError:
                    return os.fstat(of.fd), None
                return os.fstat(of.fd), EntryMeta.from_json(json.loads(raw))
        raise OSError(errno.ENOENT, "deleted", node.path)

    def _attr(self, node: Node) -> Attr:
        st, meta = self._meta(node)
        if meta is not None:
            mode, uid, gid, rdev = meta.mode, meta.uid, meta.gid, meta.rdev
        else:
            mode, uid, gid, rdev = st.st_mode, 0, 0, 0
        ids = self.spec.mapped_ids
        return Attr(
            ino=node.ino,
            mode=mode,
            # Merged directories have no true link count; 1 is the conventional
            # "unknown" (btrfs does it) and stops find/fts from trusting nlink-2.
            nlink=1 if stat.S_ISDIR(mode) else st.st_nlink,
            uid=uid if uid in ids else 0,
            gid=gid if gid in ids else 0,
            rdev=rdev,
            size=st.st_size,
            blksize=st.st_blksize,
            blocks=st.st_blocks,
            atime_ns=st.st_atime_ns,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
        )

    def getattr(self, ino: int) -> Attr:
        return self._attr(self.node(ino))

    def _entry_meta(self, node: Node) -> EntryMeta:
        """The full truth about a node (unclamped ids), for copy-up and updates."""
        st, meta = self._meta(node)
        if meta is None:
            return EntryMeta(uid=0, gid=0, mode=st.st_mode)
        return meta

    # ---- copy-up ----------------------------------------------------------------------

    def _copy_up(self, node: Node) -> None:
        """Make `node` live in the upper (parents first), keeping metadata and inode."""
        if node.layer.is_upper:
            return
        self._copy_up_path(node.path, node)
        self._refresh(node)

    def _ensure_upper_dir(self, path: str) -> None:
        """The directory `path` of the union exists in the upper (with its metadata)."""
        if not path or os.path.isdir(self.upper.real(path)):
            return
        ino = self._by_path.get(path)
        if ino is not None:
            node = self.nodes[ino]
        else:
            found = self._resolve_path(path)
            if found is None:
                raise OSError(errno.ENOENT, "parent vanished", path)
            node = Node(Inode(0), path, found.layer, found.dirs)
        self._copy_up_path(path, node)
        if ino is not None:
            self._refresh(node)

    def _copy_up_path(self, path: str, node: Node) -> None:
        parent, name = _split(path)
        self._ensure_upper_dir(parent)
        src = node.layer.real(path)
        dst = self.upper.real(path)
        meta = self._entry_meta(node)
        st = os.lstat(src)
        wh = self.upper.real(_join(parent, WHITEOUT_PREFIX + name))
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(dst, _disk_mode(meta.mode))
            write_override(dst, meta)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        else:
            tmp = dst.with_name(f"{_TMP_PREFIX}{os.getpid()}.{next(self._fh)}")
            try:
                if stat.S_ISREG(st.st_mode):
                    shutil.copyfile(src, tmp, follow_symlinks=False)
                else:  # fifo/socket on disk: a placeholder, the override keeps the type
                    tmp.touch()
                os.chmod(tmp, _disk_mode(meta.mode))
                write_override(tmp, meta)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.rename(tmp, dst)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        if _lexists(wh):
            os.unlink(wh)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _copy_up_tree(self, path: str) -> None:
        """Copy a whole merged directory into the upper and make it opaque: after this
        it can move anywhere in the upper (rename of a lower directory, no EXDEV)."""
        found = self._resolve_path(path)
        if found is None:
            raise OSError(errno.ENOENT, "vanished", path)
        if found.dirs == (self.upper,):
            (self.upper.real(path) / OPAQUE_MARKER).touch()
            return  # nothing below shows through: the subtree is all in the upper already
        if not found.layer.is_upper:
            self._copy_up_path(path, Node(Inode(0), path, found.layer, found.dirs))
        for name in merged_names(found.dirs, path):
            child = _join(path, name)
            cf = resolve_child(found.dirs, child)
            if cf is None:
                continue
            if cf.dirs:
                self._copy_up_tree(child)
            elif not cf.layer.is_upper:
                self._copy_up_path(child, Node(Inode(0), child, cf.layer, cf.dirs))
        real = self.upper.real(path)
        for n in os.listdir(real):
            if n.startswith(WHITEOUT_PREFIX) and not n.startswith(".wh..wh."):
                os.unlink(real / n)
        (real / OPAQUE_MARKER).touch()

    def _lower_has(self, parent: Node, name: str) -> bool:
        """Whether a lower layer shows `name` under `parent` (so deleting needs a whiteout)."""
        for layer in parent.dirs:
            if layer.is_upper:
                continue
            if _lexists(layer.at(_join(parent.path, name))):
                return True
            if _lexists(layer.at(_join(parent.path, WHITEOUT_PREFIX + name))):
                return False
        return False

    def _whiteout(self, parent: Node, name: str) -> None:
        self._ensure_upper_dir(parent.path)
        (self.upper.real(_join(parent.path, WHITEOUT_PREFIX + name))).touch()

    def _prepare_new(self, parent: Node, name: str) -> tuple[str, bool]:
        """Checks before creating `name`; returns its path and whether a whiteout was
        removed (then a new directory must be opaque)."""
        check_name(name)
        path, found = self._child(parent, name)
        if found is not None:
            raise OSError(errno.EEXIST, "exists", path)
        self._ensure_upper_dir(parent.path)
        wh = self.upper.real(_join(parent.path, WHITEOUT_PREFIX + name))
        if _lexists(wh):
            os.unlink(wh)
            return path, True
        return path, False

    def _new_owner(self, parent: Node, uid: int, gid: int) -> tuple[int, int]:
        pmeta = self._entry_meta(parent)
        if pmeta.mode & stat.S_ISGID:
            gid = pmeta.gid  # BSD group semantics under a setgid directory
        return uid, gid

    def _created(self, path: str) -> Attr:
        found = self._resolve_path(path)
        assert found is not None
        node = self._node_for(path, found)
        node.layer, node.dirs = found.layer, found.dirs
        node.lookups += 1
        return self._attr(node)

    # ---- namespace operations ---------------------------------------------------------

    def readlink(self, ino: int) -> str:
        node = self.node(ino)
        return os.readlink(node.layer.at(node.path))

    def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Attr:
        parent = self._dir(parent_ino)
        path, was_whiteout = self._prepare_new(parent, name)
        uid, gid = self._new_owner(parent, uid, gid)
        pmode = self._entry_meta(parent).mode
        mode = stat.S_IFDIR | (mode & 0o7777) | (pmode & stat.S_ISGID)
        real = self.upper.real(path)
        os.mkdir(real, _disk_mode(mode))
        write_override(real, EntryMeta(uid=uid, gid=gid, mode=mode))
        if was_whiteout or self._lower_has(parent, name):
            (real / OPAQUE_MARKER).touch()
        return self._created(path)

    def symlink(self, parent_ino: int, name: str, target: str) -> Attr:
        parent = self._dir(parent_ino)
        path, _ = self._prepare_new(parent, name)
        os.symlink(target, self.upper.real(path))
        return self._created(path)

    def mknod(self, parent_ino: int, name: str, mode: int, rdev: int, uid: int, gid: int) -> Attr:
        """Devices, fifos and sockets are empty placeholder files in the upper; the type
        and rdev live in the override (an unprivileged server cannot mknod devices, and
        the kernel serves fifos/sockets on a FUSE inode itself)."""
        parent = self._dir(parent_ino)
        if stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
            raise OSError(errno.EINVAL, "mknod of a directory or symlink", name)
        path, _ = self._prepare_new(parent, name)
        uid, gid = self._new_owner(parent, uid, gid)
        if stat.S_IFMT(mode) == 0:
            mode |= stat.S_IFREG
        real = self.upper.real(path)
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _disk_mode(mode))
        os.close(fd)
        rdev = rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0
        write_override(real, EntryMeta(uid=uid, gid=gid, mode=mode, rdev=rdev))
        return self._created(path)

    def create(
        self, parent_ino: int, name: str, mode: int, flags: int, uid: int, gid: int
    ) -> tuple[FileHandle, Attr]:
        parent = self._dir(parent_ino)
        path, _ = self._prepare_new(parent, name)
        uid, gid = self._new_owner(parent, uid, gid)
        mode = stat.S_IFREG | (mode & 0o7777)
        real = self.upper.real(path)
        fd = os.open(real, (flags | os.O_CREAT | os.O_EXCL) & ~os.O_NOFOLLOW, _disk_mode(mode))
        try:
            write_override(real, EntryMeta(uid=uid, gid=gid, mode=mode))
        except BaseException:
            os.close(fd)
            raise
        attr = self._created(path)
        fh = FileHandle(next(self._fh))
        self._open[fh] = _Open(fd, self.nodes[attr.ino])
        return fh, attr

    def link(self, ino: int, parent_ino: int, name: str) -> Attr:
        """Basic hard link: same upper file, but a node (inode number) of its own."""
        node = self.node(ino)
        if node.is_dir:
            raise OSError(errno.EPERM, "hard link to a directory", node.path)
        parent = self._dir(parent_ino)
        self._copy_up(node)
        path, _ = self._prepare_new(parent, name)
        os.link(self.upper.real(node.path), self.upper.real(path), follow_symlinks=False)
        return self._created(path)

    def unlink(self, parent_ino: int, name: str) -> None:
        parent = self._dir(parent_ino)
        path, found = self._child(parent, name)
        if found is None:
            raise OSError(errno.ENOENT, "no such entry", path)
        if found.dirs:
            raise OSError(errno.EISDIR, "is a directory", path)
        self._remove(parent, name, path, found)

    def rmdir(self, parent_ino: int, name: str) -> None:
        parent = self._dir(parent_ino)
        path, found = self._child(parent, name)
        if found is None:
            raise OSError(errno.ENOENT, "no such entry", path)
        if not found.dirs:
            raise OSError(errno.ENOTDIR, "not a directory", path)
        if merged_names(found.dirs, path):
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)
        self._remove(parent, name, path, found)

    def _remove(self, parent: Node, name: str, path: str, found: _Found) -> None:
        real = self.upper.real(path)
        st = _lstat(real)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(real)  # only whiteouts/markers remain: checked as empty
            else:
                os.unlink(real)
        if self._lower_has(parent, name):
            self._whiteout(parent, name)
        ino = self._by_path.get(path)
        if ino is not None:
            self._drop_path(self.nodes[ino])

    def rename(
        self, old_parent: int, old_name: str, new_parent: int, new_name: str, flags: int
    ) -> None:
        if flags & ~RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, "rename flags not supported", flags)
        op, np_ = self._dir(old_parent), self._dir(new_parent)
        check_name(new_name)
        src_path, src = self._child(op, old_name)
        if src is None:
            raise OSError(errno.ENOENT, "no such entry", src_path)
        dst_path, dst = self._child(np_, new_name)
        if src_path == dst_path:
            return
        if src.dirs and (dst_path + "/").startswith(src_path + "/"):
            raise OSError(errno.EINVAL, "cannot move a directory into itself", dst_path)
        if dst is not None:
            if flags & RENAME_NOREPLACE:
                raise OSError(errno.EEXIST, "exists", dst_path)
            if src.dirs and not dst.dirs:
                raise OSError(errno.ENOTDIR, "not a directory", dst_path)
            if dst.dirs and not src.dirs:
                raise OSError(errno.EISDIR, "is a directory", dst_path)
            if dst.dirs and merged_names(dst.dirs, dst_path):
                raise OSError(errno.ENOTEMPTY, "directory not empty", dst_path)
        # 1. the source, whole, in the upper
        if src.dirs:
            self._copy_up_tree(src_path)
        elif not src.layer.is_upper:
            self._copy_up_path(src_path, Node(Inode(0), src_path, src.layer, src.dirs))
        # 2. the target's place in the upper, emptied
        self._ensure_upper_dir(np_.path)
        dst_real = self.upper.real(dst_path)
        st = _lstat(dst_real)
        if st is not None and stat.S_ISDIR(st.st_mode):
            shutil.rmtree(dst_real)
        dst_wh = self.upper.real(_join(np_.path, WHITEOUT_PREFIX + new_name))
        if _lexists(dst_wh):
            os.unlink(dst_wh)
        if src.dirs:
            (self.upper.real(src_path) / OPAQUE_MARKER).touch()
        os.rename(self.upper.real(src_path), dst_real)
        # 3. hide what the lowers still hold at the old name
        if self._lower_has(op, old_name):
            self._whiteout(op, old_name)
        # 4. the inode table follows the move
        dst_ino = self._by_path.get(dst_path)
        if dst_ino is not None:
            self._drop_path(self.nodes[dst_ino])
        moved = sorted(
            (p for p in self._by_path if p == src_path or p.startswith(src_path + "/")),
            key=len,
        )
        for p in moved:
            ino = self._by_path.pop(p)
            node = self.nodes[ino]
            node.path = dst_path + p[len(src_path) :]
            self._by_path[node.path] = ino
        self._refresh_subtree(dst_path)
        # the parents may have been copied up; their other children did not change
        self._refresh(op)
        self._refresh(np_)

    # ---- attributes: setattr and xattrs -----------------------------------------------

    def setattr(
        self,
        ino: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        fh: int | None = None,
    ) -> Attr:
        node = self.node(ino)
        self._copy_up(node)
        real = self.upper.real(node.path)
        if size is not None:
            if node.is_dir:
                raise OSError(errno.EISDIR, "is a directory", node.path)
            of = self._open.get(FileHandle(fh)) if fh is not None else None
            if of is not None:
                os.ftruncate(of.fd, size)
            else:
                os.truncate(real, size)
        if mode is not None or uid is not None or gid is not None:
            if stat.S_ISLNK(os.lstat(real).st_mode):
                pass  # no xattrs on symlinks (known gap): ownership is not kept
            else:
                old = self._entry_meta(node)
                new = replace(
                    old,
                    mode=(old.mode & ~0o7777) | (mode & 0o7777) if mode is not None else old.mode,
                    uid=old.uid if uid is None else uid,
                    gid=old.gid if gid is None else gid,
                )
                write_override(real, new)
                if mode is not None:
                    os.chmod(real, _disk_mode(new.mode))
        if atime_ns is not None or mtime_ns is not None:
            st = os.lstat(real)
            os.utime(
                real,
                ns=(
                    st.st_atime_ns if atime_ns is None else atime_ns,
                    st.st_mtime_ns if mtime_ns is None else mtime_ns,
                ),
                follow_symlinks=False,
            )
        return self._attr(node)

    def getxattr(self, ino: int, name: str) -> bytes:
        node = self.node(ino)
        if name == OVERRIDE_XATTR:
            raise OSError(errno.ENODATA, "no such attribute", name)
        xattrs = self._entry_meta(node).xattrs
        if name not in xattrs:
            raise OSError(errno.ENODATA, "no such attribute", name)
        return xattrs[name]

    def listxattr(self, ino: int) -> list[str]:
        return sorted(self._entry_meta(self.node(ino)).xattrs)

    def setxattr(self, ino: int, name: str, value: bytes) -> None:
        node = self.node(ino)
        if name == OVERRIDE_XATTR:
            raise OSError(errno.EPERM, "reserved attribute", name)
        self._copy_up(node)
        real = self.upper.real(node.path)
        if stat.S_ISLNK(os.lstat(real).st_mode):
            raise OSError(errno.EPERM, "no xattrs on symlinks", node.path)
        old = self._entry_meta(node)
        write_override(real, replace(old, xattrs={**old.xattrs, name: value}))

    def removexattr(self, ino: int, name: str) -> None:
        node = self.node(ino)
        if name not in self._entry_meta(node).xattrs:
            raise OSError(errno.ENODATA, "no such attribute", name)
        self._copy_up(node)
        real = self.upper.real(node.path)
        old = self._entry_meta(node)
        write_override(
            real, replace(old, xattrs={k: v for k, v in old.xattrs.items() if k != name})
        )

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.upper.root)

    # ---- files and directories --------------------------------------------------------

    def open(self, ino: int, flags: int) -> tuple[FileHandle, bool]:
        """Open for I/O; returns the handle and whether the kernel may keep its cache
        (true for lower files: layers are immutable)."""
        node = self.node(ino)
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        if writing:
            self._copy_up(node)
        fd = os.open(node.layer.at(node.path), flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY))
        fh = FileHandle(next(self._fh))
        self._open[fh] = _Open(fd, node)
        return fh, not node.layer.is_upper

    def _fd(self, fh: int) -> int:
        try:
            return self._open[FileHandle(fh)].fd
        except KeyError:
            raise OSError(errno.EBADF, "unknown file handle") from None

    def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(self._fd(fh), size, off)

    def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(self._fd(fh), buf, off)

    def fsync(self, fh: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(self._fd(fh))

    def release(self, fh: int) -> None:
        of = self._open.pop(FileHandle(fh), None)
        if of is not None and of.fd >= 0:
            os.close(of.fd)

    def opendir(self, ino: int) -> FileHandle:
        node = self._dir(ino)
        fh = FileHandle(next(self._fh))
        self._open[fh] = _Open(-1, node, [".", "..", *merged_names(node.dirs, node.path)])
        return fh

    def readdir(self, fh: int, start: int) -> Iterator[tuple[int, str]]:
        """(next offset, name) from `start`; the caller looks each one up."""
        of = self._open.get(FileHandle(fh))
        if of is None:
            raise OSError(errno.EBADF, "unknown directory handle")
        for i in range(start, len(of.names)):
            yield i + 1, of.names[i]

    def dir_node(self, fh: int) -> Node:
        of = self._open.get(FileHandle(fh))
        if of is None:
            raise OSError(errno.EBADF, "unknown directory handle")
        return of.node
