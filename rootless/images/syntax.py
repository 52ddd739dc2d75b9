"""The lexical layer of the Containerfile parser: lines, directives, flags, words, JSON
arrays, heredoc openers and Go durations. Each function is pure and knows nothing of line
numbers: the parser (containerfile.py) adds the line and instruction to what they raise.

The rules are BuildKit's (frontend/dockerfile/parser: parser.go, directives.go,
split_command.go, line_parsers.go), read for their behaviour, not copied.
"""

from __future__ import annotations

import json
import re

from rootless.errors import BuildError
from rootless.images.shellwords import Lexer

DIRECTIVE_KEYS = ("syntax", "escape", "check")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")
# Go's regexp `[\t\v\f\r ]+`: what separates the instruction from its arguments and the
# words of FROM, EXPOSE, and non-JSON ADD/COPY/VOLUME.
BLANKS = re.compile(r"[\t\v\f\r ]+")
_HEREDOC_WORD = re.compile(r"(\d*)<<(-?)\s*([^<]*)", re.ASCII)


def split_lines(text: str) -> list[str]:
    """Lines with their ends kept; only ``\\n`` ends a line (as Go's line scanner)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def is_comment(raw: str) -> bool:
    return raw.lstrip().startswith("#")


def strip_continuation(line: str, escape: str) -> tuple[str, bool]:
    """(text, continues): the escape as the last non-blank character, not itself escaped,
    continues the line; it and the blanks after it are removed."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape) and (len(stripped) == 1 or stripped[-2] != escape):
        return stripped[:-1], True
    return line, False


def parse_directive(token: str) -> tuple[str, str] | None:
    """(key, value) for ``# key=value`` with a known key (lower-cased), else None."""
    if not token.startswith("#"):
        return None
    m = _DIRECTIVE.fullmatch(token[1:].lstrip())
    if m is None or m[1].lower() not in DIRECTIVE_KEYS:
        return None
    return m[1].lower(), m[2]


def blank_words(rest: str) -> list[str]:
    return BLANKS.split(rest) if rest else []


def extract_flags(rest: str, escape: str) -> tuple[list[str], str]:
    """The leading ``--flag[=value]`` words (quotes and escapes removed; a ``--`` word ends
    them) and the text after them."""
    flags: list[str] = []
    pos, n = 0, len(rest)
    while True:
        while pos < n and rest[pos].isspace():
            pos += 1
        if pos >= n:
            return flags, ""
        if not rest.startswith("--", pos):
            return flags, rest[pos:]
        word: list[str] = []
        quote = ""
        blank_ok = False  # '' is a word, an empty unquoted one is not
        while pos < n and (quote or not rest[pos].isspace()):
            ch = rest[pos]
            pos += 1
            if quote and ch == quote:
                quote = ""
                continue
            if not quote and ch in "'\"":
                quote, blank_ok = ch, True
                continue
            if ch == escape:
                if pos == n:
                    quote = ""
                    continue
                ch = rest[pos]
                pos += 1
            word.append(ch)
        text = "".join(word)
        if text == "--":
            return flags, rest[pos:]
        if text or blank_ok:
            flags.append(text)


def name_words(rest: str, escape: str) -> list[str]:
    """Words of ENV/LABEL/ARG: split on unquoted blanks, with quotes and escapes kept (the
    expansion removes them later); an escape at the very end is dropped."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = blank_ok = False
    pos, n = 0, len(rest)
    while pos < n:
        ch = rest[pos]
        pos += 1
        if not in_word:
            if ch.isspace():
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":  # nothing escapes inside '...'
                if pos == n:
                    quote = ""
                    continue
                word.append(ch)
                ch = rest[pos]
                pos += 1
            word.append(ch)
            continue
        if ch.isspace():
            if word or blank_ok:
                words.append("".join(word))
            word, in_word, blank_ok = [], False, False
            continue
        if ch in "'\"":
            quote, blank_ok = ch, True
        elif ch == escape:
            if pos == n:
                continue
            word.append(ch)
            ch = rest[pos]
            pos += 1
        word.append(ch)
    if in_word and (word or blank_ok):
        words.append("".join(word))
    return words


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def json_array(rest: str) -> tuple[str, ...] | None:
    """The exec form's strings, or None when `rest` is not a JSON array (then it is the
    shell form, as Docker). Go's JSON, not Python's: NaN/Infinity are not JSON, lone
    surrogates become U+FFFD. A JSON array holding a non-string raises BuildError."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_not_json)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise BuildError(
            "when using JSON array syntax, arrays must be comprised of strings only",
            hint='quote every element: ["/bin/app", "--port", "80"]',
        )
    return tuple(re.sub("[\ud800-\udfff]", "\ufffd", v) for v in value)


def heredoc_opener(word: str, *, strict: bool = False) -> tuple[str, bool, bool, int] | None:
    """(name, expand, chomp, fd) when `word` opens a heredoc (``<<EOF``, ``<<-'EOF'``,
    ``3<<EOF``, ``<< EOF``), else None. The name is the word lexed once (quotes removed);
    any quote in it turns expansion off. A broken delimiter (``<<'EOF``) raises BuildError
    when `strict` (finding bodies), else is no heredoc: BuildKit's two uses."""
    m = _HEREDOC_WORD.fullmatch(word)
    if m is None or not m[3]:
        return None
    try:
        names = Lexer(skip_unset=True).words(m[3], {})
    except BuildError:
        if strict:
            raise
        return None
    if len(names) != 1:
        return None
    raw = Lexer(skip_unset=True, raw_quotes=True).words(m[3], {})[0]
    quoted = raw.count("'") + raw.count('"') != names[0].count("'") + names[0].count('"')
    return names[0], not quoted, m[2] == "-", int(m[1] or 0)


def heredoc_openers(line: str) -> list[tuple[str, bool, bool, int]]:
    """The heredocs a whole instruction line opens, in order. Words are found with quotes
    and escapes kept, so ``"<<EOF"`` and ``'<<EOF'`` open nothing."""
    try:
        words = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True).words(line, {})
    except BuildError:
        return []  # BuildKit ignores a line it cannot split here
    found = []
    for word in words:
        opener = heredoc_opener(word, strict=True)
        if opener is not None:
            found.append(opener)
    return found


_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNITS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration (``1m30s``, ``1.5h``, ``500ms``, ``0``) in nanoseconds.
    Raises ValueError."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return 0
    total = 0.0
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            break
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * round(total)
