"""Build small image layers on disk for the fs tests (layer root = fs/ + meta)."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

from fs.meta import EntryMeta, LayerMeta

# A tree spec: "dir/" -> directory, "name" -> file content, ("->", target) -> symlink,
# ("sparse", "SIZE") -> a file of SIZE bytes, "head" at 0 and "tail" at the end, a hole
# between; ("deep", "N") -> a directory holding a chain of N directories `dd`, with a file
# `leaf` ("deep\n") at the bottom (past 1365 levels deeper than a path string can name).
Tree = Mapping[str, str | tuple[str, str]]


def write_tree(fs: Path, tree: Tree) -> None:
    """Create `tree` under the directory `fs`."""
    fs.mkdir(parents=True, exist_ok=True)
    for rel, content in tree.items():
        p = fs / rel.rstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            p.mkdir(exist_ok=True)
        elif isinstance(content, tuple) and content[0] == "sparse":
            with p.open("wb") as f:
                f.write(b"head")
                f.seek(int(content[1]) - 4)
                f.write(b"tail")
        elif isinstance(content, tuple) and content[0] == "deep":
            p.mkdir()
            _chain(p, int(content[1]))
        elif isinstance(content, tuple):
            os.symlink(content[1], p)
        else:
            p.write_text(content)


def _chain(top: Path, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("dd", dir_fd=fd)
            sub = os.open("dd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"deep\n")
        os.close(leaf)
    finally:
        os.close(fd)


def make_layer(root: Path, tree: Tree, meta: Mapping[str, EntryMeta] | None = None) -> Path:
    """Create layer `root` with `root/fs` holding `tree` and `root/meta` holding `meta`."""
    write_tree(root / "fs", tree)
    if meta:
        LayerMeta(dict(meta)).save(root / "meta")
    return root


def remove_tree(root: Path) -> None:
    """shutil.rmtree for trees of any depth: Python 3.11's recurses once per level and
    fails past ~1000 (pytest's own cleanup of tmp_path then leaves `garbage-*` behind).
    One directory fd open at a time; each directory is read once, its subdirectories left
    to visit are kept on a stack with the name to come back up to (`..`, an O_PATH fd,
    checked to be the directory we came from). A file or symlink is just unlinked."""
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        root.unlink()
        return
    if not root.exists():
        return
    flags = os.O_DIRECTORY | os.O_NOFOLLOW

    def read_and_unlink(fd: int) -> list[str]:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in entries:
            if not is_dir:
                os.unlink(name, dir_fd=fd)
        return [name for name, is_dir in entries if is_dir]

    fd = os.open(root, os.O_RDONLY | flags)
    todo = read_and_unlink(fd)
    up: list[tuple[str, list[str], tuple[int, int]]] = []
    try:
        while True:
            if todo:
                name = todo.pop()
                sub = os.open(name, os.O_RDONLY | flags, dir_fd=fd)
                st = os.fstat(fd)
                os.close(fd)
                fd = sub
                up.append((name, todo, (st.st_dev, st.st_ino)))
                todo = read_and_unlink(fd)
                continue
            if not up:
                break
            name, todo, was = up.pop()
            parent = os.open("..", os.O_PATH | flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != was:
                raise OSError(errno.ESTALE, "moved while being removed", str(root))
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(root)
