"""`rsbox run` arguments as one frozen value, checked in one place.

argv -> `RunSpec` (what the user asked) -> `RunSpec.validate()` (every "X requires Y")
-> `plan_process(spec, image_config)` (what the container's pid 1 will execute, with
Docker's rules for Entrypoint/Cmd/Env/WorkingDir/User). All of it is pure and unit-tested.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rootless.environ import merge_env as merge_env  # re-exported
from rootless.errors import UsageError

if TYPE_CHECKING:
    from rootless.lifecycle import LogOptions
    from rootless.limits import Limits

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORKS = ("host", "none", "pasta", "slirp4netns")
USERNS_MODES = ("auto", "single", "keep-id")  # rootless.idmap
BUILD_USERNS_MODES = ("auto", "single")  # a build's steps run as the image's root


@dataclass(frozen=True, slots=True)
class Volume:
    """One mount the user asked for (`-v`, `--mount`, `--tmpfs`) or the image's VOLUME
    brought (rootless.mountspec parses them all).

    kind "bind": `source` is the host path. kind "volume": `name` is the volume in the
    store (rootless.volumes); `source` is its directory once resolved (empty before).
    kind "tmpfs": `options` is the tmpfs mount data (size=..., mode=...), `source` empty.
    `copy_up`: fill the volume from the image's files at `target` before mounting it (a
    new, empty volume at its first use); never saved, so `start` never copies again."""

    source: Path
    target: str
    readonly: bool = False
    kind: str = "bind"
    name: str = ""
    anonymous: bool = False
    options: str = ""
    copy_up: bool = False

    @classmethod
    def parse(cls, text: str) -> Volume:
        """`-v SRC:DST[:OPTS]`, `-v NAME:DST[:OPTS]` or `-v DST` (rootless.mountspec)."""
        from rootless.mountspec import parse_volume_flag

        return parse_volume_flag(text)

    def to_json(self) -> list[object]:
        return [
            str(self.source),
            self.target,
            self.readonly,
            self.kind,
            self.name,
            self.anonymous,
            self.options,
        ]

    @classmethod
    def from_json(cls, doc: Sequence[object]) -> Volume:
        """What `to_json` wrote, or the `[source, target, readonly]` of older records."""
        src, target, ro, *rest = doc
        kind, name, anonymous, options = (list(rest) + ["bind", "", False, ""][len(rest) :])[:4]
        return cls(
            Path(str(src)),
            str(target),
            bool(ro),
            str(kind),
            str(name),
            bool(anonymous),
            str(options),
        )


MAX_ID = 65535  # the largest id a container's user namespace maps (rootless.idmap)
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def valid_hostname(name: str) -> bool:
    """RFC 1123 host name, at most 64 bytes (the kernel's HOST_NAME_MAX)."""
    return 0 < len(name) <= 64 and all(_LABEL.fullmatch(label) for label in name.split("."))


def parse_network(text: str) -> tuple[str, tuple[str, ...]]:
    """`--network MODE[:OPT,OPT...]` (Podman's syntax) -> (MODE, OPTS)."""
    mode, colon, opts = text.partition(":")
    if colon and not opts:
        raise UsageError(f"invalid --network {text!r}", hint="use --network pasta:-T,5432")
    return mode, tuple(o for o in opts.split(",") if o) if colon else ()


def _strs(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


@dataclass(frozen=True, slots=True)
class RunSpec:
    image: str
    command: tuple[str, ...] = ()
    remove: bool = False
    interactive: bool = False
    tty: bool = False
    env: tuple[str, ...] = ()
    volumes: tuple[Volume, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    name: str | None = None
    entrypoint: str | None = None
    network: str = "host"  # the CLI's default is private: pasta, else slirp4netns
    network_options: tuple[str, ...] = ()  # `--network pasta:OPT,...`: pasta's own options
    userns: str = "auto"
    seccomp: str = "default"
    seccomp_learn: Path | None = None  # --seccomp-learn OUT.json (policies.learn)
    detach: bool = False
    publish: tuple[str, ...] = ()  # HOSTPORT:CTRPORT[/udp], checked by rootless.network
    add_hosts: tuple[str, ...] = ()  # NAME:IP
    memory: str | None = None  # see rootless.limits
    cpus: str | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    ulimits: tuple[str, ...] = ()
    cgroup_parent: str | None = None  # --cgroup-parent (rootless.cgroups)
    cgroups: str = "enabled"  # --cgroups enabled|disabled, as Podman's
    log_opts: tuple[str, ...] = ()  # --log-opt KEY=VALUE (LogOptions, rootless.lifecycle)
    init: bool = False  # --init: rsbox-init as pid 1 (rootless.launch.become)
    cap_add: tuple[str, ...] = ()  # --cap-add, canonical names (rootless.launch.caps)
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False  # every capability, no masked paths, seccomp unconfined
    restart: str = "no"  # no | on-failure[:N] (detached only; see rootless.launch.p1)
    host_env: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def pasta_from_p0(self) -> bool:
        """The network is pasta's, and P0 runs it on the host against P1 as soon as it has
        written P1's id maps (pasta cannot open the namespaces from inside ours): so P1
        makes the container's network namespace with its user namespace, and P2 keeps
        it. One rule for rootless.launch.p0, p1 and p2."""
        return self.network == "pasta"

    @property
    def netns_of_p2(self) -> bool:
        """P2 makes the container's network namespace (none, slirp4netns): neither the
        host's nor pasta's, which P1 made (`pasta_from_p0`)."""
        return self.network != "host" and not self.pasta_from_p0

    @property
    def has_limits(self) -> bool:
        return bool(self.memory or self.cpus or self.pids_limit or self.ulimits or self.cpu_shares)

    def limits(self) -> Limits:
        from rootless.limits import Limits

        return Limits.from_flags(
            self.memory, self.cpus, self.pids_limit, self.ulimits, self.cpu_shares
        )

    def log_options(self) -> LogOptions:
        """--log-opt, parsed (the json-file log's rotation; checked by validate)."""
        from rootless.lifecycle import LogOptions

        return LogOptions.parse(self.log_opts)

    def capabilities(self) -> frozenset[str]:
        """The set pid 1 and every exec run with (Docker's rules, rootless.launch.caps)."""
        from rootless.launch import caps

        return caps.capability_set(
            self.cap_add, self.cap_drop, privileged=self.privileged, last_cap=caps.last_cap()
        )

    def to_json(self) -> dict[str, object]:
        """What `start` needs to run the container again (not the host environment:
        `-e KEY` was resolved into the plan already; not --seccomp-learn: a restart
        enforces, it does not learn again)."""
        skip = ("host_env", "seccomp_learn")
        doc: dict[str, object] = {
            f: getattr(self, f) for f in self.__dataclass_fields__ if f not in skip
        }
        doc["command"] = list(self.command)
        doc["env"] = list(self.env)
        doc["publish"] = list(self.publish)
        doc["add_hosts"] = list(self.add_hosts)
        doc["ulimits"] = list(self.ulimits)
        doc["log_opts"] = list(self.log_opts)
        doc["network_options"] = list(self.network_options)
        doc["cap_add"] = list(self.cap_add)
        doc["cap_drop"] = list(self.cap_drop)
        doc["volumes"] = [v.to_json() for v in self.volumes]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> RunSpec:
        kw = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        kw["command"] = _strs(doc.get("command"))
        kw["env"] = _strs(doc.get("env"))
        kw["publish"] = _strs(doc.get("publish"))
        kw["add_hosts"] = _strs(doc.get("add_hosts"))
        kw["ulimits"] = _strs(doc.get("ulimits"))
        kw["log_opts"] = _strs(doc.get("log_opts"))
        kw["network_options"] = _strs(doc.get("network_options"))
        kw["cap_add"] = _strs(doc.get("cap_add"))
        kw["cap_drop"] = _strs(doc.get("cap_drop"))
        kw["volumes"] = tuple(
            Volume.from_json(v)
            for v in doc.get("volumes") or ()  # type: ignore[attr-defined]
        )
        return cls(**kw)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Every cross-flag rule, in one place."""
        self.capabilities()  # unknown names, or caps this kernel lacks
        if self.privileged and self.seccomp != "unconfined":
            raise UsageError(
                "--privileged runs without a seccomp filter",
                hint="drop --security-opt seccomp=... or --privileged",
            )
        if self.seccomp_learn is not None:
            if self.seccomp != "default":
                raise UsageError(
                    "--seccomp-learn replaces the seccomp policy",
                    hint="drop --security-opt seccomp=... while learning",
                )
            if not self.seccomp_learn.parent.is_dir():
                raise UsageError(
                    f"cannot write {self.seccomp_learn}: no such directory",
                    hint="give --seccomp-learn a path in an existing directory",
                )
        if self.network not in NETWORKS:
            raise UsageError(
                f"unsupported network mode {self.network!r}",
                hint="use --network host, none, pasta or slirp4netns",
            )
        if self.network_options and self.network != "pasta":
            raise UsageError(
                f"--network {self.network} takes no options",
                hint="options are pasta's: --network pasta:-T,5432",
            )
        if self.publish and self.network not in ("pasta", "slirp4netns"):
            raise UsageError(
                f"-p needs a network of the container's own, not --network {self.network}",
                hint="use --network pasta or slirp4netns (install passt or slirp4netns)",
            )
        if self.has_limits:
            self.limits()
        if self.cgroups not in ("enabled", "disabled"):
            raise UsageError(f"invalid --cgroups {self.cgroups!r}", hint="use enabled or disabled")
        if self.cgroups == "disabled" and self.cgroup_parent is not None:
            raise UsageError(
                "--cgroup-parent and --cgroups disabled cannot be combined", hint="drop one"
            )
        self.log_options()
        kind, colon, count = self.restart.partition(":")
        if kind not in ("no", "on-failure") or (colon and (kind == "no" or not count.isdigit())):
            raise UsageError(f"invalid --restart {self.restart!r}", hint="use no or on-failure[:N]")
        if kind != "no" and self.remove:
            raise UsageError("--restart and --rm cannot be combined", hint="drop one of them")
        if self.publish:
            from rootless.network import Port

            for item in self.publish:
                Port.parse(item)
        for item in self.add_hosts:
            name, sep, addr = item.partition(":")
            if not sep or not name or not addr:
                raise UsageError(f"invalid --add-host {item!r}", hint="use --add-host NAME:IP")
        if self.userns not in USERNS_MODES:
            raise UsageError(
                f"unsupported user namespace mode {self.userns!r}",
                hint="use --userns auto, single or keep-id",
            )
        if self.userns == "keep-id" and self.seccomp == "fakeroot":
            raise UsageError(
                "--userns keep-id cannot be combined with seccomp=fakeroot",
                hint="fakeroot emulates ids on a map whose one id is root; drop one of them",
            )
        if self.workdir is not None and not self.workdir.startswith("/"):
            raise UsageError(
                f"working directory {self.workdir!r} is not absolute", hint="use -w /path"
            )
        targets: set[str] = set()
        for v in self.volumes:
            if v.kind == "bind" and not v.source.exists():
                raise UsageError(
                    f"volume source {v.source} does not exist",
                    hint="create it first (rsbox, like podman, does not create host paths)",
                )
            if v.target == "/":
                raise UsageError("cannot mount a volume on /", hint="pick a directory below /")
            if v.target in targets:
                raise UsageError(
                    f"duplicate mount point: {v.target}", hint="mount one thing at each path"
                )
            targets.add(v.target)
        for item in self.env:
            if not item or item.startswith("="):
                raise UsageError(f"invalid environment variable {item!r}", hint="use -e KEY=VALUE")
        if self.detach and self.interactive:
            raise UsageError(
                "-d and -i cannot be combined: a detached container has no stdin",
                hint="drop -i, and use rsbox exec -it CTR sh for a shell in it",
            )
        if self.hostname is not None and not valid_hostname(self.hostname):
            raise UsageError(
                f"invalid hostname {self.hostname!r}",
                hint="RFC 1123: letters, digits and '-' in dot-separated labels, 64 at most",
            )
        if self.user is not None:
            for part in self.user.split(":")[:2]:
                if part.isdigit() and int(part) > MAX_ID:
                    raise UsageError(
                        f"user or group id {part} is outside the container's ids (0-{MAX_ID})",
                        hint="use an id from 0 to 65535, or a name from the image",
                    )


@dataclass(frozen=True, slots=True)
class ImageDefaults:
    """The parts of an OCI image config that `run` uses."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class ProcessPlan:
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str  # "" means root; resolved against the container's /etc/passwd later
    hostname: str

    def to_json(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "env": list(self.env),
            "cwd": self.cwd,
            "user": self.user,
            "hostname": self.hostname,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> ProcessPlan:
        return cls(
            argv=_strs(doc["argv"]),
            env=_strs(doc["env"]),
            cwd=str(doc["cwd"]),
            user=str(doc["user"]),
            hostname=str(doc["hostname"]),
        )


def _default_user(spec: RunSpec, image: ImageDefaults) -> str:
    """The image's USER; under --userns keep-id the caller's own uid:gid, as Podman does
    (the launch writes /etc/passwd and /etc/group entries for them: rootless.launch.keepid)."""
    if spec.userns == "keep-id":
        return f"{os.getuid()}:{os.getgid()}"
    return image.user


def plan_process(spec: RunSpec, image: ImageDefaults, container_id: str) -> ProcessPlan:
    """Docker's rules: `--entrypoint` replaces the image Entrypoint and clears its Cmd
    (`--entrypoint ""` means none); a command on the CLI replaces Cmd."""
    if spec.entrypoint is not None:
        entrypoint: tuple[str, ...] = (spec.entrypoint,) if spec.entrypoint else ()
        cmd = spec.command
    else:
        entrypoint = image.entrypoint
        cmd = spec.command or image.cmd
    argv = entrypoint + cmd
    if not argv:
        raise UsageError(
            "no command specified and the image has none",
            hint="give one: rsbox run IMAGE COMMAND [ARG...]",
        )
    hostname = spec.hostname or container_id[:12]
    env = merge_env(image.env, spec.env, spec.host_env)
    keys = {e.partition("=")[0] for e in env}
    defaults = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if spec.tty:
        defaults["TERM"] = "xterm"
    env = [f"{k}={v}" for k, v in defaults.items() if k not in keys] + env
    return ProcessPlan(
        argv=argv,
        env=tuple(env),
        cwd=spec.workdir or image.workdir or "/",
        user=spec.user if spec.user is not None else _default_user(spec, image),
        hostname=hostname,
    )
