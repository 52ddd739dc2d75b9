"""Containerfile/Dockerfile text -> a frozen `Containerfile` of typed stages and instructions.

How the text is read (BuildKit's frontend/dockerfile/parser and instructions packages, read
for their semantics and not copied; the expectations in tests/rootless/test_containerfile.py
cite the BuildKit test files they were checked against):

1. A UTF-8 byte-order mark is dropped. Lines end at ``\\n``; a trailing ``\\r`` is removed.
2. Parser directives: only at the very top, lines of the form ``# key=value`` with key
   ``syntax``, ``escape`` or ``check`` (any case), each at most once. The first line that is
   not one (a blank line, another comment, an instruction, an unknown key) ends them, so a
   ``# escape=`` further down is an ordinary comment. The escape is a backslash (the
   default) or a backtick.
3. A line whose first non-blank character is ``#`` is a comment, also between continued
   lines; blank lines inside a continuation are skipped too. Comments never start
   mid-line: ``RUN echo # hi`` runs ``echo # hi``.
4. The escape character as the last non-blank character continues the line, unless it is
   itself escaped (``\\\\``). The next line is appended as is, without a newline and
   without stripping its indentation: ``RUN a \\`` + ``  b`` is ``RUN a   b``. An
   instruction continued past the end of the file ends there.
5. The first word is the instruction (any case). Then ``--name[=value]`` flags, up to the
   first word not starting with ``--`` (quotes and escapes in flags are removed).
6. What follows depends on the instruction:
   - RUN CMD ENTRYPOINT SHELL (and HEALTHCHECK CMD): a JSON array of strings is the exec
     form; anything else (``['a']``, ``[a``, trailing text) is the shell form, the text as
     written. A valid JSON array with a non-string (``[1]``) is an error, as in Docker.
   - ADD COPY VOLUME: a JSON array, else words split on blanks (no quote handling here:
     quotes are removed when the words are expanded).
   - FROM EXPOSE: words split on blanks.
   - ENV LABEL: ``KEY=VALUE ...`` words (quotes and escapes kept for expansion), or the
     legacy ``KEY rest of the line`` when the first word has no ``=``.
   - ARG: ``NAME`` or ``NAME=default`` words, one `Arg` per name.
   - USER WORKDIR STOPSIGNAL MAINTAINER: the rest of the line is the one argument.
   - ONBUILD: the rest is parsed as an instruction of its own (not ONBUILD, FROM or
     MAINTAINER).
7. Heredocs, for RUN/COPY/ADD in shell form (and ONBUILD of those) whose line contains
   ``<<``: every word of the form ``[n]<<[-]WORD`` (found with quotes and escapes kept, so
   ``"<<EOF"`` is not one) opens a heredoc; their bodies follow the instruction in order,
   each up to a line equal to its delimiter. ``<<-`` strips leading tabs from the body and
   the delimiter line; any quote in the delimiter (``<<'EOF'``, ``<<E"O"F``) turns off
   expansion of the body (COPY/ADD; for RUN the shell decides). Lines inside a body are
   never comments or continuations.

Nothing is expanded here: the values keep ``$VAR`` and quotes exactly as written, and
`rootless.images.evaluate` expands them with the build's arguments and environment.

Every problem raises `BuildError` with one line naming the line number and instruction,
``line 7: COPY: ...``, and a hint. Deliberate strictness beyond BuildKit (which the hint
explains): flags are checked on every instruction (BuildKit ignores them on STOPSIGNAL and
HEALTHCHECK NONE), an empty RUN is refused at parse time, an ONBUILD trigger must be a
known instruction, and ``ONBUILD ARG`` declares one name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from rootless.errors import BuildError
from rootless.images.instructions import (
    Add,
    Arg,
    Cmd,
    Containerfile,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Heredoc,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from rootless.images.syntax import (
    BLANKS,
    blank_words,
    extract_flags,
    heredoc_opener,
    heredoc_openers,
    is_comment,
    json_array,
    name_words,
    parse_directive,
    parse_duration,
    split_lines,
    strip_continuation,
)

__all__ = [
    "Add",
    "Arg",
    "Cmd",
    "Containerfile",
    "Copy",
    "Entrypoint",
    "Env",
    "Expose",
    "Healthcheck",
    "Heredoc",
    "Instruction",
    "Label",
    "Maintainer",
    "Onbuild",
    "Run",
    "Shell",
    "Stage",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "parse",
    "parse_instruction",
    "shell_command",
]

KEYWORDS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)  # fmt: skip
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")


def _fail(line: int, keyword: str, detail: str, hint: str | None) -> BuildError:
    """The one error shape: ``line N: KEYWORD: detail`` with a hint."""
    where = f"line {line}: {keyword}: " if keyword else f"line {line}: "
    return BuildError(where + detail, hint=hint)


def shell_command(run: Run) -> str:
    """A shell-form RUN's text with its heredocs, as BuildKit hands it to the shell: when
    the command is only ``<<EOF`` the shell runs the body itself (an executor that finds
    ``#!`` at the start of that body writes it to a file and runs the file, as BuildKit
    does); otherwise each body and delimiter follow the command line, and the shell reads
    them as the heredocs they are."""
    if run.exec_form:
        raise ValueError("shell_command() of an exec-form RUN")
    command = run.args[0]
    if len(run.heredocs) == 1 and heredoc_opener(command) is not None:
        return run.heredocs[0].body
    return command + "".join(f"\n{h.content}{h.name}" for h in run.heredocs)


@dataclass
class _Reader:
    lines: list[str]
    pos: int = 0  # index of the next line, so also the number of the last line read

    def more(self) -> bool:
        return self.pos < len(self.lines)

    def take(self) -> str:
        self.pos += 1
        return self.lines[self.pos - 1]


@dataclass(frozen=True)
class _Node:
    """One instruction split the way BuildKit's AST splits it, before typing."""

    keyword: str  # upper-cased
    flags: tuple[str, ...]
    rest: str  # the arguments after the flags, stripped
    json: tuple[str, ...] | None  # the exec form, for instructions that have one
    trigger: _Node | None  # ONBUILD's instruction


