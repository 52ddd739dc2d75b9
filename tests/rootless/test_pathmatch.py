"""rootless.pathmatch: Go's path.Match, the one translation behind COPY sources,
`images --filter reference=` and .dockerignore (which adds `**`)."""

from __future__ import annotations

import pytest

from rootless.pathmatch import compile_pattern


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "d/a.py", False),  # `*` stops at /
        ("?.txt", "a.txt", True),
        ("?.txt", "ab.txt", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[^a-c]x", "dx", True),
        ("[^a-c]x", "ax", False),
        ("[\\-]", "-", True),  # an escaped - is a member
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("[b-a]", "a", False),  # a reversed range matches nothing, as in Go
        ("a/**", "a/b/c", False),  # without globstar ** is two stars: one component
        ("a/*/c", "a/b/c", True),
    ],
)
def test_go_path_match(pattern: str, name: str, matches: bool) -> None:
    assert bool(compile_pattern(pattern).fullmatch(name)) is matches


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [("**/x", "x", True), ("**/x", "a/b/x", True), ("a/**", "a/b/c", True), ("a/**", "b/c", False)],
)
def test_globstar_for_dockerignore(pattern: str, name: str, matches: bool) -> None:
    assert bool(compile_pattern(pattern, globstar=True).fullmatch(name)) is matches


@pytest.mark.parametrize("pattern", ["[ab", "[-a]", "[a]]x[", "a[\\", "[]"])
def test_malformed_patterns_are_refused_as_go_refuses_them(pattern: str) -> None:
    with pytest.raises(ValueError):
        compile_pattern(pattern)
