""".dockerignore/.containerignore: reading the file, matching paths, walking a context.

Expectations cite where Docker's behaviour comes from:
  [pm]     moby/patternmatcher patternmatcher_test.go (TestMatches and friends)
  [ignore] moby/patternmatcher ignorefile/ignorefile_test.go (TestReadAll)
  [fsutil] tonistiigi/fsutil filter.go (BuildKit's context walker)
  [ref]    docs.docker.com, "Build context: .dockerignore files"; podman-build(1) "Files"
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rootless.errors import BuildError
from rootless.images.dockerignore import (
    IgnoreRules,
    clean,
    find_ignore_file,
    load,
    parse_ignore,
)


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("*", "fileutils.go", True),  # [pm] TestWildcardMatches
        ("*.go", "fileutils.go", True),
        ("*.go", "a/fileutils.go", False),  # * does not cross /
        ("**", "dir/file", True),  # [pm] TestMatches from here on
        ("**/", "file", True),
        ("**/**", "dir/file", True),
        ("dir/**", "dir/dir2/file", True),
        ("**/dir", "dir", True),
        ("**/dir", "dir/file", True),  # a matching parent excludes its contents
        ("**/dir2/*", "dir/dir2/file", True),
        ("**/dir2/**", "dir/dir2/dir3/file", True),
        ("**/file", "dir/dir/file", True),
        ("**/file*", "dir/dir/file.txt", True),
        ("**/**/*.txt2", "dir/dir/file.txt", False),
        ("**/*.txt", "file.txt", True),
        ("a**/*.txt", "a/dir/dir/file.txt", True),
        ("a/*.txt", "a/dir/file.txt", False),
        ("a/*.txt**", "a/file.txt", True),
        ("a[b-d]e", "ae", False),
        ("a[b-d]e", "ace", True),
        ("a[^b-d]e", "aze", True),
        ("a[^b-d]e", "ace", False),
        ("a[\\]]e", "a]e", True),  # an escaped ] inside a class
        (".*", ".foo", True),
        (".*", "foo", False),
        ("abc.def", "abcZdef", False),  # . is literal
        ("abc?def", "abcZdef", True),
        ("abc?def", "abcdef", False),
        ("a\\\\", "a\\", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        ("**/foo/bar", "foo/bar", True),
        ("abc/**", "abc", False),  # dir/** is what is inside, not the directory
        ("abc/**", "abc/def/ghi", True),
        ("**/.foo", "bar.foo", False),
        ("a(b)c/def", "a(b)c/def", True),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
        # Docker's suffix shortcut: **X with no other wildcard is "ends with X" [pm]
        ("**file", "dir/dir/file", True),
        ("**.log", "a/xa.log", True),
        ("**log", "catalog", True),
        # cleaning: leading / stripped, // and .. resolved [ignore]
        ("/docs", "docs/README.md", True),
        ("docs/", "docs/README.md", True),
        ("a//b/../c", "a/c", True),
        ("./x", "x", True),
        ("x", "./x", True),  # the path is cleaned too
        ("x", "/x/y", True),
    ],
)
def test_single_pattern(pattern: str, path: str, excluded: bool) -> None:
    assert parse_ignore(pattern).matches(path) is excluded


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["!fileutils.go", "*.go"], "fileutils.go", True),  # [pm] the last match wins
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["docs", "!docs/README.md"], "docs/README.md", False),  # [pm] folder exclusions
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["docs", "!docs/README.md"], "docs/other.md", True),
        (["**", "!util/docker/web"], "util/docker/web/foo", False),  # [pm] multiPatternTests
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["**", "!dist/*.whl"], "dist/p-1.0-py3-none-any.whl", False),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),  # [ref]
        (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),  # [ref]
        ([], "anything", False),
        (["*"], ".", False),  # the context itself is never excluded [pm]
        (["*"], "", False),
    ],
)
def test_several_patterns(patterns: list[str], path: str, excluded: bool) -> None:
    assert parse_ignore("\n".join(patterns)).matches(path) is excluded


def test_reading_the_file() -> None:
    # [ignore] TestReadAll, plus a BOM, CRLF and an indented '#' (a pattern, not a comment)
    rules = parse_ignore(
        "\ufefftest1\r\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n"
        "! /inverted/abs/path\n  # x\n   spaced   \n"
    )
    assert [(p.text, p.exception, p.line) for p in rules.patterns] == [
        ("test1", False, 1),
        ("test2", False, 2),
        ("a/file/here", False, 3),
        ("lastfile", False, 5),
        ("inverted/abs/path", True, 7),
        ("# x", False, 8),
        ("spaced", False, 9),
    ]
    assert rules.matches("# x") and not rules.matches("inverted/abs/path")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\n!\n", '.dockerignore line 2: illegal exclusion pattern: "!"'),  # [pm]
        ("a\n\n! \n", '.dockerignore line 3: illegal exclusion pattern: "!"'),
        ("[", ".dockerignore line 1: bad pattern '[': unterminated character class"),  # [pm]
        ("x\n[a-", ".dockerignore line 2: bad pattern '[a-'"),
        ("[]a]", ".dockerignore line 1: bad pattern '[]a]'"),  # Go: a class cannot be empty
        ("[a-]", ".dockerignore line 1: bad pattern '[a-]'"),
        ("a\\", ".dockerignore line 1: bad pattern 'a\\\\': trailing backslash"),
    ],
)
def test_bad_patterns_name_the_line(text: str, message: str) -> None:
    with pytest.raises(BuildError) as info:
        parse_ignore(text)
    assert info.value.message.startswith(message) and info.value.hint


def test_error_names_the_file() -> None:
    with pytest.raises(BuildError, match=r"^\.containerignore line 1: bad pattern"):
        parse_ignore("[", name=".containerignore")


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        ("a//b", "a/b"),
        ("//a", "/a"),
        ("a/./b/../c/", "a/c"),
        ("../x", "../x"),
        ("/..", "/"),
    ],
)
def test_clean_is_go_filepath_clean(path: str, cleaned: str) -> None:
    assert clean(path) == cleaned


# --- walking a context ------------------------------------------------------------------------


def tree(root: Path, *paths: str) -> Path:
    """Files (and directories, for names ending in /) under root."""
    for p in paths:
        if p.endswith("/"):
            (root / p).mkdir(parents=True, exist_ok=True)
        else:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            (root / p).write_text(p)
    return root


def test_walk_without_rules_yields_everything_sorted_parents_first(tmp_path: Path) -> None:
    ctx = tree(tmp_path, "b.txt", "a/z", "a/b/c", "empty/")
    assert list(IgnoreRules().walk(ctx)) == ["a", "a/b", "a/b/c", "a/z", "b.txt", "empty"]


@pytest.mark.parametrize(
    ("patterns", "walked"),
    [
        (["*.md"], ["docs", "docs/a.md", "docs/img", "docs/img/x.png", "src", "src/m.py"]),
        (["docs"], ["README.md", "src", "src/m.py"]),
        # dir/* keeps the (now empty) directory itself
        (["docs/*"], ["README.md", "docs", "src", "src/m.py"]),
        (["docs/**"], ["README.md", "docs", "src", "src/m.py"]),
        # an exception inside an excluded directory re-includes the file and its parents
        (
            ["docs", "!docs/img/x.png"],
            ["README.md", "docs", "docs/img", "docs/img/x.png", "src", "src/m.py"],
        ),
        (["*", "!src"], ["src", "src/m.py"]),
        # a wildcard exception makes the walk look inside every excluded directory [fsutil]
        (["**", "!**/*.py"], ["src", "src/m.py"]),
        (["**", "!README.md"], ["README.md"]),
    ],
)
def test_walk_applies_the_rules(tmp_path: Path, patterns: list[str], walked: list[str]) -> None:
    ctx = tree(tmp_path, "README.md", "docs/a.md", "docs/img/x.png", "src/m.py")
    assert list(parse_ignore("\n".join(patterns)).walk(ctx)) == walked


def test_walk_agrees_with_matches(tmp_path: Path) -> None:
    ctx = tree(tmp_path, "a/b/c.py", "a/b/d.md", "a/e.py", "f/g/h.txt", "f/i.md", "j.md", "k/")
    rules = parse_ignore("**/*.md\na/b\n!a/**/d.md\nf\n!f/g\nf/g/h.txt\n")
    walked = set(rules.walk(ctx))
    for dirpath, _, filenames in os.walk(ctx):
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), ctx)
            assert (rel in walked) is not rules.matches(rel), rel
    assert sorted(walked) == ["a", "a/b", "a/b/d.md", "a/e.py", "f", "f/g", "k"]


def test_walk_does_not_enter_excluded_directories_without_exceptions(tmp_path: Path) -> None:
    rules = parse_ignore("node_modules\n!src/keep\n")
    assert not rules.may_reinclude_under("node_modules")  # a literal exception elsewhere
    assert rules.may_reinclude_under("src")
    assert parse_ignore("x\n!**/keep\n").may_reinclude_under("x")  # wildcard: must look
    assert not parse_ignore("x\n").may_reinclude_under("x")


def test_walk_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", "secret", "dir/deep")
    ctx = tree(tmp_path / "ctx", "real/f")
    (ctx / "to-dir").symlink_to(outside / "dir")
    (ctx / "to-file").symlink_to(outside / "secret")
    (ctx / "real" / "up").symlink_to("../..")
    (ctx / "dangling").symlink_to("nowhere")
    assert list(IgnoreRules().walk(ctx)) == [
        "dangling",
        "real",
        "real/f",
        "real/up",
        "to-dir",
        "to-file",
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_unreadable_directories(tmp_path: Path) -> None:
    ctx = tree(tmp_path, "ok/f", "secret/f", "private/f")
    (ctx / "secret").chmod(0)
    (ctx / "private").chmod(0)
    try:
        # excluded: skipped without error, even when an exception makes the walk look [fsutil]
        rules = parse_ignore("secret\nprivate\n!**/f\n")
        assert list(rules.walk(ctx)) == ["ok", "ok/f"]
        with pytest.raises(BuildError, match="cannot read 'private' in the build context") as info:
            list(parse_ignore("secret\n").walk(ctx))
        assert info.value.hint == "make it readable, or add it to .dockerignore"
    finally:
        (ctx / "secret").chmod(0o755)
        (ctx / "private").chmod(0o755)


def test_find_and_load_the_ignore_file(tmp_path: Path) -> None:
    ctx = tree(tmp_path, "Containerfile")
    assert find_ignore_file(ctx) is None
    assert load(ctx) == IgnoreRules()
    (ctx / ".dockerignore").write_text("a\n")
    assert find_ignore_file(ctx) == ctx / ".dockerignore"
    (ctx / ".containerignore").write_text("b\n")
    # podman-build(1), Files: "if both are in the context directory, podman build will only
    # use .containerignore"
    assert find_ignore_file(ctx) == ctx / ".containerignore"
    (ctx / "Containerfile.dockerignore").write_text("c\n")
    assert find_ignore_file(ctx, ctx / "Containerfile") == ctx / "Containerfile.dockerignore"
    rules = load(ctx, ctx / "Containerfile")
    assert [p.text for p in rules.patterns] == ["c"]
    (ctx / ".containerignore").write_text("[\n")
    with pytest.raises(BuildError, match=r"^\.containerignore line 1: bad pattern"):
        load(ctx)
