"""The typed values a Containerfile parses into: one frozen dataclass per instruction, the
stages, and the file. They hold the text as written (``$VAR``, quotes): expansion happens
in `rootless.images.evaluate`, which returns copies of these with the words expanded.

`containerfile.parse` builds them; `containerfile` re-exports them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from rootless.errors import BuildError


@dataclass(frozen=True)
class Heredoc:
    """An inline document: ``RUN <<EOF`` script text or a ``COPY <<name /dest`` file.
    As parsed, `content` is the text as written; after `evaluate`, a COPY/ADD heredoc's
    `content` is the final file (tabs stripped, variables expanded) and `chomp` is False."""

    name: str  # the delimiter with quotes removed; for COPY/ADD also the file name
    content: str  # the lines between opener and delimiter, line ends kept, as written
    expand: bool  # False when part of the delimiter was quoted: no $VAR expansion
    chomp: bool = False  # <<- : leading tabs are stripped from every line of the body
    fd: int = 0  # 3<<EOF feeds file descriptor 3; 0 is stdin

    @property
    def body(self) -> str:
        """The document's text: `content`, with leading tabs stripped for ``<<-``."""
        if not self.chomp:
            return self.content
        return re.sub(r"(?m)^\t+", "", self.content)


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """What every instruction has: its first line (1-based) and its text as written, with
    continuation lines joined (what BuildKit prints and puts into history)."""

    keyword: ClassVar[str] = ""
    line: int
    source: str


@dataclass(frozen=True, kw_only=True)
class Run(Instruction):
    keyword = "RUN"
    args: tuple[str, ...]  # exec form: argv; shell form: one string for the shell
    exec_form: bool
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[str, ...] = ()  # --mount=... specs as written (CSV, expanded later)
    network: str | None = None  # --network=default|none|host
    security: str | None = None  # --security=sandbox|insecure


@dataclass(frozen=True, kw_only=True)
class Cmd(Instruction):
    keyword = "CMD"
    args: tuple[str, ...]  # exec form: argv (may be empty); shell form: one string
    exec_form: bool


@dataclass(frozen=True, kw_only=True)
class Entrypoint(Instruction):
    keyword = "ENTRYPOINT"
    args: tuple[str, ...]  # exec form: argv (``[]`` clears it); shell form: one string
    exec_form: bool


@dataclass(frozen=True, kw_only=True)
class Copy(Instruction):
    keyword = "COPY"
    sources: tuple[str, ...]  # context paths/globs, or stage paths with --from
    dest: str
    heredocs: tuple[Heredoc, ...] = ()  # inline files; each name is the file's name
    from_: str | None = None  # --from=STAGE|INDEX|IMAGE (never expanded)
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()  # --exclude=PATTERN, repeatable


@dataclass(frozen=True, kw_only=True)
class Add(Instruction):
    keyword = "ADD"
    sources: tuple[str, ...]  # context paths/globs or URLs
    dest: str
    heredocs: tuple[Heredoc, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    checksum: str | None = None
    keep_git_dir: bool | None = None
    unpack: bool | None = None
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    keyword = "ENV"
    pairs: tuple[tuple[str, str], ...]
    legacy: bool = False  # written ``ENV KEY value`` (one pair, rest of the line)


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    """One declared name (``ARG A=1 B`` gives two `Arg` values with the same line)."""

    keyword = "ARG"
    name: str
    default: str | None = None


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    keyword = "WORKDIR"
    path: str


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    keyword = "USER"
    user: str  # user[:group], names or ids


@dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    keyword = "LABEL"
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    keyword = "EXPOSE"
    ports: tuple[str, ...]  # as written: 80, 53/udp, $PORT, 8000-8010


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    keyword = "VOLUME"
    paths: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class StopSignal(Instruction):
    keyword = "STOPSIGNAL"
    signal: str


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """Recorded for the image config. Durations are nanoseconds, 0 meaning "the
    runtime's default", as in the image config."""

    keyword = "HEALTHCHECK"
    kind: Literal["NONE", "CMD"]
    args: tuple[str, ...] = ()
    exec_form: bool = False
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @property
    def test(self) -> tuple[str, ...]:
        """The image config's Healthcheck.Test: NONE, CMD argv..., or CMD-SHELL text."""
        if self.kind == "NONE":
            return ("NONE",)
        return ("CMD" if self.exec_form else "CMD-SHELL", *self.args)


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    keyword = "ONBUILD"
    instruction: Instruction  # the trigger, parsed (its line is the ONBUILD's line)
    expression: str  # the trigger's text as stored in the image config (heredocs folded in)


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    keyword = "SHELL"
    args: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    """Deprecated. Docker writes it to the image's ``author`` field; `label` is the
    ``LABEL maintainer=...`` the Dockerfile reference recommends instead."""

    keyword = "MAINTAINER"
    name: str

    @property
    def label(self) -> tuple[str, str]:
        return ("maintainer", self.name)


@dataclass(frozen=True)
class Stage:
    name: str | None  # lower-cased (stage names are case-insensitive)
    index: int
    base: str  # as written: an image reference, a stage name or ``scratch``; may hold $ARG
    platform: str | None  # --platform as written
    instructions: tuple[Instruction, ...]
    line: int


@dataclass(frozen=True)
class Containerfile:
    stages: tuple[Stage, ...]
    global_args: tuple[Arg, ...]  # ARGs before the first FROM: the scope of FROM lines
    escape: str
    syntax: str | None = None  # the ``# syntax=`` directive, recorded only

    def find_stage(self, ref: str, *, index_ok: bool = False) -> Stage | None:
        """The stage a ``FROM``/``--target`` (by name) or ``COPY --from`` (by name or,
        with `index_ok`, by number) refers to; None when it names an image."""
        if index_ok and ref.isascii() and ref.isdigit():
            n = int(ref)
            if n >= len(self.stages):
                raise BuildError(
                    f"invalid stage index {n}", hint=f"this file has {len(self.stages)} stages"
                )
            return self.stages[n]
        wanted = ref.lower()
        return next((s for s in self.stages if s.name == wanted), None)
