"""policies/ imports neither rootless nor fs (dependencies point one way)."""

from __future__ import annotations

import ast
from pathlib import Path

import policies

FORBIDDEN = {"rootless", "fs"}


def test_policies_does_not_import_rootless_or_fs() -> None:
    root = Path(policies.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {m}" for m in mods if m.split(".")[0] in FORBIDDEN]
    assert offenders == []