_USAGE = {
    "ADD": "ADD [--chown=USER:GROUP] [--chmod=MODE] [--link] SRC... DEST",
    "ARG": "ARG NAME[=DEFAULT]...",
    "CMD": 'CMD ["executable", "arg"] or CMD command',
    "COPY": "COPY [--from=STAGE] [--chown=USER:GROUP] [--chmod=MODE] SRC... DEST",
    "ENTRYPOINT": 'ENTRYPOINT ["executable", "arg"] or ENTRYPOINT command',
    "ENV": 'ENV KEY="value" [KEY2=value2...]',
    "EXPOSE": "EXPOSE PORT[/PROTOCOL]...",
    "FROM": "FROM [--platform=PLATFORM] IMAGE [AS NAME]",
    "HEALTHCHECK": "HEALTHCHECK NONE, or HEALTHCHECK [--interval=30s --timeout=30s "
    "--start-period=0s --start-interval=5s --retries=3] CMD command",
    "LABEL": 'LABEL KEY="value" [KEY2=value2...]',
    "MAINTAINER": "LABEL maintainer=NAME (MAINTAINER NAME is deprecated)",
    "ONBUILD": "ONBUILD INSTRUCTION ARGUMENTS",
    "RUN": 'RUN [--mount=SPEC] [--network=default|none|host] command, or RUN ["executable", "arg"]',
    "SHELL": 'SHELL ["executable", "arg"]',
    "STOPSIGNAL": "STOPSIGNAL SIGNAL",
    "USER": "USER NAME[:GROUP]",
    "VOLUME": 'VOLUME PATH... or VOLUME ["PATH"]',
    "WORKDIR": "WORKDIR PATH",
}


def _bad(line: int, keyword: str, detail: str) -> BuildError:
    """An argument error; the hint is the instruction's usage."""
    return _fail(line, keyword, detail, "usage: " + _USAGE[keyword])


# --- flags: which instruction takes which, and BuildKit's rules for their values -----------

