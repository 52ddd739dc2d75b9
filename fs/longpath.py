"""Strings the kernel accepts for paths longer than PATH_MAX.

What the kernel does, and what bit us: a container can build a tree deeper than any path
string can name. FUSE hands us one parent inode and one name per request, so nothing stops
`mkdir d && cd d` 2000 times; but we reach the layers' files by path, and the 2000th level
of the upper is ~4000 bytes below the upper's own location: past PATH_MAX (4096 bytes with
the NUL), where every path syscall fails with ENAMETOOLONG. (Before this module a deep
tree failed even earlier, on Python's recursion limit, and the container saw EIO.)

The way around it is the one openat(2) exists for: open a directory part way down (an
*anchor*, `O_PATH`) and name the rest relative to it. Python's `os` takes `dir_fd` for some
calls but not for xattrs, and pathlib none at all, so instead of threading fds through
every call this module hands out `/proc/self/fd/N/REST`: the kernel follows
`/proc/self/fd/N` to the anchor directory itself (a "magic link", not a path string), then
walks REST. Any path call works on such a string, as long as it is used while N is open.

- Anchors sit at the last `/` before a multiple of `_STEP` bytes of the relative path, so
  the entries of one deep directory share one anchor and REST stays under
  `_STEP` + 255 bytes. An anchor itself too long to open by path is opened through its
  own anchor.
- They are used from `LIMIT` bytes on, well before PATH_MAX: the kernel walks a path
  string component by component (~40 ns each here), so a lstat at level 2000 from the
  root costs ~40 us where one from a nearby anchor costs ~3 us; a tree only 1300 levels
  deep pays that on every request too.
- They stay open in a small LRU cache per layer. Lower layers never change, so their
  anchors never go stale. In the upper a rename or removal of a directory would leave the
  anchors at and below it pointing at the moved (or deleted) directory: the union calls
  `forget(path)` after each such change, which closes them.
- Lifetime: a string handed out is used within the request that asked for it. `forget`
  closes only anchors at or below the path a request moved or removed, and the anchor of a
  path is always a proper ancestor of it, so no string of that request still needs them;
  the LRU closes the least recently used beyond `_MAX_ANCHORS`, far more than one request
  uses.
- Without /proc (a mount namespace that lacks it) a long path is returned as it is and
  the kernel answers ENAMETOOLONG, a proper errno for a real filesystem.
"""

from __future__ import annotations

import os
from collections import OrderedDict

# A path string of this many bytes or more goes through an anchor (PATH_MAX is 4096
# including the NUL; "/proc/self/fd/N/" adds ~20). Ordinary paths stay far below it.
LIMIT = 1024
_STEP = 512
_MAX_ANCHORS = 256
_PROC_FD = "/proc/self/fd"


class LongPaths:
    """Short names for `root/rel` of one directory tree (a layer)."""

    def __init__(self, root: str) -> None:
        self._root = os.fsencode(root)
        self._anchors: OrderedDict[bytes, int] = OrderedDict()  # rel path -> O_PATH fd
        self._proc: bool | None = None

    def name(self, rel: str) -> str:
        """A string naming `root/rel` that the kernel accepts: `root/rel` itself when it
        is short enough, else `/proc/self/fd/N/REST`. Raises OSError when an ancestor of
        `rel` cannot be opened (missing, or not a directory), as a path call would."""
        full = self._root + b"/" + os.fsencode(rel)
        if len(full) < LIMIT or not self._has_proc():
            return os.fsdecode(full)
        return os.fsdecode(self._short(os.fsencode(rel)))

    def _has_proc(self) -> bool:
        if self._proc is None:
            self._proc = os.path.isdir(_PROC_FD)
        return self._proc

    def _short(self, rel: bytes) -> bytes:
        """`rel` (too long to name from the root) relative to an open anchor."""
        cut = rel.rfind(b"/", 0, ((len(rel) - 1) // _STEP) * _STEP + 1)
        if cut <= 0:  # a root long enough on its own: anchor on the root
            return b"%s/%d/%s" % (_PROC_FD.encode(), self._anchor(b""), rel)
        return b"%s/%d/%s" % (_PROC_FD.encode(), self._anchor(rel[:cut]), rel[cut + 1 :])

    def _anchor(self, rel: bytes) -> int:
        fd = self._anchors.get(rel)
        if fd is not None:
            self._anchors.move_to_end(rel)
            return fd
        full = self._root + b"/" + rel if rel else self._root
        where = full if len(full) < LIMIT or not rel else self._short(rel)
        fd = os.open(where, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._anchors[rel] = fd
        while len(self._anchors) > _MAX_ANCHORS:
            _, old = self._anchors.popitem(last=False)
            os.close(old)
        return fd

    def forget(self, rel: str) -> None:
        """`rel` was renamed or removed: close the anchors at and below it."""
        if not self._anchors:
            return
        key = os.fsencode(rel)
        below = key + b"/"
        for k in [k for k in self._anchors if k == key or k.startswith(below)]:
            os.close(self._anchors.pop(k))

    def close(self) -> None:
        while self._anchors:
            os.close(self._anchors.popitem()[1])
