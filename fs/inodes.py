"""The inode table: the names the kernel holds references to, and nothing more.

- Inode numbers are ours (a counter), so copy-up and rename never change what stat says.
- Hard links: every name of one file on disk (upper, or within one lower layer) maps to
  one Node, keyed by the file's (st_dev, st_ino), so the kernel sees one inode with the
  right st_nlink and tar/cp -a/git see the link.
- Memory is bounded by the kernel: a node lives while the kernel holds lookups on it
  (FORGET drops it) or while its file is open; nothing else is cached here.
"""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass, field
from typing import NewType

from fs.resolve import Layer

Inode = NewType("Inode", int)
ROOT_INODE = Inode(1)


@dataclass(slots=True)
class Node:
    """A file the kernel knows about. `layer` holds it; `dirs` is set for directories."""

    ino: Inode
    path: str  # union-relative, "/"-separated, "" for the root
    layer: Layer
    dirs: tuple[Layer, ...]
    lookups: int = 0
    unlinked: bool = False
    links: list[str] = field(default_factory=list)  # other names of a hard-linked file
    host_ino: tuple[int, int] | None = None  # (st_dev, st_ino) of the file on disk
    # Caches valid while nothing of the node is in the upper (lower layers are immutable):
    attr: object = None  # the last fs.union.Attr
    listing: tuple[tuple[object, ...], list[str]] | None = None  # (dirs, merged names)
    reply: tuple[object, object] | None = None  # (attr, the server's reply made from it)

    @property
    def is_dir(self) -> bool:
        return bool(self.dirs)


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


class InodeTable:
    def __init__(self, root: Node) -> None:
        self._next = itertools.count(ROOT_INODE + 1)
        self.nodes: dict[Inode, Node] = {ROOT_INODE: root}
        self.by_path: dict[str, Inode] = {"": ROOT_INODE}
        self._by_host: dict[tuple[int, int], Inode] = {}

    def get(self, ino: int) -> Node:
        try:
            return self.nodes[Inode(ino)]
        except KeyError:
            raise OSError(errno.ESTALE, "unknown inode") from None

    def at(self, path: str) -> Node | None:
        ino = self.by_path.get(path)
        return None if ino is None else self.nodes[ino]

    def by_host(self, host_ino: tuple[int, int]) -> Node | None:
        ino = self._by_host.get(host_ino)
        return None if ino is None else self.nodes.get(ino)

    def add(
        self,
        path: str,
        layer: Layer,
        dirs: tuple[Layer, ...],
        host_ino: tuple[int, int] | None = None,
    ) -> Node:
        node = Node(Inode(next(self._next)), path, layer, dirs)
        self.nodes[node.ino] = node
        self.by_path[path] = node.ino
        self.set_host(node, host_ino)
        return node

    def set_host(self, node: Node, host_ino: tuple[int, int] | None) -> None:
        if host_ino and not node.is_dir:
            node.host_ino = host_ino
            self._by_host[host_ino] = node.ino

    def alias(self, node: Node, path: str) -> None:
        """`path` is one more name of `node` (a hard link)."""
        if path != node.path and path not in node.links:
            node.links.append(path)
        self.by_path[path] = node.ino

    def unname(self, node: Node, path: str) -> None:
        """`path` no longer names `node`; with no name left it is unlinked."""
        if self.by_path.get(path) == node.ino:
            del self.by_path[path]
        if path in node.links:
            node.links.remove(path)
        elif path == node.path:
            if node.links:
                node.path = node.links.pop(0)
            else:
                node.unlinked = True
        self._maybe_drop(node)

    def forget(self, ino: int, n: int) -> None:
        node = self.nodes.get(Inode(ino))
        if node is None or node.ino == ROOT_INODE:
            return
        node.lookups -= n
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        if node.lookups > 0 or node.ino == ROOT_INODE:
            return
        self.nodes.pop(node.ino, None)
        for p in (node.path, *node.links):
            if self.by_path.get(p) == node.ino:
                del self.by_path[p]
        if node.host_ino and self._by_host.get(node.host_ino) == node.ino:
            del self._by_host[node.host_ino]

    def move(self, src: str, dst: str) -> None:
        """Every name at or under `src` is now under `dst` (after a rename)."""
        moved = sorted((p for p in self.by_path if under(p, src) and src), key=len)
        for p in moved:
            ino = self.by_path.pop(p)
            node = self.nodes[ino]
            new = dst + p[len(src) :]
            if node.path == p:
                node.path = new
            else:
                node.links[node.links.index(p)] = new
            self.by_path[new] = ino

    def swap(self, a: str, b: str) -> None:
        """RENAME_EXCHANGE: what was under `a` is under `b` and the reverse."""
        tmp = "\0swap"
        self.move(a, tmp)
        self.move(b, a)
        self.move(tmp, b)

    def paths_under(self, prefix: str) -> list[str]:
        return [p for p in self.by_path if under(p, prefix)]
