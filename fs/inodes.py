"""The inode table: the names the kernel holds references to, and nothing more.

- Inode numbers are ours (a counter), so copy-up and rename never change what stat says.
- The table is a tree, like the kernel's dentries: a node knows the directory node holding
  its name, a directory node its known children by name. A rename re-links one node,
  however many the kernel knows below it: renaming a directory of 100k known files used
  to rewrite 100k paths on the one thread that answers every request (~3 s during which
  the whole container's filesystem stood still). A node's path is computed from the tree
  and cached; one generation count invalidates the caches of everything a rename moved.
- Hard links: every name of one file on disk (upper, or within one lower layer) maps to
  one Node, keyed by the file's (st_dev, st_ino), so the kernel sees one inode with the
  right st_nlink and tar/cp -a/git see the link. Its other names are in `links`.
- Memory is bounded by the kernel: a node lives while the kernel holds lookups on it
  (FORGET drops it) or while its file is open; nothing else is cached here. A directory
  also stays while known children hang below it (the kernel forgets children first; if it
  ever does not, their paths and `..` still resolve).
- Nothing here recurses: a tree may be thousands of levels deep.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NewType

from fs.resolve import Layer

Inode = NewType("Inode", int)
ROOT_INODE = Inode(1)


@dataclass(slots=True)
class _Clock:
    """Bumped when a directory with known children moves: every cached path is stale."""

    gen: int = 0


@dataclass(slots=True, eq=False)
class Node:
    """A file the kernel knows about. `layer` holds it; `dirs` is set for directories."""

    ino: Inode
    parent: Node | None  # the directory holding its (first) name; None for the root
    name: str
    layer: Layer
    dirs: tuple[Layer, ...]
    clock: _Clock = field(repr=False)
    lookups: int = 0
    unlinked: bool = False
    links: list[tuple[Node, str]] | None = None  # other names (hard links); None: none
    children: dict[str, Node] | None = field(default=None, repr=False)  # known, by name
    host_ino: tuple[int, int] | None = None  # (st_dev, st_ino) of the file on disk
    # Caches valid while nothing of the node is in the upper (lower layers are immutable):
    attr: object = None  # the last fs.union.Attr
    listing: tuple[tuple[object, ...], list[str]] | None = None  # (dirs, merged names)
    reply: tuple[object, object] | None = None  # (attr, the server's reply made from it)
    _path: str = field(default="", repr=False)
    _gen: int = field(default=-1, repr=False)

    @property
    def is_dir(self) -> bool:
        return bool(self.dirs)

    @property
    def path(self) -> str:
        """Union-relative, "/"-separated, "" for the root (cached for directories; see
        _Clock). A file's is its directory's plus its name, made when asked: a cached
        string per file was ~115 of the ~1000 bytes a node weighed."""
        parent = self.parent
        if not self.dirs and parent is not None:
            base = parent.path
            return f"{base}/{self.name}" if base else self.name
        gen = self.clock.gen
        if self._gen == gen:
            return self._path
        chain: list[Node] = []
        n = self
        while n.parent is not None and n._gen != gen:
            chain.append(n)
            n = n.parent
        base = n._path
        for m in reversed(chain):
            base = f"{base}/{m.name}" if base else m.name
            m._path, m._gen = base, gen
        return base

    def names(self) -> list[tuple[Node, str]]:
        """Every (directory, name) of this node, the first one first."""
        if self.parent is None:
            return []
        return [(self.parent, self.name), *self.links] if self.links else [(self.parent, self.name)]


class InodeTable:
    def __init__(self, root_layer: Layer, root_dirs: tuple[Layer, ...]) -> None:
        self._next = itertools.count(ROOT_INODE + 1)
        self._clock = _Clock()
        self.root = Node(ROOT_INODE, None, "", root_layer, root_dirs, self._clock, lookups=1)
        self.nodes: dict[Inode, Node] = {ROOT_INODE: self.root}
        self._by_host: dict[tuple[int, int], Inode] = {}

    def get(self, ino: int) -> Node:
        try:
            return self.nodes[Inode(ino)]
        except KeyError:
            raise OSError(errno.ESTALE, "unknown inode") from None

    @staticmethod
    def child(parent: Node, name: str) -> Node | None:
        children = parent.children
        return None if children is None else children.get(name)

    def at(self, path: str) -> Node | None:
        node: Node | None = self.root
        if path:
            for name in path.split("/"):
                assert node is not None
                node = self.child(node, name)
                if node is None:
                    return None
        return node

    def by_host(self, host_ino: tuple[int, int]) -> Node | None:
        ino = self._by_host.get(host_ino)
        return None if ino is None else self.nodes.get(ino)

    def add(
        self,
        parent: Node,
        name: str,
        layer: Layer,
        dirs: tuple[Layer, ...],
        host_ino: tuple[int, int] | None = None,
    ) -> Node:
        node = Node(Inode(next(self._next)), parent, name, layer, dirs, self._clock)
        self.nodes[node.ino] = node
        self._attach(node, parent, name)
        self.set_host(node, host_ino)
        return node

    @staticmethod
    def _attach(node: Node, parent: Node, name: str) -> None:
        if parent.children is None:
            parent.children = {}
        parent.children[name] = node

    @staticmethod
    def _detach(parent: Node, name: str, node: Node) -> None:
        if parent.children is not None and parent.children.get(name) is node:
            del parent.children[name]

    def set_host(self, node: Node, host_ino: tuple[int, int] | None) -> None:
        if host_ino and not node.is_dir:
            node.host_ino = host_ino
            self._by_host[host_ino] = node.ino

    def alias(self, node: Node, parent: Node, name: str) -> None:
        """`parent/name` is one more name of `node` (a hard link)."""
        if (parent, name) not in [(p, n) for p, n in node.names()]:
            node.links = [*(node.links or ()), (parent, name)]
        self._attach(node, parent, name)

    def unname(self, node: Node, parent: Node, name: str) -> None:
        """`parent/name` no longer names `node`; with no name left it is unlinked."""
        self._detach(parent, name, node)
        if node.parent is parent and node.name == name:
            if node.links:
                node.parent, node.name = node.links.pop(0)
                node.links = node.links or None
                node._gen = -1
            else:
                node.unlinked = True
        else:
            rest = [(p, n) for p, n in node.links or () if not (p is parent and n == name)]
            node.links = rest or None
        self._maybe_drop(node)
        self._maybe_drop(parent)

    def forget(self, ino: int, n: int) -> None:
        node = self.nodes.get(Inode(ino))
        if node is None or node.ino == ROOT_INODE:
            return
        node.lookups -= n
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        """Drop `node` if the kernel holds no reference and no known child hangs below it,
        then its directories, which may have been kept for it alone."""
        todo = [node]
        while todo:
            node = todo.pop()
            if node.lookups > 0 or node.children or node.ino == ROOT_INODE:
                continue
            if self.nodes.get(node.ino) is not node:
                continue  # dropped already
            del self.nodes[node.ino]
            for parent, name in node.names():
                self._detach(parent, name, node)
                todo.append(parent)
            if node.host_ino and self._by_host.get(node.host_ino) == node.ino:
                del self._by_host[node.host_ino]

    def _rename(self, node: Node, old: tuple[Node, str], new: tuple[Node, str]) -> None:
        if node.parent is old[0] and node.name == old[1]:
            node.parent, node.name = new
            if node.children:
                self._clock.gen += 1  # every path below changed: recompute when asked
            else:
                node._gen = -1
        else:
            links = node.links or ()
            node.links = [new if (p is old[0] and n == old[1]) else (p, n) for p, n in links]
        self._attach(node, *new)

    def move(self, src_parent: Node, src_name: str, dst_parent: Node, dst_name: str) -> None:
        """What `src_parent/src_name` named is now `dst_parent/dst_name` (after a rename;
        the caller unnamed what the target replaced). O(1), whatever is below it."""
        node = self.child(src_parent, src_name)
        if node is None:
            return
        self._detach(src_parent, src_name, node)
        self._rename(node, (src_parent, src_name), (dst_parent, dst_name))
        self._maybe_drop(src_parent)

    def swap(self, a_parent: Node, a_name: str, b_parent: Node, b_name: str) -> None:
        """RENAME_EXCHANGE: what was at `a` is at `b` and the reverse."""
        na, nb = self.child(a_parent, a_name), self.child(b_parent, b_name)
        if na is not None:
            self._detach(a_parent, a_name, na)
        if nb is not None:
            self._detach(b_parent, b_name, nb)
        if na is not None:
            self._rename(na, (a_parent, a_name), (b_parent, b_name))
        if nb is not None:
            self._rename(nb, (b_parent, b_name), (a_parent, a_name))

    def subtree(self, top: Node) -> Iterator[Node]:
        """Every known node below `top` by its first name, each after its directory.
        The caller may unname what it is given: an unlinked directory is not entered."""
        todo = [top]
        while todo:
            d = todo.pop()
            for name, child in list((d.children or {}).items()):
                if child.parent is not d or child.name != name:
                    continue  # a hard link's other name
                yield child
                if child.children and not child.unlinked:
                    todo.append(child)