_FLAGS: dict[str, dict[str, Literal["bool", "str", "list"]]] = {
    "FROM": {"platform": "str"},
    "RUN": {"mount": "list", "network": "str", "security": "str"},
    "COPY": {"from": "str", "chown": "str", "chmod": "str", "link": "bool", "parents": "bool",
             "exclude": "list"},
    "ADD": {"chown": "str", "chmod": "str", "link": "bool", "checksum": "str",
            "keep-git-dir": "bool", "unpack": "bool", "exclude": "list"},
    "HEALTHCHECK": {"interval": "str", "timeout": "str", "start-period": "str",
                    "start-interval": "str", "retries": "str"},
}  # fmt: skip


@dataclass(frozen=True)
class _Flags:
    values: dict[str, str | bool]
    lists: dict[str, tuple[str, ...]]

    def text(self, name: str) -> str | None:
        v = self.values.get(name)
        return v if isinstance(v, str) else None

    def switch(self, name: str) -> bool | None:
        v = self.values.get(name)
        return v if isinstance(v, bool) else None


def _parse_flags(words: tuple[str, ...], keyword: str, line: int) -> _Flags:
    known = _FLAGS.get(keyword, {})
    values: dict[str, str | bool] = {}
    lists: dict[str, list[str]] = {}

    def fail(detail: str) -> BuildError:
        names = ", ".join(f"--{k}" for k in known)
        hint = f"{keyword} takes {names}" if names else f"{keyword} takes no flags"
        return _fail(line, keyword, detail, hint)

    for word in words:
        if word == "--":
            break  # POSIX: the end of options
        name, has_value, value = word[2:].partition("=")
        kind = known.get(name)
        if kind is None:
            raise fail(f"unknown flag: --{name}")
        if kind != "list" and name in values:
            raise fail(f"duplicate flag specified: --{name}")
        if kind == "bool":
            if has_value and not value:
                raise fail(f"missing a value on flag: --{name}")
            if value.lower() not in ("", "true", "false"):
                raise fail(f"expecting boolean value for flag --{name}, not: {value}")
            values[name] = value.lower() != "false"
        elif not has_value:
            raise fail(f"missing a value on flag: --{name}")
        elif kind == "str":
            values[name] = value
        else:
            lists.setdefault(name, []).append(value)
    return _Flags(values, {k: tuple(v) for k, v in lists.items()})


# --- one instruction ------------------------------------------------------------------------


def _split(line: str, escape: str, lineno: int) -> _Node:
    parts = BLANKS.split(line.strip(), maxsplit=1)
    keyword = parts[0].upper()
    if keyword not in KEYWORDS:
        close = difflib.get_close_matches(keyword, KEYWORDS, n=1)
        hint = f"did you mean {close[0]}?" if close else "instructions are " + " ".join(KEYWORDS)
        raise _fail(lineno, "", f"unknown instruction: {parts[0]}", hint)
    flags, rest = extract_flags(parts[1], escape) if len(parts) == 2 else ([], "")
    rest = rest.strip()
    json_form = trigger = None
    try:
        if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "ADD", "COPY", "VOLUME"):
            json_form = json_array(rest)
        elif keyword == "HEALTHCHECK":
            kind_and_command = re.split(r"\s+", rest, maxsplit=1)
            if len(kind_and_command) == 2:
                json_form = json_array(kind_and_command[1])
    except BuildError as exc:
        raise _fail(lineno, keyword, exc.message, exc.hint) from None
    if keyword == "ONBUILD" and rest:
        trigger = _split(rest, escape, lineno)
    return _Node(keyword, tuple(flags), rest, json_form, trigger)


def _takes_heredocs(node: _Node) -> bool:
    inner = node.trigger or node
    return inner.keyword in ("RUN", "COPY", "ADD") and inner.json is None


def _command(node: _Node) -> tuple[tuple[str, ...], bool]:
    """(args, exec_form): the JSON array, or the whole text as one shell-form string."""
    if node.json is not None:
        return node.json, True
    return ((node.rest,) if node.rest else ()), False


