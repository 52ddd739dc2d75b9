"""The package boundaries of docs/architecture.md, checked like trio's test_exports:
`fs` and `policies` never import `rootless` or each other, and `rootless` uses only their
public modules (no `_private` ones)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [(path, node.module)] + [
                    (path, f"{node.module}.{a.name}") for a in node.names
                ]
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"), [("fs", ("rootless", "policies")), ("policies", ("rootless", "fs"))]
)
def test_lower_packages_do_not_import_upward(package: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        (str(p.relative_to(ROOT)), m) for p, m in _imports(package) if m.split(".")[0] in forbidden
    ]
    assert bad == []


def test_rootless_uses_only_public_modules() -> None:
    bad = [
        (str(p.relative_to(ROOT)), m)
        for p, m in _imports("rootless")
        if m.split(".")[0] in ("fs", "policies")
        and any(part.startswith("_") for part in m.split(".")[1:])
    ]
    assert bad == []


def test_the_check_sees_imports() -> None:
    assert any(m == "fs.server" for _, m in _imports("rootless"))
