"""fs stands alone: it never imports rootless or policies, and the union logic has no
pyfuse3 import (so it is testable without a mount)."""

from __future__ import annotations

import ast
from pathlib import Path

FS = Path(__file__).resolve().parents[2] / "fs"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_fs_never_imports_rootless_or_policies() -> None:
    for path in FS.glob("*.py"):
        assert not _imports(path) & {"rootless", "policies"}, path


def test_union_and_meta_do_not_import_pyfuse3_or_trio() -> None:
    for name in ("union.py", "meta.py"):
        assert not _imports(FS / name) & {"pyfuse3", "trio"}, name