def _pairs(node: _Node, line: int, escape: str) -> tuple[tuple[tuple[str, str], ...], bool]:
    """ENV/LABEL: KEY=VALUE words, or the legacy ``KEY value...`` (the rest of the line)."""
    words = name_words(node.rest, escape)
    if not words:
        raise _bad(line, node.keyword, "requires at least one argument")
    if "=" not in words[0]:
        parts = BLANKS.split(node.rest, maxsplit=1)
        if len(parts) < 2:
            raise _bad(line, node.keyword, "must have two arguments")
        return ((parts[0], parts[1]),), True
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise _bad(line, node.keyword, f"can't find = in {word!r}: must be name=value")
        if not key:
            raise _bad(line, node.keyword, "names can not be blank")
        pairs.append((key, value))
    return tuple(pairs), False


def _sources(
    node: _Node, line: int, heredocs: tuple[Heredoc, ...]
) -> tuple[tuple[str, ...], str, tuple[Heredoc, ...]]:
    """COPY/ADD: (paths, dest, inline files). A ``<<NAME`` source is the heredoc NAME."""
    args = node.json if node.json is not None else tuple(blank_words(node.rest))
    if len(args) < 2:
        raise _bad(line, node.keyword, "requires at least two arguments: sources and a destination")
    *sources, dest = args
    if heredoc_opener(dest) is not None:
        raise _bad(line, node.keyword, "cannot accept a heredoc as a destination")
    by_name = {h.name: h for h in heredocs}
    paths: list[str] = []
    inline: list[Heredoc] = []
    for src in sources:
        opener = heredoc_opener(src)
        if opener is None:
            paths.append(src)
            continue
        name, expand, chomp, fd = opener
        # A heredoc word whose body was never read (the JSON form) is an empty file: BuildKit.
        inline.append(by_name.get(name, Heredoc(name, "", expand, chomp, fd)))
    return tuple(paths), dest, tuple(inline)


def _duration(flags: _Flags, name: str, line: int) -> int:
    text = flags.text(name) or ""
    try:
        ns = parse_duration(text) if text else 0
    except ValueError as exc:
        raise _bad(line, "HEALTHCHECK", f"--{name}: {exc}") from None
    if ns != 0 and ns < 10**6:  # Docker refuses anything below 1ms but 0 ("the default")
        raise _bad(line, "HEALTHCHECK", f"--{name} cannot be less than 1ms")
    return ns


def _healthcheck(node: _Node, line: int, source: str) -> Healthcheck:
    if not node.rest:
        raise _bad(line, "HEALTHCHECK", "requires at least one argument")
    first, *more = re.split(r"\s+", node.rest, maxsplit=1)
    kind, command = first.upper(), (more[0] if more else "")
    flags = _parse_flags(node.flags, "HEALTHCHECK", line)
    if kind == "NONE":
        if command:
            raise _bad(line, "HEALTHCHECK", "HEALTHCHECK NONE takes no arguments")
        return Healthcheck(line=line, source=source, kind="NONE")
    if kind != "CMD":
        raise _bad(line, "HEALTHCHECK", f"unknown type {first!r} (try CMD)")
    args, exec_form = (node.json, True) if node.json is not None else ((command,), False)
    if not args or (not exec_form and not args[0]):
        raise _bad(line, "HEALTHCHECK", "missing command after HEALTHCHECK CMD")
    retries = flags.text("retries") or "0"
    if not re.fullmatch(r"[+-]?\d+", retries) or int(retries) < 0:
        raise _bad(line, "HEALTHCHECK", f"--retries must be a whole number >= 0, not {retries!r}")
    return Healthcheck(
        line=line,
        source=source,
        kind="CMD",
        args=args,
        exec_form=exec_form,
        interval=_duration(flags, "interval", line),
        timeout=_duration(flags, "timeout", line),
        start_period=_duration(flags, "start-period", line),
        start_interval=_duration(flags, "start-interval", line),
        retries=int(retries),
    )


