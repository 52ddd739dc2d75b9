"""ARG scoping and expansion: what each instruction of a stage means for given build args.

The rules, as BuildKit applies them (frontend/dockerfile/dockerfile2llb: convert.go,
platform.go; read for semantics, not copied) and as the Dockerfile reference states them:

- The global scope: the automatic platform args (BUILDPLATFORM BUILDOS BUILDARCH
  BUILDVARIANT TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT), then every ARG before
  the first FROM, in order: a ``--build-arg`` of the same name wins, else its default,
  expanded against the scope so far; ``ARG NAME`` without either leaves NAME as it was
  (unset, or the platform value). A ``--build-arg`` overrides a platform arg only for a
  name BuildKit predefines. FROM lines (image and ``--platform``) expand in this scope
  and nothing else.
- Inside a stage nothing of the global scope is visible until re-declared: ``ARG NAME``
  takes the ``--build-arg`` if given, else the global value; ``ARG NAME=default`` takes
  the ``--build-arg`` if given, else its own default (expanded in the stage).
  ``--build-arg`` values for names never declared are not visible at all.
- ARG values and ENV values live in one environment, later assignments winning: an ENV
  after an ARG of the same name overrides it (the reference's "ENV overrides ARG"), and
  an ARG with a value after an inherited ENV overrides that for the rest of the build
  (BuildKit's behaviour). An ARG without a value changes nothing. RUN processes get
  this whole environment; the image config keeps only the ENV values (the executor
  tracks that).
- All pairs of one ENV or LABEL are expanded before any is set: ``ENV a=1 b=$a`` gives b
  the *previous* a (documented Docker behaviour).
- Expanded: ADD/COPY (sources, dest, --chown, --chmod, ADD --checksum, the bodies of
  heredocs with an unquoted delimiter), ENV, LABEL (keys and values), EXPOSE (which may
  become several ports), STOPSIGNAL, USER, VOLUME, WORKDIR, the ARG default, and each
  ``key=value`` of a RUN --mount. Not expanded: RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
  MAINTAINER (the shell or the runtime does it), ONBUILD (its trigger is expanded when it
  runs in a later build), and COPY --from (an error if it holds a variable, as BuildKit:
  define a stage with ``FROM $IMAGE AS alias`` instead).

Everything here is pure: the evaluator takes the stage, the args and the base image's
environment, and yields `Step` values; it never touches a file or a process.
"""

from __future__ import annotations

import csv
import io
import platform
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from rootless.errors import BuildError
from rootless.images.instructions import (
    Add,
    Arg,
    Containerfile,
    Copy,
    Env,
    Expose,
    Heredoc,
    Instruction,
    Label,
    Run,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from rootless.images.shellwords import expand, expand_heredoc, expand_words

PLATFORM_ARGS = (
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
)  # fmt: skip
# Predefined ARGs: usable by RUN without an ARG line, left out of the image's history.
PROXY_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)  # fmt: skip

# uname -m -> (GOARCH, variant), as containerd normalizes them.
_MACHINES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}


@dataclass(frozen=True)
class Platform:
    os: str
    arch: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.arch, self.variant) if p)


