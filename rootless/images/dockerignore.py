""".dockerignore / .containerignore: which files of the build context a build may read.

The rules are Docker's, as moby/patternmatcher (and its ignorefile reader) and BuildKit's
context walker (tonistiigi/fsutil filter.go) implement them; read for semantics, not copied:

- A line starting with ``#`` (in column 1: ``  #x`` is a pattern) is a comment; blank
  lines are skipped; surrounding blanks are trimmed; a UTF-8 BOM is dropped.
- ``!pattern`` is an exception: it re-includes what earlier patterns excluded.
- Each pattern is cleaned like Go's filepath.Clean (``a//b/../c`` -> ``a/c``) and one
  leading ``/`` is removed: patterns are relative to the context root.
- ``*`` is any run of characters but ``/``, ``?`` one character but ``/``, ``[a-z]`` and
  ``[^a-z]`` a class (which may match ``/``), ``\\x`` the character x. ``**`` is any
  number of directories: ``**/x`` matches ``x`` and ``a/b/x``, ``a/**`` everything under
  ``a``, ``a/**/b`` ``a/b`` and ``a/x/y/b``. A malformed pattern (``[a``, a trailing
  ``\\``, a lone ``!``) is an error, never silently ignored.
- A pattern matches a path when it matches the path itself or any of its parent
  directories, so excluding ``dir`` excludes everything in it.
- The last pattern that matches decides: excluded if it is a plain pattern, included if it
  is an exception. Nothing matching means included. The context root is never excluded.
- Walking: an excluded directory is not entered unless an exception could re-include
  something inside it; a directory that is excluded but holds a re-included file is
  reported (before that file), because the file needs its parent. Unreadable excluded
  directories are skipped without error, as BuildKit does.

One quirk kept on purpose, because Docker has it: a pattern that starts with ``**`` not
followed by ``/`` and has no other wildcard is a plain suffix match (``**.log`` matches
``a.log`` and ``xa.log`` alike, and so does ``**log``).

Which file: BuildKit reads ``<Dockerfile>.dockerignore`` next to the Dockerfile first,
Podman ``.containerignore`` before ``.dockerignore`` in the context (podman-build(1));
`find_ignore_file` does all three, in that order.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rootless.errors import BuildError
from rootless.pathmatch import compile_pattern

_HINT = "see https://docs.docker.com/build/concepts/context/#dockerignore-files"


def clean(path: str) -> str:
    """Go's filepath.Clean on a /-separated path ("" -> ".", "//a" -> "/a")."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):  # POSIX keeps two leading slashes; Go does not
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the "!"
    exception: bool  # a "!" pattern: re-includes
    line: int
    regex: re.Pattern[str] = field(repr=False, compare=False)

    @classmethod
    def compile(cls, text: str, exception: bool, line: int) -> Pattern:
        return cls(text, exception, line, compile_pattern(text, globstar=True))

    def matches_path(self, path: str) -> bool:
        """Whether the pattern matches `path` itself (not counting its parents)."""
        rest = self.text[2:]
        if self.text.startswith("**") and rest[:1] != "/" and not re.search(r"[*?\[\]\\]", rest):
            return path.endswith(rest)  # Docker's suffix shortcut; see the module notes
        return self.regex.fullmatch(path) is not None

    def matches(self, path: str) -> bool:
        """Whether the pattern matches `path` (cleaned, relative) or a parent of it."""
        if self.matches_path(path):
            return True
        parts = path.split("/")
        return any(self.matches_path("/".join(parts[:n])) for n in range(1, len(parts)))

    def literal_prefix(self) -> str | None:
        """For an exception like ``dir/keep`` or ``dir/**``: the path it names, so a walk can
        tell which excluded directories may hold re-included files; None if it has
        wildcards."""
        text = self.text.removesuffix("/**").removesuffix("/*")
        return None if re.search(r"[*\[\]?^\\]", text) else text