def _run(node: _Node, line: int, source: str, heredocs: tuple[Heredoc, ...]) -> Run:
    flags = _parse_flags(node.flags, "RUN", line)
    network = flags.text("network")
    if network is not None and network not in ("default", "none", "host"):
        raise _bad(line, "RUN", f"invalid network mode {network!r}")
    security = flags.text("security")
    if security is not None and security not in ("sandbox", "insecure"):
        raise _bad(line, "RUN", f"security {security!r} is not valid (sandbox or insecure)")
    args, exec_form = _command(node)
    if not args:
        raise _bad(line, "RUN", "requires a command")
    mounts = flags.lists.get("mount", ())
    return Run(line=line, source=source, args=args, exec_form=exec_form, heredocs=heredocs,
               mounts=mounts, network=network, security=security)  # fmt: skip


def _copy(node: _Node, line: int, source: str, heredocs: tuple[Heredoc, ...]) -> Copy:
    flags = _parse_flags(node.flags, "COPY", line)
    paths, dest, inline = _sources(node, line, heredocs)
    return Copy(line=line, source=source, sources=paths, dest=dest, heredocs=inline,
                from_=flags.text("from"), chown=flags.text("chown"), chmod=flags.text("chmod"),
                link=bool(flags.switch("link")), parents=bool(flags.switch("parents")),
                excludes=flags.lists.get("exclude", ()))  # fmt: skip


def _add(node: _Node, line: int, source: str, heredocs: tuple[Heredoc, ...]) -> Add:
    flags = _parse_flags(node.flags, "ADD", line)
    paths, dest, inline = _sources(node, line, heredocs)
    return Add(line=line, source=source, sources=paths, dest=dest, heredocs=inline,
               chown=flags.text("chown"), chmod=flags.text("chmod"),
               link=bool(flags.switch("link")), checksum=flags.text("checksum"),
               keep_git_dir=flags.switch("keep-git-dir"), unpack=flags.switch("unpack"),
               excludes=flags.lists.get("exclude", ()))  # fmt: skip


def _args(node: _Node, line: int, source: str, escape: str) -> list[Arg]:
    words = name_words(node.rest, escape)
    if not words:
        raise _bad(line, "ARG", "requires at least one argument")
    declared = []
    for word in words:
        name, eq, default = word.partition("=")
        if not name:
            raise _bad(line, "ARG", "names can not be blank")
        declared.append(Arg(line=line, source=source, name=name, default=default if eq else None))
    return declared


def _one(node: _Node, line: int) -> str:
    """USER WORKDIR STOPSIGNAL MAINTAINER: the rest of the line is the one argument."""
    if not node.rest:
        raise _bad(line, node.keyword, "requires exactly one argument")
    return node.rest


def _instruction(
    node: _Node, line: int, source: str, heredocs: tuple[Heredoc, ...], escape: str
) -> Instruction | list[Arg]:
    """The typed instruction; a list for ARG (one value per name). Not FROM (a stage)."""
    kw = node.keyword
    if kw not in _FLAGS and node.flags:
        _parse_flags(node.flags, kw, line)  # no flags here: this reports the first one
    if kw == "RUN":
        return _run(node, line, source, heredocs)
    if kw == "COPY":
        return _copy(node, line, source, heredocs)
    if kw == "ADD":
        return _add(node, line, source, heredocs)
    if kw == "ARG":
        return _args(node, line, source, escape)
    if kw == "HEALTHCHECK":
        return _healthcheck(node, line, source)
    if kw == "ONBUILD":
        return _onbuild(node, line, source, heredocs, escape)
    if kw in ("CMD", "ENTRYPOINT"):
        args, exec_form = _command(node)
        cls = Cmd if kw == "CMD" else Entrypoint
        return cls(line=line, source=source, args=args, exec_form=exec_form)
    if kw == "SHELL":
        if node.json is None:
            raise _bad(line, kw, "requires the arguments to be in JSON form")
        if not node.json:
            raise _bad(line, kw, "requires at least one argument")
        return Shell(line=line, source=source, args=node.json)
    if kw in ("ENV", "LABEL"):
        pairs, legacy = _pairs(node, line, escape)
        if kw == "LABEL":
            return Label(line=line, source=source, pairs=pairs)
        return Env(line=line, source=source, pairs=pairs, legacy=legacy)
    if kw == "EXPOSE":
        if not node.rest:
            raise _bad(line, kw, "requires at least one argument")
        return Expose(line=line, source=source, ports=tuple(blank_words(node.rest)))
    if kw == "VOLUME":
        paths = node.json if node.json is not None else tuple(blank_words(node.rest))
        if not paths:
            raise _bad(line, kw, "requires at least one argument")
        if not all(p.strip() for p in paths):
            raise _bad(line, kw, "a volume path can not be an empty string")
        return Volume(line=line, source=source, paths=tuple(p.strip() for p in paths))
    if kw == "WORKDIR":
        return Workdir(line=line, source=source, path=_one(node, line))
    if kw == "USER":
        return User(line=line, source=source, user=_one(node, line))
    if kw == "STOPSIGNAL":
        return StopSignal(line=line, source=source, signal=_one(node, line))
    if kw == "MAINTAINER":
        return Maintainer(line=line, source=source, name=_one(node, line))
    raise _bad(line, kw, "FROM starts a stage; it cannot be used here")


