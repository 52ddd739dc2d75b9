"""The union of image layers and a writable upper directory, without FUSE.

The read rules (whiteouts, opaque directories) are in fs.resolve, the inode table in
fs.inodes, the byte copying of copy-up in fs.copyup; this module orders the operations.

How the upper is written (so that a later commit can export it as an OCI layer as is):

- The server runs as the host user and cannot chown. What the container set (owner, full
  mode, rdev, xattrs incl. security.capability) is stored on the upper entry in the xattr
  `user.rsbox.override`, in fs.meta's EntryMeta JSON: the same truth as a layer's `meta`,
  crash safe, no db. Symlinks cannot carry user.* xattrs: theirs is in a sidecar file
  next to them (fs.resolve.LINK_META_PREFIX), one per symlink.
- Deleting a name that a lower layer holds writes the whiteout `.wh.NAME` into the upper
  (for a name of 252-255 bytes, where that would not fit in NAME_MAX, a 0/0 character
  device NAME, overlayfs's whiteout); a directory created over a whiteout gets
  `.wh..wh..opq`, so `rm -rf d; mkdir d` is empty. No name we write is longer than the
  container's own: any name the upper's filesystem takes can be created, renamed,
  linked, copied up and deleted.
- Copy-up happens on the first change: parents first, then the entry (fs.copyup),
  keeping the merged metadata and our inode number. Handles already open on the lower
  copy are moved onto the upper one, so every reader sees the writes. A regular file's
  copy can also be done in steps (`copy_up_start`, its bytes anywhere, `copy_up_finish`)
  by a caller that keeps the node in place meanwhile (fs.server, for big files); an open
  with O_TRUNC or a truncation to 0 copies no bytes at all.

Everything here is synchronous and raises OSError; fs.server turns that into FUSE replies.
Nothing recurses over the tree and paths past PATH_MAX go through fs.longpath, so a tree
thousands of levels deep works as on a local filesystem. What a request costs does not
grow with what the kernel knows below the entries it touches (a rename of a directory of
100k known files relinks one node of fs.inodes), except where bytes must move: renaming a
directory that lower layers show copies it up first.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import shutil
import stat
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, NewType

from fs.copyup import FileCopy, copy_entry
from fs.inode_meta import takes_user_xattrs
from fs.inodes import ROOT_INODE, Inode, InodeTable, Node
from fs.meta import EntryMeta, LayerMeta
from fs.resolve import (
    META_DIR,
    OPAQUE_MARKER,
    OVERRIDE_XATTR,
    WHITEOUT_PREFIX,
    Found,
    Layer,
    bare_meta,
    check_name,
    disk_mode,
    drop_override,
    find_meta,
    is_whiteout,
    join,
    merged_names,
    read_link_meta,
    read_override,
    read_override_fd,
    resolve_child,
    split,
    whiteout_name,
    write_link_meta,
    write_override,
)

__all__ = [
    "OPAQUE_MARKER",
    "OVERRIDE_XATTR",
    "ROOT_INODE",
    "Attr",
    "CopyUp",
    "FileHandle",
    "Inode",
    "Union",
    "UnionSpec",
    "read_override",
]

FileHandle = NewType("FileHandle", int)

RENAME_NOREPLACE = 1  # linux/fs.h; pyfuse3 passes the kernel's rename flags through
RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def _renameat2(old: str, new: str, flags: int) -> None:
    if _libc.renameat2(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


@dataclass(frozen=True)
class UnionSpec:
    """What to stack: lower layer roots bottom->top, the upper dir, the mappable ids.

    `plain_lowers`: the lowers are bare directory trees (no fs/ + meta), ownership is
    what lstat says and overlayfs whiteouts count too (rsbox-overlayfs)."""

    lowers: tuple[Path, ...]
    upper: Path
    mapped_ids: Container[int] = range(0, 65536)  # uids; and gids unless `mapped_gids`
    mapped_gids: Container[int] | None = None
    # An owner the map lacks is shown as these ids (the truth stays in meta): 0 when root
    # is the one mapped id; the user's own under rsbox's --userns keep-id single map.
    unmapped_as: tuple[int, int] = (0, 0)
    plain_lowers: bool = False
    squash_uid: int | None = None  # show every entry as owned by this id (fuse-overlayfs's
    squash_gid: int | None = None  # squash_to_uid/gid options)
    # The inode table's soft cap: beyond it the server asks the kernel to drop its oldest
    # entries (fs.server). ~0.4 KiB of server memory per node (fs.inodes), so ~400 MiB at
    # the cap; fuse-overlayfs, which keeps every node, takes 312 MiB for 500k entries.
    # Past the cap a walk finds nothing cached the next time (README "Filesystem"), so it
    # sits above the trees real images have (toolchains, CUDA, TeX: 100k-500k entries).
    max_nodes: int = 1_000_000
    # Where the container's metadata goes in the upper: None probes its filesystem
    # (user.* xattrs when it keeps them, else files by inode, fs.inode_meta); False
    # asks for the files wherever the upper is.
    user_xattrs: bool | None = None


class Attr(NamedTuple):
    """What getattr reports, already overridden and id-clamped. A NamedTuple, not a
    frozen dataclass: one is made for every new entry of a listing and every file's
    GETATTR, and a frozen dataclass of 12 fields took 4.4 us to make here (its __init__
    goes through object.__setattr__ per field), a NamedTuple 1.4 us."""

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


@dataclass(frozen=True, slots=True)
class CopyUp:
    """A regular file being copied up (Union.copy_up_start): `node`, at `path` then."""

    node: Node
    path: str
    file: FileCopy

    @property
    def size(self) -> int:
        return self.file.size


def opens_for_writing(flags: int) -> bool:
    """Whether an open with these flags changes the file (so it is copied up first)."""
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND))


@dataclass(slots=True)
class _Open:
    fd: int
    node: Node
    flags: int = 0
    names: list[str] = field(default_factory=list)  # directory snapshot for readdir


@dataclass(frozen=True, slots=True)
class _ShownIds:
    """UnionSpec's rules for the ids getattr shows, read once (every new entry asks)."""

    uids: Container[int]
    gids: Container[int]
    unmapped_uid: int
    unmapped_gid: int
    squash_uid: int | None
    squash_gid: int | None

    @classmethod
    def of(cls, spec: UnionSpec) -> _ShownIds:
        gids = spec.mapped_ids if spec.mapped_gids is None else spec.mapped_gids
        return cls(spec.mapped_ids, gids, *spec.unmapped_as, spec.squash_uid, spec.squash_gid)