@dataclass(frozen=True)
class IgnoreRules:
    patterns: tuple[Pattern, ...] = ()

    @property
    def exceptions(self) -> tuple[Pattern, ...]:
        return tuple(p for p in self.patterns if p.exception)

    def matches(self, path: str) -> bool:
        """True when `path` (relative to the context, ``/``-separated) is excluded."""
        cleaned = clean(path).lstrip("/")
        if cleaned in ("", "."):
            return False  # the context itself is never excluded
        excluded = False
        for pattern in self.patterns:
            # A pattern that cannot change the verdict is not evaluated (same result).
            if pattern.exception == excluded and pattern.matches(cleaned):
                excluded = not pattern.exception
        return excluded

    def may_reinclude_under(self, directory: str) -> bool:
        """Whether an exception could match something inside the excluded `directory`."""
        exceptions = self.exceptions
        prefixes = [p.literal_prefix() for p in exceptions]
        if any(p is None for p in prefixes):
            return bool(exceptions)  # a wildcard exception: look inside to know
        return any(f"{p}/".startswith(f"{directory}/") for p in prefixes if p is not None)

    def _judge(self, path: str, parent: tuple[bool, ...]) -> tuple[bool, tuple[bool, ...]]:
        """`matches` for a walk: `parent` says which patterns matched the parent directory
        or one above it (and so match `path` too); returns the verdict and the same for
        `path`. One regex per pattern per entry, whatever the depth."""
        hits = tuple(
            hit or p.matches_path(path) for hit, p in zip(parent, self.patterns, strict=True)
        )
        excluded = False
        for hit, pattern in zip(hits, self.patterns, strict=True):
            if hit:
                excluded = not pattern.exception
        return excluded, hits

    def walk(self, context_dir: str | os.PathLike[str]) -> Iterator[str]:
        """Relative paths (``/``-separated, sorted, parents first) of every entry a build
        may read: files, directories, symlinks and other entries that are not excluded.
        Symlinks are reported as entries and never followed, so nothing outside the
        context is reached. Raises BuildError for a directory it cannot read."""
        root = os.open(context_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield from self._walk(root, "", (False,) * len(self.patterns), [])
        finally:
            os.close(root)

    def _walk(
        self, fd: int, rel: str, parent: tuple[bool, ...], pending: list[str]
    ) -> Iterator[str]:
        """`parent`: which patterns match `rel`; `pending`: excluded directories above, to
        report once something inside them is kept."""
        with os.scandir(fd) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
        for name, is_dir in entries:
            path = f"{rel}/{name}" if rel else name
            excluded, hits = self._judge(path, parent)
            if is_dir and excluded and not self.may_reinclude_under(path):
                continue
            sub = self._open_dir(fd, name, path, quiet=excluded) if is_dir else None
            if sub is None and (is_dir or excluded):
                continue
            if excluded:
                pending.append(path)
            else:
                yield from pending
                pending.clear()
                yield path
            if sub is not None:
                try:
                    yield from self._walk(sub, path, hits, pending)
                finally:
                    os.close(sub)
                if pending and pending[-1] == path:
                    pending.pop()  # nothing inside was kept: the directory is not either

    @staticmethod
    def _open_dir(fd: int, name: str, path: str, *, quiet: bool) -> int | None:
        """The directory `name` under `fd`, never through a symlink; None when it cannot
        be opened and the failure does not matter (excluded, or gone meanwhile)."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(name, flags, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR) or (
                quiet and exc.errno == errno.EACCES
            ):
                return None
            raise BuildError(
                f"cannot read {path!r} in the build context: {exc.strerror}",
                hint="make it readable, or add it to .dockerignore",
            ) from exc


def parse_ignore(text: str, *, name: str = ".dockerignore") -> IgnoreRules:
    """The rules of an ignore file. Raises BuildError naming the line of a bad pattern."""
    patterns = []
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.removesuffix("\r")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
            if not line:
                raise BuildError(
                    f'{name} line {number}: illegal exclusion pattern: "!"',
                    hint="write !PATTERN to re-include what PATTERN names",
                )
        line = clean(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        try:
            patterns.append(Pattern.compile(line, exception, number))
        except ValueError as exc:
            raise BuildError(
                f"{name} line {number}: bad pattern {line!r}: {exc}", hint=_HINT
            ) from None
    return IgnoreRules(tuple(patterns))


def find_ignore_file(context_dir: Path, containerfile: Path | None = None) -> Path | None:
    """``<containerfile>.dockerignore`` (BuildKit), else ``.containerignore`` then
    ``.dockerignore`` in the context (Podman's order); None when there is none."""
    candidates = [context_dir / ".containerignore", context_dir / ".dockerignore"]
    if containerfile is not None:
        candidates.insert(0, containerfile.with_name(containerfile.name + ".dockerignore"))
    return next((c for c in candidates if c.is_file()), None)


def load(context_dir: Path, containerfile: Path | None = None) -> IgnoreRules:
    """The rules that apply to a build of `context_dir` (none when there is no file)."""
    found = find_ignore_file(context_dir, containerfile)
    if found is None:
        return IgnoreRules()
    try:
        text = found.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise BuildError(
            f"cannot read {found}: {exc.strerror}", hint="make the ignore file readable"
        ) from exc
    return parse_ignore(text, name=found.name)
