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


def _module_level_imports(path: Path) -> set[str]:
    """rootless.* modules imported at module level (not in functions or TYPE_CHECKING)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports nothing at run time
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("rootless")}


def _rootless_graph() -> dict[str, set[str]]:
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "rootless").rglob("*.py")
    }
    return {
        name: {m for m in _module_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_launcher_has_no_import_cycle() -> None:
    launch = {k: v for k, v in _rootless_graph().items() if k.startswith("rootless.launch")}
    assert _cycles(launch) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_launcher_imports_no_cli_and_no_private_name() -> None:
    cli = ("rootless.cli", "rootless.commands", "rootless.containers_cli", "rootless.image_commands")
    bad = []
    for path in sorted((ROOT / "rootless" / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(cli):
                bad.append((path.name, node.module))
            if isinstance(node, ast.ImportFrom) and node.module:
                bad += [(path.name, a.name) for a in node.names if a.name.startswith("_")]
    assert bad == []