def _onbuild(
    node: _Node, line: int, source: str, heredocs: tuple[Heredoc, ...], escape: str
) -> Onbuild:
    trigger = node.trigger
    if trigger is None:
        raise _bad(line, "ONBUILD", "requires at least one argument")
    if trigger.keyword == "ONBUILD":
        raise _bad(line, "ONBUILD", "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger.keyword in ("FROM", "MAINTAINER"):
        raise _bad(line, "ONBUILD", f"{trigger.keyword} isn't allowed as an ONBUILD trigger")
    # What the image config keeps: the trigger's text, its heredocs folded back in.
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", source, count=1)
    expression += "".join(f"\n{h.content}{h.name}" for h in heredocs)
    built = _instruction(trigger, line, expression, heredocs, escape)
    if isinstance(built, list):
        if len(built) != 1:
            raise _bad(line, "ONBUILD", "ONBUILD ARG declares one name per trigger")
        built = built[0]
    return Onbuild(line=line, source=source, instruction=built, expression=expression)


# --- the file -------------------------------------------------------------------------------


def _logical_lines(reader: _Reader, directives: dict[str, str]) -> Iterator[tuple[int, str]]:
    """(first line number, joined text) per instruction. Reads the directives while they
    last, into `directives`; heredoc bodies are read by the caller between two yields."""
    escape = directives.get("escape", "\\")
    in_directives = True
    while reader.more():
        token = reader.take().rstrip("\r\n").lstrip()
        if in_directives:
            found = parse_directive(token)
            in_directives = found is not None
            if found is not None:
                key, value = found
                where = f"{key} directive"
                if key in directives:
                    hint = "remove the repeated directive"
                    raise _fail(reader.pos, where, f"only one {key} directive can be used", hint)
                if key == "escape" and value not in ("\\", "`"):
                    hint = "write # escape=` or # escape=\\"
                    raise _fail(reader.pos, where, f"invalid escape token {value!r}", hint)
                escape = value if key == "escape" else escape
                directives[key] = value
                continue
        if token.startswith("#"):
            continue
        start = reader.pos
        text, more = strip_continuation(token, escape)
        if not more and not text:
            continue
        parts = [text]
        while more and reader.more():
            raw = reader.take()
            if is_comment(raw) or not raw.rstrip("\r\n").lstrip():
                continue  # comments and blank lines inside a continuation are skipped
            text, more = strip_continuation(raw.rstrip("\r\n"), escape)
            parts.append(text)
        yield start, "".join(parts)


def _read_heredocs(reader: _Reader, line: str, start: int, keyword: str) -> tuple[Heredoc, ...]:
    try:
        openers = heredoc_openers(line)
    except BuildError as exc:
        hint = "quote the whole delimiter: <<'EOF'"
        raise _fail(start, keyword, f"invalid heredoc: {exc.message}", hint) from None
    docs = []
    for name, expand, chomp, fd in openers:
        content: list[str] = []
        while True:
            if not reader.more():
                hint = f"end it with a line holding only {name}"
                raise _fail(start, keyword, f"unterminated heredoc <<{name}", hint)
            raw = reader.take()
            candidate = raw.rstrip("\r\n")
            if (candidate.lstrip("\t") if chomp else candidate) == name:
                break
            content.append(raw)
        docs.append(Heredoc(name, "".join(content), expand, chomp, fd))
    return tuple(docs)


@dataclass
class _StageBuilder:
    name: str | None
    index: int
    base: str
    platform: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def build(self) -> Stage:
        return Stage(
            self.name, self.index, self.base, self.platform, tuple(self.instructions), self.line
        )


def _from(node: _Node, line: int, stages: list[_StageBuilder]) -> _StageBuilder:
    flags = _parse_flags(node.flags, "FROM", line)
    args = blank_words(node.rest)
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            hint = "a stage name is a letter, then letters, digits, '-', '_' or '.'"
            raise _fail(line, "FROM", f"invalid name for build stage: {args[2]!r}", hint)
        if any(s.name == name for s in stages):
            hint = "stage names must be unique: rename one of them"
            raise _fail(line, "FROM", f"duplicate stage name {name!r}", hint)
    elif len(args) != 1:
        raise _bad(line, "FROM", "requires either one or three arguments")
    return _StageBuilder(name, len(stages), args[0], flags.text("platform"), line)


def _nodes(
    text: str, directives: dict[str, str]
) -> Iterator[tuple[_Node, int, str, tuple[Heredoc, ...]]]:
    """(node, first line, joined text, heredocs) per instruction, directives read into
    `directives` on the way."""
    reader = _Reader(split_lines(text.removeprefix("\ufeff")))
    for start, line in _logical_lines(reader, directives):
        node = _split(line, directives.get("escape", "\\"), start)
        heredocs: tuple[Heredoc, ...] = ()
        if _takes_heredocs(node) and "<<" in line:
            heredocs = _read_heredocs(reader, line, start, node.keyword)
        yield node, start, line.strip(), heredocs


def parse(text: str) -> Containerfile:
    """Parse a Containerfile/Dockerfile. Raises BuildError naming the line and instruction."""
    directives: dict[str, str] = {}
    global_args: list[Arg] = []
    stages: list[_StageBuilder] = []
    for node, start, line, heredocs in _nodes(text, directives):
        if node.keyword == "FROM":
            stages.append(_from(node, start, stages))
            continue
        built = _instruction(node, start, line, heredocs, directives.get("escape", "\\"))
        if isinstance(built, list) and not stages:
            global_args.extend(built)  # ARGs before the first FROM: the global scope
        elif not stages:
            hint = "start with FROM IMAGE (only ARGs used by FROM lines may come before it)"
            raise _fail(start, node.keyword, "no build stage yet: only ARG may precede FROM", hint)
        elif isinstance(built, list):
            stages[-1].instructions.extend(built)
        else:
            stages[-1].instructions.append(built)
    if not stages:
        what = "instructions" if not global_args else "FROM instruction"
        raise BuildError(f"the file has no {what}", hint="a Containerfile starts with FROM IMAGE")
    return Containerfile(
        stages=tuple(s.build() for s in stages),
        global_args=tuple(global_args),
        escape=directives.get("escape", "\\"),
        syntax=directives.get("syntax"),
    )


def parse_instruction(text: str, *, escape: str = "\\") -> Instruction:
    """Exactly one instruction, heredocs included: an ONBUILD trigger's `expression` when
    a later build uses the image, or a ``commit --change`` value. Not FROM."""
    directives = {"escape": escape}  # no directives here: the escape is the file's
    found = list(_nodes(text, directives))
    if len(found) != 1:
        raise BuildError(
            f"expected one instruction, found {len(found)} in {text!r}",
            hint="give a single instruction such as ENV A=1",
        )
    node, start, line, heredocs = found[0]
    if node.keyword == "FROM":
        raise _bad(start, "FROM", "FROM starts a stage; it is not an instruction here")
    built = _instruction(node, start, line, heredocs, escape)
    if isinstance(built, list):
        if len(built) != 1:
            raise _bad(start, "ARG", "declare one name here")
        return built[0]
    return built
