"""Docker's word lexer: quotes, escapes and variable expansion in Containerfile words.

The builder, not a shell, expands variables in ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL
USER VOLUME WORKDIR (and ONBUILD triggers of those, when they run) and in ARG defaults.
RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK are left alone: the shell in the container
expands them. The rules below are BuildKit's (frontend/dockerfile/shell/lex.go, read for
semantics, not copied), which is what `docker build` and Podman users' files are written
against:

- Outside quotes the escape character (``\\``, or ````` after ``# escape=`````) makes the
  next character literal, so ``\\$x`` is the text ``$x``; an escape at the very end is
  dropped.
- ``'...'`` is literal (no expansion, no escapes, cannot contain ``'``).
- ``"..."`` expands ``$``; the escape character only escapes ``"``, ``$`` and itself,
  otherwise it stays (``"a\\b"`` is ``a\\b``).
- ``$NAME``, ``${NAME}``; an unset variable is empty. ``$`` not followed by a name is a
  literal ``$``. A name is letters, digits and ``_``; ``$1`` (digits) and the special
  parameters ``$@ $* $# $? $- $$ $! $0`` are names too (always unset in a build).
- ``${NAME:-word}`` word if unset or empty, ``${NAME-word}`` word if unset;
  ``${NAME:+word}`` word if set and non-empty, ``${NAME+word}`` word if set;
  ``${NAME:?msg}``/``${NAME?msg}`` fail the build when unset (or empty). These are the
  documented stable forms. ``word`` is lexed recursively (quotes, nested ``$``).
- The pattern forms ``${NAME#pat}`` ``##`` ``%`` ``%%`` ``${NAME/pat/rep}`` ``//`` are
  implemented too, as BuildKit does (its docs call them pre-release syntax): ``*`` and
  ``?`` are wildcards, ``\\*`` ``\\?`` ``\\\\`` literal.
- Anything else after ``${NAME`` (``${a:x}``, ``${a:#b}``) is "unsupported modifier", and
  ``${}``, ``${:a}``, ``${{a}`` are "bad substitution": errors, never silent text.

Word splitting (`Lexer.words`, used for EXPOSE) splits on whitespace in the text and in
variable values, never inside quotes or after an escape. One deliberate difference: BuildKit
loses text before a nested ``${a:-b}`` when splitting (its word buffer is shared with the
nested lexer); here ``p${X:-1}`` is one word ``p1`` in both modes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rootless.errors import BuildError

# Single-character special parameters of POSIX sh (`$$`, `$?`, ...). `0` is a digit, so
# the digit rule reads it first.
_SPECIAL = frozenset("@*#?-$!0")
_HINT = "see 'Environment replacement' in the Dockerfile reference; write \\$ for a literal $"


class _LexError(Exception):
    """Raised inside the lexer; the public functions turn it into a BuildError."""


class _Words:
    """The result split into words: text whitespace splits, quoted text never does."""

    def __init__(self) -> None:
        self.buf = ""
        self.words: list[str] = []
        self.in_word = False

    def add(self, ch: str) -> None:
        if not ch.isspace():
            self.add_raw(ch)
        elif self.in_word and self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False

    def add_text(self, text: str) -> None:
        for ch in text:
            self.add(ch)

    def add_raw(self, text: str) -> None:
        self.buf += text
        self.in_word = True

    def finish(self) -> list[str]:
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
        return self.words


@dataclass(frozen=True)
class Lexer:
    """One configuration of the lexer. The defaults are what instructions get; the raw
    modes exist for finding heredoc words in a line without changing it."""

    escape: str = "\\"
    raw_quotes: bool = False  # keep quote characters in the result
    raw_escapes: bool = False  # keep escape characters in the result
    process_quotes: bool = True  # False: ' and " are ordinary (heredoc bodies)
    skip_unset: bool = False  # leave references to unset variables as written

    def word(self, text: str, env: Mapping[str, str]) -> str:
        """`text` as one word: quotes removed, escapes applied, variables replaced."""
        return self._run(text, env)[0]

    def words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """`text` expanded and split into words."""
        return self._run(text, env)[1]

    def _run(self, text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        try:
            return _Run(self, text, env).stop_on("", self.raw_escapes)
        except _LexError as exc:
            raise BuildError(f"failed to process {text!r}: {exc}", hint=_HINT) from None


class _Run:
    """One pass over one text; `pos` moves forward only."""

    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw = lexer.raw_escapes

    def peek(self) -> str:
        """The next character, or "" at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += len(ch)
        return ch

    def stop_on(self, stop: str, raw: bool) -> tuple[str, list[str]]:
        """Lex up to the unescaped, unquoted `stop` (consumed), or to the end if stop is ""."""
        saved, self.raw = self.raw, raw
        try:
            return self._stop_on(stop)
        finally:
            self.raw = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        while ch := self.peek():
            if stop and ch == stop:
                self.next()
                return "".join(out), words.finish()
            if ch == "$":
                value = self.dollar()
                out.append(value)
                words.add_text(value)  # a variable's value is split into words
            elif ch == "<":
                text = self.maybe_heredoc()
                out.append(text)
                words.add_raw(text)
            elif ch in "'\"" and self.lx.process_quotes:
                text = self.single_quoted() if ch == "'" else self.double_quoted()
                out.append(text)
                words.add_raw(text)
            else:
                self.next()
                if ch == self.lx.escape:
                    if self.raw:
                        words.add_raw(ch)
                        out.append(ch)
                    ch = self.next()
                    if not ch:
                        break  # an escape at the very end is dropped
                    words.add_raw(ch)
                else:
                    words.add(ch)
                out.append(ch)
        if stop:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.finish()

    def single_quoted(self) -> str:
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self.next()
            if not ch:
                raise _LexError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        esc = self.lx.escape
        while True:
            ch = self.peek()
            if not ch:
                raise _LexError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == esc:
                if self.raw:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue  # then the loop reports the missing quote
                if following in ('"', "$", esc):
                    ch = self.next()
            out.append(ch)

    def maybe_heredoc(self) -> str:
        """``<<`` and the blanks after it stay glued to the next word (``<< EOF``)."""
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        blanks = ""
        while self.peek() in ("\t", "\r", " ") and self.peek():
            blanks += self.next()
        return "<<" + blanks

    def name(self) -> str:
        ch = self.peek()
        if ch and ch.isdecimal():
            digits = ""
            while self.peek() and self.peek().isdecimal():
                digits += self.next()
            return digits
        if ch and ch in _SPECIAL:
            return self.next()
        name = ""
        while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            name += self.next()
        return name

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None and self.lx.skip_unset:
                return "$" + name
            return value or ""
        self.next()  # the {
        first = self.peek()
        if not first:
            raise _LexError("syntax error: missing '}'")
        if first in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if not ch:
            raise _LexError("syntax error: missing '}'")
        if ch == "}":
            value = self.lookup(name)
            if value is None and self.lx.skip_unset:
                return "${" + name + "}"
            return value or ""
        if ch == "/":
            return self.replace(name)
        colon = ch == ":"
        modifier = ch
        if colon:
            ch = self.next()
            if not ch:
                raise _LexError("syntax error: missing '}'")
            modifier = ":" + ch
        if ch not in ("+", "-", "?", "#", "%") or (colon and ch in "#%"):
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        word = self.word_until("}", raw=ch in "#%")
        value = self.lookup(name)
        if value is None and self.lx.skip_unset:
            return "${" + name + modifier + word + "}"
        empty = value is None or (colon and value == "")
        if ch == "-":
            return word if empty else (value or "")
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if value is None:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if colon and value == "":
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        longest = word.startswith(ch)
        return _trim(value or "", word[1:] if longest else word, suffix=ch == "%", longest=longest)

    def word_until(self, stop: str, *, raw: bool) -> str:
        try:
            return self.stop_on(stop, raw)[0]
        except _LexError:
            if not self.peek():
                missing = "'/' in ${}" if stop == "/" else "'}'"
                raise _LexError(f"syntax error: missing {missing}") from None
            raise

    def replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self.word_until("/", raw=True)
        replacement = self.word_until("}", raw=True)
        value = self.lookup(name)
        if value is None and self.lx.skip_unset:
            return "${" + name + ("//" if replace_all else "/") + pattern + "/" + replacement + "}"
        regex = _glob_regex(pattern, greedy=True)
        return regex.sub(lambda _: replacement, value or "", count=0 if replace_all else 1)


