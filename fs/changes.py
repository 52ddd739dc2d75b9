"""What a container changed, and what it sees, read from the layers without a mount.

Two read-only walks over a container's layer stack (pure: no pyfuse3, no privileges):

- `upper_changes`: the writable layer as a list of typed changes, in the order an OCI
  layer tarball holds them (`Changes.items`), and as `docker diff` prints them
  (`Changes.diff`). How the upper keeps things is fs.union's docstring; here:

  * an entry of the upper is an addition ("A") when the image below does not show that
    path, else a change ("C"); its owner, mode, rdev and xattrs are what the container
    saw (fs.resolve.entry_meta: the `user.rsbox.override` xattr, a symlink's sidecar),
    never the disk's (every file there belongs to the host user);
  * `.wh.NAME` files and 0/0 character devices are deletions ("D"); `.wh..wh..opq`
    makes its directory opaque: every name the image showed in it and the upper does
    not hold again is a deletion too; the other `.wh..wh.` names are ours (copy-up
    temporaries, symlink sidecars) and never part of a change;
  * a directory the upper holds only because something below it changed (copy-up
    makes the parents first) is reported, and written, only when something below it is:
    one whose owner, mode and xattrs are still the image's and nothing below which
    changed is not a change. (Its mtime is not compared: a copy-up into a directory
    renames a temporary there, which moves the directory's mtime on disk.)
  * `skip`: paths the launcher creates as mount points (/proc, /etc/hosts, volume
    targets...) when the image lacks them. An empty file or directory added at such a
    path is not a change of the container's, nor is a directory added only to hold
    them (Docker keeps them in an "init" layer that is never committed).

  Order, for a reproducible tarball: depth first, parents before children; in each
  directory the opaque marker, then the whiteouts by name, then the entries by name
  (whiteouts before their siblings, as the OCI image spec asks of layer writers, so a
  streaming extractor never applies one to an entry of the same layer).

- `merged_entries`: every entry below a path as the container sees it (whiteouts and
  opaque directories applied, the top layer's metadata), in the same order: what
  `rsbox export` and `rsbox cp` from a container read.

Both walk with an explicit stack (no recursion: a tree may be thousands of levels deep)
and name files through fs.resolve.Layer.at (paths past PATH_MAX go through
fs.longpath). `Entry.open` is meant to be called while the walk that made it is still
the current one (an anchor of a very long path may be closed later).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from fs.meta import EntryMeta, LayerMeta
from fs.resolve import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    Found,
    Layer,
    entry_meta,
    is_whiteout,
    join,
    merged_names,
    resolve_child,
)

_OURS = ".wh..wh."  # the opaque marker and rsbox's own hidden files

ChangeKind = Literal["A", "C", "D"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One file, directory, symlink, device, fifo or socket, as the container sees it."""

    path: str  # relative to the root, "/"-separated, never ""
    meta: EntryMeta  # owner, full mode (type bits included), rdev, xattrs
    layer: Layer  # where the bytes are
    size: int  # bytes of a regular file, else 0
    mtime_ns: int
    link: str = ""  # a symlink's target
    inode: tuple[int, int] | None = None  # (st_dev, st_ino) when the file has other names

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.meta.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.meta.mode)

    def open(self) -> BinaryIO:
        """The contents of a regular file."""
        return open(self.layer.at(self.path), "rb")


@dataclass(frozen=True, slots=True)
class Whiteout:
    """The layer deletes `path` (and everything below it) from the layers below."""

    path: str


@dataclass(frozen=True, slots=True)
class Opaque:
    """The directory `path` hides everything the layers below hold in it."""

    path: str


LayerItem = Entry | Whiteout | Opaque


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    path: str  # relative, as in Entry.path


