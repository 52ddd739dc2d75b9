"""Which layer holds a name: the whiteout rules, read-only and stateless.

How the stack is read (OCI image-spec "whiteouts", the same rules overlayfs applies):

- Layers are searched from the top: the upper (the container's writes), then the lowers
  from the last (newest) to the first. The first layer holding a name decides its type.
- `.wh.NAME` in a layer hides NAME in every layer below it. `.wh..wh..opq` inside a
  directory hides the content of that directory in every layer below. A non-directory
  hides whatever is below it, including a directory.
- Layers written by overlayfs tools (`Layer.overlay_style`, what `rsbox-overlayfs` is
  given) also use overlayfs's own markers: a 0/0 character device NAME is a whiteout and
  a directory with the xattr `trusted.overlay.opaque` or `user.overlay.opaque` = "y" is
  opaque.
- A directory is therefore modelled as the ordered list of layers in which it is visible as
  a directory (`Found.dirs`), computed from its parent's list, so the parent's whiteouts
  and opaque markers apply to everything under it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fs.meta import EntryMeta, LayerMeta

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERRIDE_XATTR = "user.rsbox.override"
# Linux refuses user.* xattrs on symlinks: what the container set on an upper symlink
# (owner) is kept in this xattr of its parent directory, a JSON map name -> EntryMeta.
LINKS_XATTR = "user.rsbox.links"
_OVERLAY_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


@dataclass(frozen=True, slots=True, eq=False)
class Layer:
    """One directory tree of the stack; `meta` is None for the upper and for plain
    layers (`plain`: ownership and mode are what lstat says, as for fuse-overlayfs)."""

    root: Path
    meta: LayerMeta | None
    is_upper: bool = False
    plain: bool = False
    overlay_style: bool = False
    _prefix: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prefix", os.fspath(self.root) + "/")

    def at(self, path: str) -> str:
        """`real` as a plain string: lookups run this a lot, pathlib costs ~10 us."""
        return self._prefix + path if path else os.fspath(self.root)

    def real(self, path: str) -> Path:
        return self.root / path if path else self.root


@dataclass(frozen=True, slots=True)
class Found:
    """Where a name lives: its top layer and, for a directory, every layer showing it."""

    layer: Layer
    dirs: tuple[Layer, ...]


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def split(path: str) -> tuple[str, str]:
    head, _, tail = path.rpartition("/")
    return head, tail


def lstat_or_none(p: str | Path) -> os.stat_result | None:
    try:
        return os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None


def lexists(p: str | Path) -> bool:
    return lstat_or_none(p) is not None


def check_name(name: str) -> None:
    """Names the container may create. `.wh.*` would be read back as a whiteout."""
    if name.startswith(WHITEOUT_PREFIX):
        raise OSError(errno.EPERM, "reserved name (OCI whiteout prefix)", name)
    if not name or "/" in name or name in (".", ".."):
        raise OSError(errno.EINVAL, "invalid name", name)


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(layer: Layer, path: str) -> bool:
    if lexists(layer.at(join(path, OPAQUE_MARKER))):
        return True
    if layer.overlay_style:
        for name in _OVERLAY_OPAQUE:
            try:
                if os.getxattr(layer.at(path), name, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                pass
    return False


def resolve_child(parent_dirs: Sequence[Layer], path: str) -> Found | None:
    """The whiteout decision for one name, given the layers its parent is visible in."""
    parent, name = split(path)
    top: Layer | None = None
    dirs: list[Layer] = []
    for layer in parent_dirs:
        st = lstat_or_none(layer.at(path))
        if st is not None:
            if layer.overlay_style and _is_overlay_whiteout(st):
                break
            is_dir = stat.S_ISDIR(st.st_mode)
            if top is None:
                top = layer
            if not is_dir:
                break  # a non-directory hides everything below, and ends a directory
            dirs.append(layer)
            if _is_opaque(layer, path):
                break
        if lexists(layer.at(join(parent, WHITEOUT_PREFIX + name))):
            break
    if top is None:
        return None
    return Found(top, tuple(dirs))


def merged_names(dirs: Sequence[Layer], path: str) -> list[str]:
    """readdir of a directory visible in `dirs` (top first), whiteouts applied."""
    seen: set[str] = set()
    hidden: set[str] = set()
    out: list[str] = []
    for layer in dirs:
        try:
            entries = sorted(os.scandir(layer.at(path)), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        below: list[str] = []
        for e in entries:
            n = e.name
            if n.startswith(WHITEOUT_PREFIX):
                if not n.startswith(".wh..wh."):
                    below.append(n[len(WHITEOUT_PREFIX) :])
                continue
            if n in seen or n in hidden:
                continue
            if (
                layer.overlay_style
                and not e.is_dir()
                and _is_overlay_whiteout(e.stat(follow_symlinks=False))
            ):
                hidden.add(n)
                continue
            seen.add(n)
            out.append(n)
        hidden.update(below)  # a layer's whiteouts hide names in the layers below it
    return out


def read_override(p: str | Path) -> EntryMeta | None:
    try:
        raw = os.getxattr(p, OVERRIDE_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return None
        raise
    return EntryMeta.from_json(json.loads(raw))


def write_override(p: str | Path, meta: EntryMeta) -> None:
    os.setxattr(p, OVERRIDE_XATTR, json.dumps(meta.to_json()).encode(), follow_symlinks=False)


def read_links(dir_real: str | Path) -> dict[str, EntryMeta]:
    """The symlink metadata map of an upper directory."""
    try:
        raw = os.getxattr(dir_real, LINKS_XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.ENOENT, errno.ENOTDIR):
            return {}
        raise
    return {k: EntryMeta.from_json(v) for k, v in json.loads(raw).items()}


def update_links(dir_real: str | Path, name: str, meta: EntryMeta | None) -> None:
    """Set (or with None drop) one symlink's entry in its directory's map."""
    links = read_links(dir_real)
    if meta is None:
        if links.pop(name, None) is None:
            return
    else:
        links[name] = meta
    if links:
        doc = json.dumps({k: v.to_json() for k, v in links.items()}).encode()
        os.setxattr(dir_real, LINKS_XATTR, doc)
    else:
        try:
            os.removexattr(dir_real, LINKS_XATTR)
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise


def disk_mode(mode: int) -> int:
    """Permissions on disk: the host user must always reach its own upper files; the
    container's mode (setuid bits included) lives in the override only."""
    if stat.S_ISDIR(mode):
        return (mode & 0o777) | 0o700
    return (mode & 0o777) | 0o600
