"""Go's path.Match / filepath.Match patterns as Python regexes: one translation for every
place rsbox matches as Docker does (COPY sources, `images --filter reference=`,
.dockerignore, which adds ``**``).

``*`` is any run of characters but ``/``, ``?`` one character but ``/``, ``[a-z]`` and
``[^a-z]`` a class (which may match ``/``), ``\\x`` the character x. A malformed pattern
(``[a``, an unescaped ``-`` or ``]`` in a class, a trailing ``\\``) raises ValueError, as
Go returns ErrBadPattern; each caller turns it into its own error with a hint.
"""

from __future__ import annotations

import re


def _class(pattern: str, i: int) -> tuple[str, int]:
    """A ``[...]`` class starting at pattern[i] as a regex, with Go filepath.Match's
    syntax: ``^`` negates, ranges ``a-z``, ``\\`` escapes; ``-`` and ``]`` must be escaped
    inside, and the class must not be empty."""

    def one(j: int) -> tuple[str, int]:
        if j >= len(pattern):
            raise ValueError("unterminated character class")
        ch = pattern[j]
        if ch in "-]":
            raise ValueError(f"unescaped {ch!r} in a character class")
        if ch == "\\":
            j += 1
            if j >= len(pattern):
                raise ValueError("trailing backslash in a character class")
            ch = pattern[j]
        return ch, j + 1

    i += 1
    negate = i < len(pattern) and pattern[i] == "^"
    i += negate
    parts: list[str] = []
    count = 0
    while True:
        if i >= len(pattern):
            raise ValueError("unterminated character class")
        if pattern[i] == "]" and count:
            i += 1
            break
        lo, i = one(i)
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            hi, i = one(i + 1)
        count += 1
        if lo <= hi:  # a reversed range matches nothing (Go), rather than failing (re)
            parts.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
    if not parts:
        return ("(?s:.)" if negate else "(?!)"), i
    return "[" + ("^" if negate else "") + "".join(parts) + "]", i


def compile_pattern(pattern: str, *, globstar: bool = False) -> re.Pattern[str]:
    """The whole-string regex of a pattern (use fullmatch). With `globstar` (.dockerignore),
    ``**`` is any number of directories: ``**/x`` matches ``x`` and ``a/b/x``, ``a/**``
    everything under ``a``. Raises ValueError if malformed."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if globstar and pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1  # "**/" is "**"
            out.append(".*" if i >= len(pattern) else "(?:.*/)?")
            continue
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= len(pattern):
                raise ValueError("trailing backslash")
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            cls, i = _class(pattern, i - 1)
            out.append(cls)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)