@dataclass(frozen=True)
class Changes:
    items: tuple[LayerItem, ...]  # the layer's members, in tarball order
    diff: tuple[Change, ...]  # Docker's A/C/D list, sorted by path

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass(frozen=True)
class Stack:
    """A container's layers: its upper, and the image's layers top first."""

    upper: Layer
    lowers: tuple[Layer, ...]

    @classmethod
    def of(cls, lowers: Sequence[Path], upper: Path) -> Stack:
        """`lowers` bottom to top, each a layer root holding fs/ and meta (as in
        fs.union.UnionSpec); `upper` the container's writable layer."""
        layers = []
        for p in lowers:
            try:
                meta = LayerMeta.load(p / "meta")
            except (ValueError, KeyError, TypeError) as exc:
                raise OSError(errno.EINVAL, f"corrupt layer metadata ({exc})", str(p)) from exc
            layers.append(Layer(p / "fs", meta))
        return cls(Layer(upper, None, is_upper=True), tuple(reversed(layers)))

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (self.upper, *self.lowers)

    def root_dirs(self, *, upper: bool = True) -> tuple[Layer, ...]:
        """The layers the root shows in (an opaque root hides those below it)."""
        dirs: list[Layer] = []
        for layer in self.layers if upper else self.lowers:
            if not layer.isdir(""):
                continue
            dirs.append(layer)
            if layer.exists(OPAQUE_MARKER):
                break
        return tuple(dirs)

    def lookup(self, path: str) -> Found | None:
        """Where the container sees `path` ("" is the root); None if it does not. No
        symlink is followed: a symlink in the middle of `path` makes it missing."""
        dirs = self.root_dirs()
        found: Found | None = Found(dirs[0] if dirs else self.upper, dirs)
        at = ""
        for name in path.split("/") if path else ():
            if found is None or not found.dirs:
                return None
            if name.startswith(WHITEOUT_PREFIX):
                return None
            at = join(at, name)
            found = resolve_child(found.dirs, at)
        return found

    def entry(self, path: str, found: Found) -> Entry:
        """The Entry of `path`, which `found` says where it lives."""
        return _entry(found.layer, path, found.dirs)


def _entry(layer: Layer, path: str, dirs: Sequence[Layer]) -> Entry:
    st, meta = entry_meta(layer, path, dirs)
    is_reg = stat.S_ISREG(meta.mode) and stat.S_ISREG(st.st_mode)
    is_dir = stat.S_ISDIR(st.st_mode)
    return Entry(
        path=path,
        meta=meta,
        layer=layer,
        size=st.st_size if is_reg else 0,
        mtime_ns=st.st_mtime_ns,
        link=os.readlink(layer.at(path)) if stat.S_ISLNK(st.st_mode) else "",
        inode=(st.st_dev, st.st_ino) if not is_dir and st.st_nlink > 1 else None,
    )


# --- the writable layer ---------------------------------------------------------------


@dataclass(slots=True)
class _Rec:
    item: LayerItem
    parent: str  # the directory whose content the record belongs to
    kind: ChangeKind | None = None  # None: the opaque marker (its deletions are `hidden`)
    weak: bool = False  # a directory that is a change only if something below it is
    skipped: bool = False  # a launcher's mount point: no change at all
    hidden: tuple[str, ...] = field(default=())  # an opaque directory's deleted names


def _upper_children(upper: Layer, path: str) -> tuple[bool, list[str], list[str]]:
    """(opaque, whiteouts, entries) of an upper directory, each list sorted by name."""
    opaque = False
    whiteouts: list[str] = []
    names: list[str] = []
    with os.scandir(upper.at(path)) as it:
        for e in it:
            n = e.name
            if n == OPAQUE_MARKER:
                opaque = True
            elif n.startswith(_OURS):
                continue
            elif n.startswith(WHITEOUT_PREFIX):
                whiteouts.append(n[len(WHITEOUT_PREFIX) :])
            elif (
                not (e.is_file(follow_symlinks=False) or e.is_dir(follow_symlinks=False))
                and not e.is_symlink()
                and is_whiteout(e.stat(follow_symlinks=False))
            ):
                whiteouts.append(n)
            else:
                names.append(n)
    return opaque, sorted(whiteouts), sorted(names)


def _is_empty(entry: Entry) -> bool:
    if entry.is_reg:
        return entry.size == 0
    if entry.is_dir:
        with os.scandir(entry.layer.at(entry.path)) as it:
            return not any(not e.name.startswith(_OURS) for e in it)
    return False


def _same_dir_meta(a: EntryMeta, b: EntryMeta) -> bool:
    return (a.uid, a.gid, a.mode, dict(a.xattrs)) == (b.uid, b.gid, b.mode, dict(b.xattrs))


