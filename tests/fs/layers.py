"""Build small image layers on disk for the fs tests (layer root = fs/ + meta)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fs.meta import EntryMeta, LayerMeta

# A tree spec: "dir/" -> directory, "name" -> file content, ("->", target) -> symlink.
Tree = Mapping[str, str | tuple[str, str]]


def make_layer(root: Path, tree: Tree, meta: Mapping[str, EntryMeta] | None = None) -> Path:
    """Create layer `root` with `root/fs` holding `tree` and `root/meta` holding `meta`."""
    fs = root / "fs"
    fs.mkdir(parents=True)
    for rel, content in tree.items():
        p = fs / rel.rstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            p.mkdir(exist_ok=True)
        elif isinstance(content, tuple):
            os.symlink(content[1], p)
        else:
            p.write_text(content)
    if meta:
        LayerMeta(dict(meta)).save(root / "meta")
    return root