# What a listing yields per entry: (next offset, name, node, its Attr, counted)
_Entry = tuple[int, str, Node, Attr, bool]

# readdir_ino's offsets: a snapshot number (8 bits) and a position in it (23 bits)
_POS_BITS = 23
_POS_MASK = (1 << _POS_BITS) - 1


def _key(real: str) -> tuple[int, int]:
    st = os.lstat(real)
    return st.st_dev, st.st_ino


def _touch(real: str) -> None:
    os.close(os.open(real, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _host_flags(flags: int) -> int:
    """Flags for our own open of the backing file. With the writeback cache the kernel
    reads pages of write-only files and computes the end of file for O_APPEND itself, so
    (as libfuse's passthrough_hp does) write-only becomes read-write and O_APPEND is
    dropped: the kernel's offsets are exact. Creation flags were handled already."""
    flags &= ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_NOFOLLOW | os.O_APPEND)
    if flags & os.O_ACCMODE == os.O_WRONLY:
        flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
    return flags


def _load_meta(path: Path) -> LayerMeta:
    try:
        return LayerMeta.load(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise OSError(errno.EINVAL, f"corrupt layer metadata ({exc})", str(path)) from exc


class Union:
    """The layer stack plus the inode table the kernel sees."""

    def __init__(self, spec: UnionSpec) -> None:
        self.spec = spec
        spec.upper.mkdir(parents=True, exist_ok=True)
        meta_dir = spec.upper / META_DIR
        if not meta_dir.is_dir() and (
            spec.user_xattrs is False
            or (spec.user_xattrs is None and not takes_user_xattrs(os.fspath(spec.upper)))
        ):
            meta_dir.mkdir(mode=0o700)  # from now on, for every reader of this upper
        self.upper = Layer(spec.upper, None, is_upper=True, plain=spec.plain_lowers)
        if spec.plain_lowers:
            lowers = [Layer(p, None, plain=True, overlay_style=True) for p in spec.lowers]
        else:
            lowers = [Layer(p / "fs", _load_meta(p / "meta")) for p in spec.lowers]
        self.stack: tuple[Layer, ...] = (self.upper, *reversed(lowers))
        self._fh = itertools.count(1)
        self.table = InodeTable(self.upper, self._root_dirs())
        self._open: dict[FileHandle, _Open] = {}
        # readdir_ino's listings by number: (directory inode, names)
        self._snapshots: dict[int, tuple[Inode, list[str]]] = {}
        self._snapshot_numbers = itertools.count()
        # The lstat that resolution made of a node it has just added, for the first
        # `_meta` of that node, which follows at once (lookup, readdirplus): one lstat
        # per new entry instead of three, with the whiteout probe saved in
        # fs.resolve.resolve_child -37% of the Python time of a cold walk of 150k entries.
        # Whatever `_meta` comes next takes it away, whichever node it is about.
        self._fresh: tuple[Node, os.stat_result] | None = None
        self._shown_ids = _ShownIds.of(spec)

    # ---- resolution -------------------------------------------------------------------

    def _root_dirs(self) -> tuple[Layer, ...]:
        dirs: list[Layer] = []
        for layer in self.stack:
            if not layer.root.is_dir():
                continue
            dirs.append(layer)
            if layer.exists(OPAQUE_MARKER):
                break
        return tuple(dirs)

    def _resolve_path(self, path: str) -> Found | None:
        """Where `path` lives, resolved from the root (ignoring the table)."""
        found: Found | None = Found(self.upper, self._root_dirs())
        if not path:
            return found
        at = ""
        for name in path.split("/"):
            if found is None or not found.dirs:
                return None
            at = join(at, name)
            found = resolve_child(found.dirs, at)
        return found

    def _refresh(self, node: Node) -> None:
        found = self._resolve_path(node.path)
        if found is None:
            if node.parent is not None:
                self.table.unname(node, node.parent, node.name)
        else:
            node.layer, node.dirs = found.layer, found.dirs

    def node(self, ino: int) -> Node:
        return self.table.get(ino)

    def _dir(self, ino: int) -> Node:
        node = self.node(ino)
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory", node.path)
        return node

    def _child(self, parent: Node, name: str) -> tuple[str, Found | None]:
        path = join(parent.path, name)
        if name.startswith(WHITEOUT_PREFIX):
            return path, None
        n = self.table.child(parent, name)
        if n is not None:
            return path, Found(n.layer, n.dirs)
        return path, resolve_child(parent.dirs, path)

    def _node_for(self, parent: Node, name: str, path: str, found: Found) -> Node:
        node = self.table.child(parent, name)
        if node is not None:
            return node
        return self._new_node(parent, name, path, found)

    def _new_node(self, parent: Node, name: str, path: str, found: Found) -> Node:
        """_node_for of a name the table does not know under `parent`."""
        key = None
        st = found.st
        if not found.dirs:
            if st is None:
                st = os.lstat(found.layer.at(path))
            # Only a file with other names needs its key (a hard link found later is
            # looked up by it, and `link` records the key of a file it gives a second
            # name): the tuple and its table entry were ~150 bytes of every node.
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                other = self.table.by_host(key)
                if other is not None and not other.unlinked:
                    self.table.alias(other, parent, name)
                    return other
        node = self.table.add(parent, name, found.layer, found.dirs, key)
        if st is not None:
            self._fresh = (node, st)
        return node

    # ---- kernel bookkeeping -----------------------------------------------------------

    def lookup(self, parent_ino: int, name: str) -> Attr:
        """Find `name`, and count one kernel reference to it."""
        node = self._find(parent_ino, name)
        node.lookups += 1
        return self._attr(node)

    def _find(self, parent_ino: int, name: str) -> Node:
        parent = self._dir(parent_ino)
        if name == ".":
            return parent
        if name == "..":
            return parent.parent or parent
        path, found = self._child(parent, name)
        if found is None:
            raise OSError(errno.ENOENT, "no such entry", path)
        return self._node_for(parent, name, path, found)

    def forget(self, items: Sequence[tuple[int, int]]) -> None:
        for ino, n in items:
            self.table.forget(ino, n)

    @property
    def nodes(self) -> dict[Inode, Node]:
        return self.table.nodes

    # ---- attributes -------------------------------------------------------------------

    def _meta(self, node: Node) -> tuple[os.stat_result, EntryMeta | None]:
        """lstat of the top entry plus what overrides it."""
        fresh, self._fresh = self._fresh, None
        if node.unlinked:
            return self._meta_unlinked(node)
        if fresh is not None and fresh[0] is node:
            return find_meta(node.layer, node.path, node.dirs, fresh[1])
        return self._layer_meta(node.layer, node.path, node.dirs)

    @staticmethod
    def _layer_meta(
        layer: Layer, path: str, dirs: tuple[Layer, ...]
    ) -> tuple[os.stat_result, EntryMeta | None]:
        return find_meta(layer, path, dirs)

    def _meta_unlinked(self, node: Node) -> tuple[os.stat_result, EntryMeta | None]:
        """fstat of a deleted file that is still open (the tmpfile pattern)."""
        for of in self._open.values():
            if of.node is node and of.fd >= 0:
                return os.fstat(of.fd), read_override_fd(self.upper, of.fd)
        raise OSError(errno.ENOENT, "deleted", node.path)

    def _attr(self, node: Node) -> Attr:
        """Kept on directory nodes of lower layers (immutable): the kernel asks for a
        directory's attributes again after each listing it reads (it marks atime stale).
        Not on files: the kernel keeps theirs for the entry's whole timeout, and an Attr
        with its integers (~360 bytes) was a third of what a node weighed."""
        cached = node.attr
        if isinstance(cached, Attr) and not node.layer.is_upper:
            return cached  # lower layers are immutable
        attr = self._attr_uncached(node)
        if node.dirs:
            node.attr = attr
        return attr

    def _listing(self, node: Node) -> list[str]:
        """merged_names, remembered for directories that no upper part can change."""
        cached = node.listing
        if cached is not None and cached[0] is node.dirs:
            return cached[1]
        names = merged_names(node.dirs, node.path)
        if not any(layer.is_upper for layer in node.dirs):
            node.listing = (node.dirs, names)
        return names

    def _attr_uncached(self, node: Node) -> Attr:
        st, meta = self._meta(node)
        return self._attr_of(node.ino, node.layer, st, meta)

    def _attr_of(
        self, ino: Inode, layer: Layer, st: os.stat_result, meta: EntryMeta | None
    ) -> Attr:
        """The Attr of what `layer` holds with lstat `st` and recorded `meta`."""
        if meta is not None:
            mode, uid, gid, rdev = meta.mode, meta.uid, meta.gid, meta.rdev
        elif layer.plain:
            mode, uid, gid, rdev = st.st_mode, st.st_uid, st.st_gid, st.st_rdev
        else:
            mode, uid, gid, rdev = st.st_mode, 0, 0, 0
        shown = self._shown_ids
        if shown.squash_uid is not None:
            uid = shown.squash_uid
        if shown.squash_gid is not None:
            gid = shown.squash_gid
        # Positional: a NamedTuple's keywords cost ~0.5 us more, on every new entry.
        return Attr(
            ino,
            mode,
            # Merged directories have no true link count; 1 is the conventional
            # "unknown" (btrfs does it) and stops find/fts from trusting nlink-2.
            1 if stat.S_ISDIR(mode) else st.st_nlink,
            uid if uid in shown.uids else shown.unmapped_uid,
            gid if gid in shown.gids else shown.unmapped_gid,
            rdev,
            st.st_size,
            st.st_blksize,
            st.st_blocks,
            st.st_atime_ns,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )

    def getattr(self, ino: int) -> Attr:
        return self._attr(self.node(ino))

    def node_attr(self, node: Node) -> Attr:
        return self._attr(node)

    def _entry_meta(self, node: Node) -> EntryMeta:
        """The full truth about a node (unclamped ids), for copy-up and updates."""
        st, meta = self._meta(node)
        return meta if meta is not None else self._bare_meta(node.layer, st)

    def _entry_meta_at(self, layer: Layer, path: str, dirs: tuple[Layer, ...]) -> EntryMeta:
        """_entry_meta of what `layer` holds at `path` (known to the table or not)."""
        st, meta = self._layer_meta(layer, path, dirs)
        return meta if meta is not None else self._bare_meta(layer, st)

    @staticmethod
    def _bare_meta(layer: Layer, st: os.stat_result) -> EntryMeta:
        return bare_meta(layer, st)

    def _set_link_meta(self, path: str, meta: EntryMeta | None) -> None:
        """Record what the upper symlink `path` shows; nothing when lstat tells it already."""
        if meta is not None and meta == self._bare_meta(self.upper, os.lstat(self.upper.at(path))):
            meta = None
        parent, name = split(path)
        write_link_meta(self.upper, parent, name, meta)

    # ---- copy-up ----------------------------------------------------------------------

    def _copy_up(self, node: Node, *, data: bool = True) -> None:
        """Make `node` live in the upper (parents first), keeping metadata and inode;
        `data` False: a regular file's bytes are not needed (it is truncated to 0 next)."""
        job = self._start_copy_up(node, data)
        if job is not None:
            job.file.run()
            self.copy_up_finish(job)

    def copy_up_start(self, ino: int, *, data: bool = True) -> CopyUp | None:
        """The first step of a copy-up whose bytes move on another thread (fs.server does
        this for big files): the parents copied up, the file's copy planned. The caller
        then runs `job.file.run()` on any thread, and `copy_up_finish(job)` here (or
        `job.file.abort()`). Until then it must let no request remove, rename or copy up
        the node or a directory above it (`is_within` says which would), nor start another
        copy-up of it. None: nothing is left to copy (the node is in the upper, or gone),
        or it is no regular file and was copied up here at once (it has no bytes)."""
        return self._start_copy_up(self.node(ino), data)

    def _start_copy_up(self, node: Node, data: bool) -> CopyUp | None:
        if node.layer.is_upper or node.unlinked:
            return None
        path = node.path
        self._ensure_upper_dir(split(path)[0])
        src = node.layer.at(path)
        st = os.lstat(src)
        if not stat.S_ISREG(st.st_mode):
            self._copy_one(path, node.layer, node.dirs)
            self._copied(node)
            return None
        meta = self._entry_meta_at(node.layer, path, node.dirs)
        self._drop_whiteout(*split(path))
        return CopyUp(node, path, FileCopy.plan(src, self.upper, path, meta, st, data))

    def copy_up_finish(self, job: CopyUp) -> None:
        node = job.node
        if node.unlinked or node.path != job.path:  # the caller let it move: a bug
            job.file.abort()
            raise OSError(errno.EIO, "moved or removed during its copy-up", job.path)
        job.file.finish()
        self._copied(node)

    def _copied(self, node: Node) -> None:
        """`node` has just been copied to the upper: point it there."""
        self._refresh(node)
        if not node.is_dir:
            self.table.set_host(node, _key(self.upper.at(node.path)))
            self._reopen(node)

    def is_within(self, ino: int, parent_ino: int, name: str) -> bool:
        """Whether the entry `name` of directory `parent_ino` is node `ino` or a directory
        above one of its names (so that removing or renaming it moves the node)."""
        nodes = self.table.nodes
        node, parent = nodes.get(Inode(ino)), nodes.get(Inode(parent_ino))
        top = None if parent is None else self.table.child(parent, name)
        if node is None or top is None:
            return False
        if node is top:
            return True
        for above, _ in node.names():
            at: Node | None = above
            while at is not None:
                if at is top:
                    return True
                at = at.parent
        return False

    def _reopen(self, node: Node) -> None:
        """Handles opened on the lower copy now read the upper one (same fd number)."""
        real = self.upper.at(node.path)
        for of in self._open.values():
            if of.node is node and of.fd >= 0:
                fd = os.open(real, of.flags & ~os.O_TRUNC)
                try:
                    os.dup2(fd, of.fd)
                finally:
                    os.close(fd)

    def _ensure_upper_dir(self, path: str) -> None:
        """The directory `path` of the union exists in the upper (with its metadata): the
        missing ones are copied from the top down, each resolved from its parent."""
        if not path or self.upper.isdir(path):
            return
        missing = [path]
        above = split(path)[0]
        while above and not self.upper.isdir(above):
            missing.append(above)
            above = split(above)[0]
        node = self.table.at(above)
        found = Found(node.layer, node.dirs) if node is not None else self._resolve_path(above)
        if found is None:
            raise OSError(errno.ENOENT, "parent vanished", above)
        dirs = found.dirs
        for p in reversed(missing):
            known = self.table.child(node, split(p)[1]) if node is not None else None
            here = Found(known.layer, known.dirs) if known is not None else resolve_child(dirs, p)
            if here is None or not here.dirs:
                raise OSError(errno.ENOENT, "parent vanished", p)
            self._copy_one(p, here.layer, here.dirs)
            now = resolve_child(dirs, p)
            if now is None:
                raise OSError(errno.ENOENT, "parent vanished", p)
            if known is not None:
                known.layer, known.dirs = now.layer, now.dirs
            dirs, node = now.dirs, known

    def _copy_one(self, path: str, layer: Layer, dirs: tuple[Layer, ...]) -> None:
        """Copy the entry `layer` holds at `path` into the upper, whose parent directory is
        there already."""
        meta = self._entry_meta_at(layer, path, dirs)
        src = layer.at(path)
        st = os.lstat(src)
        self._drop_whiteout(*split(path))
        copy_entry(src, self.upper, path, meta, st)
        if stat.S_ISLNK(st.st_mode):
            self._set_link_meta(path, meta)

    def _copy_up_tree(self, path: str) -> None:
        """Copy a whole merged directory into the upper and make it opaque: after this
        it can move anywhere in the upper (rename of a lower directory, no EXDEV)."""
        found = self._resolve_path(path)
        if found is None:
            raise OSError(errno.ENOENT, "vanished", path)
        if found.dirs == (self.upper,):
            self._mark_opaque(path)
            return  # nothing below shows through: the subtree is all in the upper already
        if not found.layer.is_upper:
            self._ensure_upper_dir(split(path)[0])
            self._copy_one(path, found.layer, found.dirs)
        todo = [(path, found.dirs)]  # directories in the upper now, to fill
        while todo:
            at, dirs = todo.pop()
            for name in merged_names(dirs, at):
                child = join(at, name)
                cf = resolve_child(dirs, child)
                if cf is None:
                    continue
                if cf.dirs == (self.upper,):
                    self._mark_opaque(child)
                    continue
                if not cf.layer.is_upper:
                    self._copy_one(child, cf.layer, cf.dirs)
                if cf.dirs:
                    todo.append((child, cf.dirs))
            self._clear_whiteouts(at)
            self._mark_opaque(at)

    def _mark_opaque(self, path: str) -> None:
        _touch(self.upper.at(join(path, OPAQUE_MARKER)))

    def _clear_whiteouts(self, path: str) -> None:
        """Drop the whiteouts of an upper directory that has just become opaque."""
        with os.scandir(self.upper.at(path)) as entries:
            names = [
                e.name
                for e in entries
                if (e.name.startswith(WHITEOUT_PREFIX) and not e.name.startswith(".wh..wh."))
                or (
                    not (e.is_file(follow_symlinks=False) or e.is_dir(follow_symlinks=False))
                    and not e.is_symlink()
                    and is_whiteout(e.stat(follow_symlinks=False))
                )
            ]
        for n in names:
            os.unlink(self.upper.at(join(path, n)))

    def _refresh_moved(self, top: Node, whole: bool) -> None:
        """After `top` moved: where it lives now, and (`whole`) every known node below it,
        each resolved from its freshly resolved directory. Not `whole` when the moved
        entry was in the upper alone: nothing below it changed layer, and the work stays
        O(1) however much the kernel knows below it."""
        self._refresh_one(top, self._resolve_path(top.path))
        if not whole:
            return
        for node in self.table.subtree(top):
            assert node.parent is not None
            self._refresh_one(node, resolve_child(node.parent.dirs, node.path))

    def _refresh_one(self, node: Node, found: Found | None) -> None:
        if found is None:
            if node.parent is not None:
                self.table.unname(node, node.parent, node.name)
            return
        was_lower = not node.layer.is_upper
        node.layer, node.dirs = found.layer, found.dirs
        if was_lower and node.layer.is_upper and not node.is_dir:
            self.table.set_host(node, _key(self.upper.at(node.path)))
            self._reopen(node)

    def _lower_has(self, parent: Node, name: str) -> bool:
        """Whether a lower layer shows `name` under `parent` (so deleting needs a whiteout)."""
        wh = whiteout_name(name)
        for layer in parent.dirs:
            if layer.is_upper:
                continue
            st = layer.lstat(join(parent.path, name))
            if st is not None:
                return not is_whiteout(st)
            if wh is not None and layer.exists(join(parent.path, wh)):
                return False
        return False

    def _whiteout(self, parent: Node, name: str) -> None:
        """Hide the lower layers' `name` under `parent` (nothing of it is in the upper)."""
        self._ensure_upper_dir(parent.path)
        wh = whiteout_name(name)
        if wh is not None:
            _touch(self.upper.at(join(parent.path, wh)))
            return
        try:
            os.mknod(self.upper.at(join(parent.path, name)), stat.S_IFCHR | 0o600, 0)
        except PermissionError as exc:  # Linux < 5.8: only CAP_MKNOD makes a 0/0 device
            raise OSError(
                errno.ENAMETOOLONG, "this kernel cannot whiteout a name this long", name
            ) from exc

    def _drop_whiteout(self, parent: str, name: str) -> bool:
        """Remove the upper's whiteout of `parent/name`, if any, before putting something
        there; returns whether there was one."""
        wh = whiteout_name(name)
        if wh is not None and self.upper.exists(join(parent, wh)):
            os.unlink(self.upper.at(join(parent, wh)))
            return True
        st = self.upper.lstat(join(parent, name))
        if st is not None and is_whiteout(st):
            os.unlink(self.upper.at(join(parent, name)))
            return True
        return False

    def _prepare_new(self, parent: Node, name: str) -> tuple[str, bool]:
        """Checks before creating `name`; returns its path and whether a whiteout was
        removed (then a new directory must be opaque)."""
        check_name(name)
        path, found = self._child(parent, name)
        if found is not None:
            raise OSError(errno.EEXIST, "exists", path)
        self._ensure_upper_dir(parent.path)
        return path, self._drop_whiteout(parent.path, name)

    def _new_owner(self, parent: Node, uid: int, gid: int) -> tuple[int, int]:
        pmeta = self._entry_meta(parent)
        if pmeta.mode & stat.S_ISGID:
            gid = pmeta.gid  # BSD group semantics under a setgid directory
        return uid, gid

    def _record_new(self, where: str | int, meta: EntryMeta) -> None:
        """Record what a new upper entry (a path, or an open fd) shows, unless it shows
        that by itself: the owner and mode the host gave it are bare_meta's (the common
        case, root creating with a mode disk_mode leaves as it is). One setxattr fewer,
        and with it a journal write of the upper's filesystem, per creation: the storm
        of the bench creates 3000 files. Only where the record is an xattr, which a new
        inode starts without: a sidecar file is named by the inode number, and one left
        by a crash for a number now reused would otherwise speak for the new entry."""
        if self.upper.sidecars is None:
            st = os.fstat(where) if isinstance(where, int) else os.lstat(where)
            if meta == self._bare_meta(self.upper, st):
                return
        write_override(self.upper, where, meta)

    def _created(self, parent: Node, name: str, path: str) -> Attr:
        found = resolve_child(parent.dirs, path)  # the parent is in the upper, fresh
        if found is None:
            raise OSError(errno.ENOENT, "vanished after creation", path)
        node = self._node_for(parent, name, path, found)
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
        real = self.upper.at(path)
        os.mkdir(real, disk_mode(mode))
        self._record_new(real, EntryMeta(uid=uid, gid=gid, mode=mode))
        if was_whiteout or self._lower_has(parent, name):
            self._mark_opaque(path)
        return self._created(parent, name, path)

    def symlink(self, parent_ino: int, name: str, target: str, uid: int = 0, gid: int = 0) -> Attr:
        parent = self._dir(parent_ino)
        path, _ = self._prepare_new(parent, name)
        uid, gid = self._new_owner(parent, uid, gid)
        os.symlink(target, self.upper.at(path))
        self._set_link_meta(path, EntryMeta(uid=uid, gid=gid, mode=stat.S_IFLNK | 0o777))
        return self._created(parent, name, path)

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
        real = self.upper.at(path)
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL, disk_mode(mode))
        os.close(fd)
        rdev = rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0
        self._record_new(real, EntryMeta(uid=uid, gid=gid, mode=mode, rdev=rdev))
        return self._created(parent, name, path)

    def create(
        self, parent_ino: int, name: str, mode: int, flags: int, uid: int, gid: int
    ) -> tuple[FileHandle, Attr]:
        parent = self._dir(parent_ino)
        path, _ = self._prepare_new(parent, name)
        uid, gid = self._new_owner(parent, uid, gid)
        mode = stat.S_IFREG | (mode & 0o7777)
        real = self.upper.at(path)
        flags = _host_flags(flags)
        fd = os.open(real, flags | os.O_CREAT | os.O_EXCL, disk_mode(mode))
        try:
            self._record_new(fd, EntryMeta(uid=uid, gid=gid, mode=mode))
            attr = self._created(parent, name, path)
        except BaseException:
            os.close(fd)
            raise
        fh = FileHandle(next(self._fh))
        self._open[fh] = _Open(fd, self.nodes[attr.ino], flags)
        return fh, attr

    def link(self, ino: int, parent_ino: int, name: str) -> Attr:
        """A hard link: one more name of the same upper file and the same node."""
        node = self.node(ino)
        if node.is_dir:
            raise OSError(errno.EPERM, "hard link to a directory", node.path)
        parent = self._dir(parent_ino)
        self._copy_up(node)
        path, _ = self._prepare_new(parent, name)
        os.link(self.upper.at(node.path), self.upper.at(path), follow_symlinks=False)
        if stat.S_ISLNK(os.lstat(self.upper.at(path)).st_mode):
            self._set_link_meta(path, read_link_meta(self.upper, *split(node.path)))
        self.table.set_host(node, _key(self.upper.at(path)))
        self.table.alias(node, parent, name)
        node.lookups += 1
        return self._attr(node)

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

    def _remove(self, parent: Node, name: str, path: str, found: Found) -> None:
        st = self.upper.lstat(path)
        node = self.table.child(parent, name)
        if st is not None and not (node is not None and self._is_open(node)):
            drop_override(self.upper, st)  # else at the last release (`release`)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                # only whiteouts/markers remain: checked as empty
                shutil.rmtree(self.upper.at(path))
                self.upper.moved(path)
            else:
                os.unlink(self.upper.at(path))
                if stat.S_ISLNK(st.st_mode):
                    write_link_meta(self.upper, parent.path, name, None)
        if self._lower_has(parent, name):
            self._whiteout(parent, name)
        node = self.table.child(parent, name)
        if node is not None:
            self.table.unname(node, parent, name)

    def _to_upper(self, path: str, found: Found) -> None:
        """The entry at `path`, whole, in the upper (a directory becomes opaque)."""
        if found.dirs:
            self._copy_up_tree(path)
        elif not found.layer.is_upper:
            self._ensure_upper_dir(split(path)[0])
            self._copy_one(path, found.layer, found.dirs)

    def _link_meta_of(self, parent: str, name: str) -> EntryMeta | None:
        st = self.upper.lstat(join(parent, name))
        if st is None or not stat.S_ISLNK(st.st_mode):
            return None
        return read_link_meta(self.upper, parent, name)

    def _upper_only(self, found: Found) -> bool:
        """Whether nothing of the entry (and below it) shows from a lower layer."""
        return found.dirs == (self.upper,) if found.dirs else found.layer.is_upper

    def rename(
        self, old_parent: int, old_name: str, new_parent: int, new_name: str, flags: int
    ) -> None:
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (
            RENAME_NOREPLACE | RENAME_EXCHANGE
        ):
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
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise OSError(errno.ENOENT, "no such entry", dst_path)
            if dst.dirs and (src_path + "/").startswith(dst_path + "/"):
                raise OSError(errno.EINVAL, "cannot move a directory into itself", src_path)
            self._exchange(op, old_name, src_path, src, np_, new_name, dst_path, dst)
            return
        if dst is not None:
            if flags & RENAME_NOREPLACE:
                raise OSError(errno.EEXIST, "exists", dst_path)
            if src.dirs and not dst.dirs:
                raise OSError(errno.ENOTDIR, "not a directory", dst_path)
            if dst.dirs and not src.dirs:
                raise OSError(errno.EISDIR, "is a directory", dst_path)
            if dst.dirs and merged_names(dst.dirs, dst_path):
                raise OSError(errno.ENOTEMPTY, "directory not empty", dst_path)
            if self._same_file(src_path, src, dst_path, dst):
                return  # two links to one file: rename(2) does nothing
        upper_only = self._upper_only(src)
        # 1. the source, whole, in the upper
        self._to_upper(src_path, src)
        is_link = stat.S_ISLNK(os.lstat(self.upper.at(src_path)).st_mode)
        link_meta = read_link_meta(self.upper, op.path, old_name) if is_link else None
        # 2. the target's place in the upper, emptied
        self._ensure_upper_dir(np_.path)
        st = self.upper.lstat(dst_path)
        if st is not None:
            drop_override(self.upper, st)  # the target loses this name
        if st is not None and stat.S_ISDIR(st.st_mode):
            shutil.rmtree(self.upper.at(dst_path))
            self.upper.moved(dst_path)
        self._drop_whiteout(np_.path, new_name)
        if src.dirs:
            self._mark_opaque(src_path)
        os.rename(self.upper.at(src_path), self.upper.at(dst_path))
        self.upper.moved(src_path)
        if is_link:
            write_link_meta(self.upper, op.path, old_name, None)
        if is_link or (st is not None and stat.S_ISLNK(st.st_mode)):
            write_link_meta(self.upper, np_.path, new_name, link_meta)
        # 3. hide what the lowers still hold at the old name
        if self._lower_has(op, old_name):
            self._whiteout(op, old_name)
        # 4. the inode table follows the move: one node relinked, whatever is below it
        replaced = self.table.child(np_, new_name)
        if replaced is not None:
            self.table.unname(replaced, np_, new_name)
        self.table.move(op, old_name, np_, new_name)
        moved = self.table.child(np_, new_name)
        if moved is not None:
            self._refresh_moved(moved, whole=not upper_only)
        # the parents may have been copied up; their other children did not change
        self._refresh(op)
        self._refresh(np_)

    def _same_file(self, a: str, fa: Found, b: str, fb: Found) -> bool:
        if not (fa.layer.is_upper and fb.layer.is_upper) or fa.dirs or fb.dirs:
            return False
        sa, sb = os.lstat(self.upper.at(a)), os.lstat(self.upper.at(b))
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)

    def _exchange(
        self,
        op: Node,
        old_name: str,
        src_path: str,
        src: Found,
        np_: Node,
        new_name: str,
        dst_path: str,
        dst: Found,
    ) -> None:
        """RENAME_EXCHANGE: both entries go to the upper whole, then swap atomically.
        Both names keep existing, so no whiteout is needed."""
        whole_a, whole_b = not self._upper_only(src), not self._upper_only(dst)
        self._to_upper(src_path, src)
        self._to_upper(dst_path, dst)
        la = self._link_meta_of(op.path, old_name)
        lb = self._link_meta_of(np_.path, new_name)
        _renameat2(self.upper.at(src_path), self.upper.at(dst_path), RENAME_EXCHANGE)
        self.upper.moved(src_path)
        self.upper.moved(dst_path)
        if la is not None or lb is not None:
            write_link_meta(self.upper, op.path, old_name, lb)
            write_link_meta(self.upper, np_.path, new_name, la)
        self.table.swap(op, old_name, np_, new_name)
        for parent, name, whole in ((np_, new_name, whole_a), (op, old_name, whole_b)):
            moved = self.table.child(parent, name)
            if moved is not None:
                self._refresh_moved(moved, whole)
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
        self._copy_up(node, data=size != 0)
        self._own_upper_dir(node)
        of = self._open.get(FileHandle(fh)) if fh is not None else None
        if node.unlinked and of is None:
            of = next((o for o in self._open.values() if o.node is node and o.fd >= 0), None)
        target: int | str = of.fd if of is not None and of.fd >= 0 else self.upper.at(node.path)
        if size is not None:
            if node.is_dir:
                raise OSError(errno.EISDIR, "is a directory", node.path)
            os.truncate(target, size)
        is_link = not node.unlinked and stat.S_ISLNK(os.lstat(self.upper.at(node.path)).st_mode)
        if mode is not None or uid is not None or gid is not None:
            old = self._entry_meta(node)
            new = replace(
                old,
                mode=(old.mode & ~0o7777) | (mode & 0o7777) if mode is not None else old.mode,
                uid=old.uid if uid is None else uid,
                gid=old.gid if gid is None else gid,
            )
            if is_link:
                for parent, name in node.names():
                    self._set_link_meta(join(parent.path, name), new)
            else:
                write_override(self.upper, target, new)
                if mode is not None:
                    os.chmod(target, disk_mode(new.mode))
        if atime_ns is not None or mtime_ns is not None:
            st = os.fstat(target) if isinstance(target, int) else os.lstat(target)
            times = (
                st.st_atime_ns if atime_ns is None else atime_ns,
                st.st_mtime_ns if mtime_ns is None else mtime_ns,
            )
            if isinstance(target, int):
                os.utime(target, ns=times)
            else:
                os.utime(target, ns=times, follow_symlinks=False)
        return self._attr(node)

    def owner(self, ino: int) -> tuple[int, int]:
        """The true (uid, gid) of a node: what the image or a chown said, never clamped."""
        meta = self._entry_meta(self.node(ino))
        return meta.uid, meta.gid

    def chown(self, ino: int, uid: int | None, gid: int | None) -> Attr:
        """chown(2) by a caller allowed to, as the kernel does it (fs/open.c chown_common):
        new ids and, on anything but a directory, the setuid bit, the setgid bit of a
        group-executable file and the file capability dropped. That is what a real chown
        under a full id map sends us as setattr (+ removexattr), so both record the same."""
        node = self.node(ino)
        meta = self._entry_meta(node)
        mode = None
        if not node.is_dir:
            kill = stat.S_ISUID | (stat.S_ISGID if meta.mode & stat.S_IXGRP else 0)
            mode = meta.mode & ~kill if meta.mode & kill else None
            if "security.capability" in meta.xattrs:
                self.removexattr(ino, "security.capability")
        return self.setattr(ino, mode=mode, uid=uid, gid=gid)

    def _own_upper_dir(self, node: Node) -> None:
        """An upper dir shown with the image's metadata (the upper root, made by the
        launcher) gets that metadata written, so that changes to it stick."""
        if not node.is_dir or node.unlinked or len(node.dirs) < 2 or node.dirs[0] is not self.upper:
            return
        real = self.upper.at(node.path)
        if read_override(real, self.upper) is not None:
            return
        st, meta = self._layer_meta(node.dirs[1], node.path, node.dirs[1:])
        write_override(self.upper, real, meta or EntryMeta(uid=0, gid=0, mode=st.st_mode))
        os.utime(real, ns=(st.st_atime_ns, st.st_mtime_ns))

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

    def _set_meta(self, node: Node, new: EntryMeta) -> None:
        real = self.upper.at(node.path)
        if stat.S_ISLNK(os.lstat(real).st_mode):
            if not new.xattrs.keys() <= {"security.capability"} and new.xattrs:
                # what Linux itself answers for user.* on a symlink
                raise OSError(errno.EPERM, "no user xattrs on symlinks", node.path)
            for parent, name in node.names():
                self._set_link_meta(join(parent.path, name), new)
        else:
            write_override(self.upper, real, new)

    def setxattr(self, ino: int, name: str, value: bytes, flags: int = 0) -> None:
        node = self.node(ino)
        if name == OVERRIDE_XATTR or name.startswith("user.rsbox."):
            raise OSError(errno.EPERM, "reserved attribute", name)
        old = self._entry_meta(node)
        if flags & os.XATTR_CREATE and name in old.xattrs:
            raise OSError(errno.EEXIST, "attribute exists", name)
        if flags & os.XATTR_REPLACE and name not in old.xattrs:
            raise OSError(errno.ENODATA, "no such attribute", name)
        self._copy_up(node)
        self._set_meta(node, replace(old, xattrs={**old.xattrs, name: value}))

    def removexattr(self, ino: int, name: str) -> None:
        node = self.node(ino)
        old = self._entry_meta(node)
        if name not in old.xattrs:
            raise OSError(errno.ENODATA, "no such attribute", name)
        self._copy_up(node)
        self._set_meta(
            node, replace(old, xattrs={k: v for k, v in old.xattrs.items() if k != name})
        )

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.upper.root)

    # ---- files and directories --------------------------------------------------------

    def open(self, ino: int, flags: int) -> tuple[FileHandle, bool]:
        """Open for I/O; returns the handle and whether the kernel may keep its page
        cache: always, since layers are immutable and every write to the upper comes
        through the kernel (we are its only writer)."""
        node = self.node(ino)
        if opens_for_writing(flags):
            self._copy_up(node, data=not flags & os.O_TRUNC)
        fd = os.open(node.layer.at(node.path), _host_flags(flags))
        fh = FileHandle(next(self._fh))
        self._open[fh] = _Open(fd, node, flags)
        return fh, True

    def _fd(self, fh: int) -> int:
        try:
            return self._open[FileHandle(fh)].fd
        except KeyError:
            raise OSError(errno.EBADF, "unknown file handle") from None

    def host_fd(self, fh: int) -> int:
        """The fd of our own open of handle `fh`'s file: valid until `release(fh)`, and
        the same number across a copy-up (`_reopen` moves it onto the upper copy)."""
        return self._fd(fh)

    def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(self._fd(fh), size, off)

    def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(self._fd(fh), buf, off)

    def fsync(self, fh: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(self._fd(fh))

    def release(self, fh: int) -> None:
        of = self._open.pop(FileHandle(fh), None)
        if of is not None and of.fd >= 0:
            try:
                if of.node.unlinked and not self._is_open(of.node):
                    st = os.fstat(of.fd)
                    if st.st_nlink == 0:
                        drop_override(self.upper, st)
            finally:
                os.close(of.fd)

    def _is_open(self, node: Node) -> bool:
        return any(of.node is node and of.fd >= 0 for of in self._open.values())

    def opendir(self, ino: int) -> FileHandle:
        node = self._dir(ino)
        fh = FileHandle(next(self._fh))
        self._open[fh] = _Open(-1, node)
        return fh

    def readdir(self, fh: int, start: int) -> Iterator[_Entry]:
        """(next offset, name, node, its Attr, counted) from `start`. The listing is taken
        at offset 0 (opendir or rewinddir) and offsets index into it, so they stay stable
        while entries are added or removed; an entry gone since then is skipped.

        `counted` is False for "." and "..". For the others the kernel takes a reference
        when the caller reports the entry (readdirplus): the caller then calls `took`, or
        `forget(node.ino, 0)` for the one that did not fit, which drops a node the kernel
        never heard of."""
        of = self._open.get(FileHandle(fh))
        if of is None:
            raise OSError(errno.EBADF, "unknown directory handle")
        parent = of.node
        if start == 0:
            of.names = [".", "..", *self._listing(parent)]
        return self._entries(parent, of.names, start, 0)

    def readdir_ino(self, ino: int, start: int) -> Iterator[_Entry]:
        """`readdir` for a kernel that opens directories without asking us (fs.kcache's
        no-opendir: there is no handle, and no RELEASEDIR to drop a snapshot on). The
        listing taken at offset 0 is kept in `_snapshots` under a number (1-255) that
        every offset carries, so that readers of one directory that interleave each go
        on in their own snapshot, until it is read to its end; the oldest is dropped to
        make room (as is one that a reader left half-way). An offset whose snapshot is
        gone reads the same positions of a fresh listing. Offsets stay below 2**31:
        32-bit programs get EOVERFLOW from glibc's readdir beyond (ext4 does the same)."""
        parent = self._dir(ino)
        number, pos = start >> _POS_BITS, start & _POS_MASK
        mine = self._snapshots.get(number) if start else None
        if mine is not None and mine[0] == parent.ino:
            names = mine[1]
        else:
            mine = None
            names = [".", "..", *self._listing(parent)]
            if not start and len(names) < _POS_MASK:
                number = next(self._snapshot_numbers) % 255 + 1  # the oldest one goes
                mine = self._snapshots[number] = (parent.ino, names)
            elif not start or len(names) >= _POS_MASK:
                number, pos = 0, start  # a directory of 8M entries: plain positions
            # else: its snapshot is gone; the same positions of this fresh listing
        yield from self._entries(parent, names, pos, number << _POS_BITS)
        if mine is not None and self._snapshots.get(number) is mine:
            del self._snapshots[number]  # read to its end (an early stop never gets here)

    def _entries(self, parent: Node, names: list[str], start: int, base: int) -> Iterator[_Entry]:
        # The warm path (`find` over a tree the kernel has seen): the child is in the
        # table, found by its name alone. A new child (the cold path: a first listing)
        # goes through resolution straight to it (a listing holds no whiteouts, `parent`
        # is a directory), and its Attr is made from the lstat resolution took.
        child = self.table.child
        attr_of = self._attr
        at = parent.path
        dirs = parent.dirs
        for i in range(start, len(names)):
            name = names[i]
            if i < 2:
                node = self._dot(parent, name)
                yield base | (i + 1), name, node, attr_of(node), False
                continue
            known = child(parent, name)
            if known is not None:
                yield base | (i + 1), name, known, attr_of(known), True
                continue
            path = f"{at}/{name}" if at else name
            found = resolve_child(dirs, path)
            if found is None:
                continue  # gone since the listing was taken
            node = self._new_node(parent, name, path, found)
            fresh, self._fresh = self._fresh, None
            if fresh is not None and fresh[0] is node:
                attr = self._new_attr(node, path, fresh[1])
            else:
                attr = attr_of(node)  # another name of a file known already
            yield base | (i + 1), name, node, attr, True

    def _new_attr(self, node: Node, path: str, st: os.stat_result) -> Attr:
        """_attr of a node just added at `path` with lstat `st` (what _meta would find)."""
        layer = node.layer
        st, meta = find_meta(layer, path, node.dirs, st)
        attr = self._attr_of(node.ino, layer, st, meta)
        if node.dirs:
            node.attr = attr
        return attr

    def oldest_entries(self, n: int) -> Iterator[tuple[int, str]]:
        """(parent inode, name) of the directories holding the `n` longest-known nodes
        (nothing open, not the root): invalidating a directory's entry makes the kernel
        drop its whole subtree with one notification, where one per file would queue
        thousands behind pyfuse3's notify thread. A file right under the root is named
        itself. Picked nodes go to the back of the line, so that the next call asks
        about others while the kernel's FORGETs for these are on their way."""
        busy = {id(of.node) for of in self._open.values()}
        nodes = self.table.nodes
        picked: list[Node] = []
        for node in nodes.values():
            if len(picked) >= n:
                break
            if node.ino != ROOT_INODE and id(node) not in busy:
                picked.append(node)
        asked: set[int] = set()
        for node in picked:
            nodes[node.ino] = nodes.pop(node.ino)
            parent = node.parent
            if parent is None:
                continue
            target = node if parent.parent is None else parent  # under the root: itself
            if target.ino in asked or target.parent is None:
                continue
            asked.add(target.ino)
            yield target.parent.ino, target.name

    @staticmethod
    def took(node: Node) -> None:
        """The kernel holds one more reference to `node` (an entry of readdirplus)."""
        node.lookups += 1

    @staticmethod
    def _dot(parent: Node, name: str) -> Node:
        if name == "." or parent.parent is None:
            return parent
        return parent.parent

    def dir_node(self, fh: int) -> Node:
        of = self._open.get(FileHandle(fh))
        if of is None:
            raise OSError(errno.EBADF, "unknown directory handle")
        return of.node

    def access(self, ino: int) -> None:
        """The kernel checks permissions itself (default_permissions); the node must exist."""
        self._meta(self.node(ino))