def upper_changes(stack: Stack, skip: frozenset[str] = frozenset()) -> Changes:
    """The container's writable layer as changes (see the module docstring)."""
    upper = stack.upper
    recs: list[_Rec] = []
    if upper.isdir(""):
        _walk_upper(stack, skip, recs)
    kept = _keep(recs)
    items = tuple(r.item for r, k in zip(recs, kept, strict=True) if k)
    diff: list[Change] = []
    for r, k in zip(recs, kept, strict=True):
        if not k:
            continue
        if r.kind is not None:
            diff.append(Change(r.kind, r.item.path))
        diff += [Change("D", join(r.item.path, n)) for n in r.hidden]
    diff.sort(key=lambda c: c.path)
    return Changes(items, tuple(diff))


def _walk_upper(stack: Stack, skip: frozenset[str], recs: list[_Rec]) -> None:
    upper = stack.upper
    # Each frame: a directory of the upper, the lower layers it shows in (the image's
    # view, whatever the upper did to it), and its children still to visit.
    todo: list[tuple[str, tuple[Layer, ...], Iterator[str]]] = []

    def enter(path: str, lower_dirs: tuple[Layer, ...]) -> None:
        opaque, whiteouts, names = _upper_children(upper, path)
        if opaque:
            present = set(names)
            hidden = tuple(n for n in merged_names(lower_dirs, path) if n not in present)
            recs.append(_Rec(Opaque(path), path, None, hidden=hidden))
        for n in whiteouts:
            child = join(path, n)
            # A whiteout of a name the image never showed deletes nothing visible.
            shown = not opaque and resolve_child(lower_dirs, child) is not None
            recs.append(_Rec(Whiteout(child), path, "D" if shown else None))
        todo.append((path, lower_dirs, iter(names)))

    enter("", stack.root_dirs(upper=False))
    while todo:
        parent, lower_dirs, names = todo[-1]
        name = next(names, None)
        if name is None:
            todo.pop()
            continue
        path = join(parent, name)
        below = resolve_child(lower_dirs, path)
        entry = _entry(upper, path, (upper, *below.dirs) if below is not None else (upper,))
        rec = _Rec(entry, parent, "C" if below is not None else "A")
        if below is None and path in skip and _is_empty(entry):
            rec.skipped = True
        elif entry.is_dir:
            if below is None:
                rec.weak = True  # kept unless it only held skipped mount points
            elif below.dirs:
                image = entry_meta(below.layer, path, below.dirs)[1]
                rec.weak = _same_dir_meta(entry.meta, image)
        recs.append(rec)
        if entry.is_dir and not rec.skipped:
            enter(path, below.dirs if below is not None else ())


def _keep(recs: list[_Rec]) -> list[bool]:
    """Which records are changes: a weak directory only when something below it is (or,
    for an added one, when it held no skipped mount point: an empty `mkdir`)."""
    kept = [False] * len(recs)
    has_kept: set[str] = set()
    has_skipped: set[str] = set()
    for i in range(len(recs) - 1, -1, -1):  # children before their directory
        r = recs[i]
        if r.skipped:
            has_skipped.add(r.parent)
            continue
        keep = True
        if r.weak:
            path = r.item.path
            keep = path in has_kept or (r.kind == "A" and path not in has_skipped)
            if not keep and path in has_skipped:
                has_skipped.add(r.parent)
        if keep:
            kept[i] = True
            has_kept.add(r.parent)
    return kept


# --- the whole tree -----------------------------------------------------------------------


def merged_entries(stack: Stack, top: str = "", found: Found | None = None) -> Iterator[Entry]:
    """Every entry below the directory `top` ("" = the root, itself not yielded) as the
    container sees it, parents first, names sorted. `found`: `stack.lookup(top)` if the
    caller has it."""
    if found is None:
        found = stack.lookup(top)
    if found is None or not found.dirs:
        return
    todo: list[tuple[str, tuple[Layer, ...], Iterator[str]]] = [
        (top, found.dirs, iter(sorted(merged_names(found.dirs, top))))
    ]
    while todo:
        parent, dirs, names = todo[-1]
        name = next(names, None)
        if name is None:
            todo.pop()
            continue
        path = join(parent, name)
        here = resolve_child(dirs, path)
        if here is None:
            continue
        entry = _entry(here.layer, path, here.dirs)
        yield entry
        if here.dirs and entry.is_dir:
            todo.append((path, here.dirs, iter(sorted(merged_names(here.dirs, path)))))


__all__ = [
    "Change",
    "ChangeKind",
    "Changes",
    "Entry",
    "LayerItem",
    "Opaque",
    "Stack",
    "Whiteout",
    "merged_entries",
    "upper_changes",
]