def parse_platform(text: str) -> Platform:
    """``linux/amd64``, ``linux/arm64``, ``linux/arm/v7``. Raises BuildError."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise BuildError(
            f"invalid platform {text!r}", hint="a platform is OS/ARCH[/VARIANT], e.g. linux/arm64"
        )
    return Platform(*parts)


def host_platform() -> Platform:
    """The platform this machine runs natively (what BUILDPLATFORM names)."""
    machine = platform.machine().lower()
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def platform_args(build: Platform, target: Platform | None = None) -> dict[str, str]:
    """The automatic platform ARGs; the target defaults to the build platform."""
    t = target or build
    return {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDARCH": build.arch,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(t),
        "TARGETOS": t.os,
        "TARGETARCH": t.arch,
        "TARGETVARIANT": t.variant,
    }


@dataclass(frozen=True)
class _Expand:
    """Expansion for one instruction; errors name its line and keyword."""

    line: int
    keyword: str
    env: Mapping[str, str]
    escape: str

    def fail(self, exc: BuildError) -> BuildError:
        return BuildError(f"line {self.line}: {self.keyword}: {exc.message}", exc.hint)

    def word(self, text: str) -> str:
        try:
            return expand(text, self.env, escape=self.escape)
        except BuildError as exc:
            raise self.fail(exc) from None

    def maybe(self, text: str | None) -> str | None:
        return None if text is None else self.word(text)

    def words(self, text: str) -> list[str]:
        try:
            return expand_words(text, self.env, escape=self.escape)
        except BuildError as exc:
            raise self.fail(exc) from None

    def heredoc(self, doc: Heredoc) -> Heredoc:
        """The final file text: chomped, and expanded unless the delimiter was quoted."""
        if not doc.expand:
            return replace(doc, content=doc.body, chomp=False)
        try:
            return replace(doc, content=expand_heredoc(doc.body, self.env), chomp=False)
        except BuildError as exc:
            raise self.fail(exc) from None

    def pairs(self, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((self.word(k), self.word(v)) for k, v in pairs)

    def mount(self, spec: str) -> str:
        """A --mount CSV spec with each ``key=value`` value expanded; ``from`` may not hold
        a variable (BuildKit refuses it: the stage graph is fixed before expansion)."""
        fields = next(csv.reader([spec]))
        out = []
        for f in fields:
            key, eq, value = f.partition("=")
            if eq and key.lower() == "from" and "$" in value[:-1]:
                raise self.fail(
                    BuildError(
                        "'from' doesn't support variable expansion",
                        hint="define an alias stage: ARG IMG; FROM $IMG AS alias; --mount=from=alias",
                    )
                )
            out.append(key + eq + self.word(value) if eq else f)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(out)
        return buf.getvalue()


def proxy_env(build_args: Mapping[str, str]) -> dict[str, str]:
    """The predefined proxy ARGs among the build args: BuildKit gives them to every RUN
    without an ARG line and keeps them out of history and the cache key."""
    return {k: v for k, v in build_args.items() if k in PROXY_ARGS}


def global_scope(
    cf: Containerfile, build_args: Mapping[str, str], platform_values: Mapping[str, str]
) -> dict[str, str]:
    """The values FROM lines see, and the values ``ARG NAME`` in a stage inherits."""
    scope = {k: build_args.get(k, v) for k, v in platform_values.items()}
    for arg in cf.global_args:
        if arg.name in build_args:
            scope[arg.name] = build_args[arg.name]
        elif arg.default is not None:
            scope[arg.name] = _Expand(arg.line, "ARG", scope, cf.escape).word(arg.default)
    return scope


def resolve_from(cf: Containerfile, stage: Stage, scope: Mapping[str, str]) -> Stage:
    """The stage with its base image and --platform expanded in the global scope."""
    ex = _Expand(stage.line, "FROM", scope, cf.escape)
    base = ex.word(stage.base)
    if not base:
        raise BuildError(
            f"line {stage.line}: FROM: base name ({stage.base}) should not be blank",
            hint="give the ARG a default or pass --build-arg",
        )
    plat = ex.maybe(stage.platform)
    if plat is not None and not plat:
        raise BuildError(
            f"line {stage.line}: FROM: empty platform value from expression {stage.platform}",
            hint="give the ARG a default or pass --build-arg",
        )
    return replace(stage, base=base, platform=plat)


@dataclass(frozen=True)
class Step:
    """One instruction as the build sees it."""

    instruction: Instruction  # a copy with the words Docker expands expanded
    env: Mapping[str, str]  # the environment it was expanded in: what a RUN process gets
    args: Mapping[str, str]  # the stage's ARG values so far (history, cache keys)


def _expanded(ins: Instruction, ex: _Expand) -> Instruction:
    if isinstance(ins, Copy):
        plain = _Expand(ex.line, ex.keyword, {}, ex.escape).maybe(ins.from_)
        if plain != ins.from_:
            raise ex.fail(
                BuildError(
                    "variable expansion is not supported for --from",
                    hint="define a new stage with FROM using an ARG from the global scope",
                )
            )
        return replace(
            ins,
            sources=tuple(ex.word(s) for s in ins.sources),
            dest=ex.word(ins.dest),
            heredocs=tuple(ex.heredoc(h) for h in ins.heredocs),
            chown=ex.maybe(ins.chown),
            chmod=ex.maybe(ins.chmod),
        )
    if isinstance(ins, Add):
        return replace(
            ins,
            sources=tuple(ex.word(s) for s in ins.sources),
            dest=ex.word(ins.dest),
            heredocs=tuple(ex.heredoc(h) for h in ins.heredocs),
            chown=ex.maybe(ins.chown),
            chmod=ex.maybe(ins.chmod),
            checksum=ex.maybe(ins.checksum),
        )
    if isinstance(ins, Env | Label):
        return replace(ins, pairs=ex.pairs(ins.pairs))
    if isinstance(ins, Expose):
        return replace(ins, ports=tuple(p for word in ins.ports for p in ex.words(word)))
    if isinstance(ins, Volume):
        return replace(ins, paths=tuple(ex.word(p) for p in ins.paths))
    if isinstance(ins, Workdir):
        return replace(ins, path=ex.word(ins.path))
    if isinstance(ins, User):
        return replace(ins, user=ex.word(ins.user))
    if isinstance(ins, StopSignal):
        return replace(ins, signal=ex.word(ins.signal))
    if isinstance(ins, Run) and ins.mounts:
        return replace(ins, mounts=tuple(ex.mount(m) for m in ins.mounts))
    return ins  # RUN CMD ENTRYPOINT SHELL HEALTHCHECK MAINTAINER ONBUILD


def evaluate(
    cf: Containerfile,
    stage: Stage,
    *,
    build_args: Mapping[str, str],
    scope: Mapping[str, str],
    base_env: Mapping[str, str] = MappingProxyType({}),
) -> Iterator[Step]:
    """Walk `stage`, yielding each instruction expanded, with the environment it saw.

    `scope` is `global_scope(...)`; `base_env` is the base image's config Env (or, for a
    stage built FROM another stage, that stage's final environment: BuildKit carries ARG
    values across that way too)."""
    env = dict(base_env)
    args: dict[str, str] = {}
    for ins in stage.instructions:
        ex = _Expand(ins.line, ins.keyword, MappingProxyType(dict(env)), cf.escape)
        if isinstance(ins, Arg):
            if ins.name in build_args:
                value: str | None = build_args[ins.name]
            elif ins.default is not None:
                value = ex.word(ins.default)
            else:
                value = scope.get(ins.name)
            yield Step(replace(ins, default=value), ex.env, MappingProxyType(dict(args)))
            if value is not None:
                env[ins.name] = args[ins.name] = value
            continue
        expanded = _expanded(ins, ex)
        yield Step(expanded, ex.env, MappingProxyType(dict(args)))
        if isinstance(expanded, Env):
            env.update(expanded.pairs)


def resolve_stage_env(
    cf: Containerfile,
    stage: Stage,
    *,
    build_args: Mapping[str, str],
    scope: Mapping[str, str],
    base_env: Mapping[str, str] = MappingProxyType({}),
) -> dict[str, str]:
    """The environment after the stage's last instruction (ENV and ARG values, with the
    base's): what a stage built FROM this one starts from."""
    env = dict(base_env)
    for step in evaluate(cf, stage, build_args=build_args, scope=scope, base_env=base_env):
        ins = step.instruction
        if isinstance(ins, Env):
            env.update(ins.pairs)
        elif isinstance(ins, Arg) and ins.default is not None:
            env[ins.name] = ins.default
    return env