def _glob_regex(pattern: str, *, greedy: bool) -> re.Pattern[str]:
    """A ${...} pattern as a regex: `*` any run, `?` one character, `\\*` `\\?` `\\\\`
    literal, `\\}` and `\\/` the bare character (they were escaped for the ${} syntax)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue
            if i >= len(pattern) or pattern[i] not in "*?\\":
                bad = pattern[i] if i < len(pattern) else "at the end"
                raise _LexError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape {bad!r}"
                )
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim(value: str, pattern: str, *, suffix: bool, longest: bool) -> str:
    """${v#p} ${v##p} ${v%p} ${v%%p}: remove the shortest/longest prefix/suffix matching p.
    Brute force over cut points (values are short): the POSIX definition, no regex tricks."""
    regex = _glob_regex(pattern, greedy=True)
    n = len(value)
    if suffix:
        cuts = range(0, n + 1) if longest else range(n, -1, -1)
        for k in cuts:
            if regex.fullmatch(value, k):
                return value[:k]
    else:
        cuts = range(n, -1, -1) if longest else range(0, n + 1)
        for k in cuts:
            if regex.fullmatch(value, 0, k):
                return value[k:]
    return value


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """`word` with quotes removed, escapes applied and variables replaced from `env`, as
    the builder expands a word of ADD/COPY/ENV/LABEL/USER/WORKDIR/... Raises BuildError."""
    return Lexer(escape=escape).word(word, env)


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """`text` expanded and split into words (EXPOSE: ``EXPOSE $PORTS`` may give several)."""
    return Lexer(escape=escape).words(text, env)


def expand_heredoc(body: str, env: Mapping[str, str]) -> str:
    """A COPY/ADD heredoc body with an unquoted delimiter: variables are replaced, quotes
    are ordinary text, and the escape character is always ``\\`` (BuildKit's ExpandRaw)."""
    return Lexer(process_quotes=False).word(body, env)
