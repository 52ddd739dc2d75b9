"""The seccomp profile model, its loader, and the per-host include/exclude evaluation.

A profile is data: frozen dataclasses, no libseccomp objects. The loader accepts

- Docker's seccomp JSON (`defaultAction`, `defaultErrnoRet`, `archMap`, `syscalls` with
  `names`/`action`/`errnoRet`/`args`/`includes`/`excludes`/`comment`), including Podman's
  extra informational `errno`/`defaultErrno` names, and the legacy single `name` field;
- the OCI runtime-spec `linux.seccomp` object (same rule fields, `architectures`, `flags`),
  either bare or inside a whole `config.json`.

Every problem is a `PolicyError` naming the JSON path. Syscall names no libseccomp
architecture knows are not errors (profiles outlive libseccomp releases): they are collected
in `Profile.warnings` and skipped at compile time.

Docker's include/exclude semantics, reproduced by `Rule.applies_to`:

- `includes.caps`: the rule applies only if the container has *all* the listed caps;
  `excludes.caps`: it does not apply if the container has *any* of them;
- `includes.arches` / `excludes.arches`: GOARCH names (`amd64`, `x32`, ...) matched against
  the native architecture only;
- `includes.minKernel`: applies only on kernels >= that version; `excludes.minKernel`: does
  not apply on kernels >= that version.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies import _arch
from policies.errors import PolicyError

# Docker's default capability set: what a container holds unless --cap-add, --cap-drop or
# --privileged say otherwise, and what `Host.current()` assumes when given no set. The
# launcher computes the set really in force and passes it (canonical names) to
# `program_cache.program_for(..., caps=)` / `Host.current(caps)`, so that includes.caps
# and excludes.caps see it. The launcher's copy (rootless/launch/caps.py) is kept equal to
# this one by a test.
DEFAULT_CAPS: frozenset[str] = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SYS_CHROOT",
        "CAP_MKNOD",
        "CAP_AUDIT_WRITE",
        "CAP_SETFCAP",
    }
)

MAX_ERRNO = 4095  # the kernel clamps SECCOMP_RET_ERRNO data to this
MAX_ARGS = 6
U64_MAX = 2**64 - 1


class Action(enum.Enum):
    KILL_THREAD = "SCMP_ACT_KILL_THREAD"
    KILL = "SCMP_ACT_KILL"  # libseccomp's historic name for KILL_THREAD
    KILL_PROCESS = "SCMP_ACT_KILL_PROCESS"
    TRAP = "SCMP_ACT_TRAP"
    ERRNO = "SCMP_ACT_ERRNO"
    TRACE = "SCMP_ACT_TRACE"
    ALLOW = "SCMP_ACT_ALLOW"
    LOG = "SCMP_ACT_LOG"
    NOTIFY = "SCMP_ACT_NOTIFY"


class Op(enum.Enum):
    NE = "SCMP_CMP_NE"
    LT = "SCMP_CMP_LT"
    LE = "SCMP_CMP_LE"
    EQ = "SCMP_CMP_EQ"
    GE = "SCMP_CMP_GE"
    GT = "SCMP_CMP_GT"
    MASKED_EQ = "SCMP_CMP_MASKED_EQ"  # (arg & value) == valueTwo


@dataclass(frozen=True)
class Arg:
    index: int
    value: int
    value_two: int
    op: Op


@dataclass(frozen=True)
class Condition:
    """One side (includes or excludes) of a rule's host condition. Empty = no condition."""

    caps: frozenset[str] = frozenset()
    arches: frozenset[str] = frozenset()
    min_kernel: tuple[int, ...] | None = None

    def is_empty(self) -> bool:
        return not self.caps and not self.arches and self.min_kernel is None


@dataclass(frozen=True)
class Host:
    """The facts include/exclude conditions are evaluated against."""

    goarch: str
    caps: frozenset[str]
    kernel: tuple[int, ...]

    @classmethod
    def current(cls, caps: frozenset[str] = DEFAULT_CAPS) -> Host:
        return cls(goarch=_arch.native_goarch(), caps=caps, kernel=parse_kernel(os.uname().release))


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: Action
    errno_ret: int | None = None
    args: tuple[Arg, ...] = ()
    includes: Condition = Condition()
    excludes: Condition = Condition()
    comment: str = ""

    def applies_to(self, host: Host) -> bool:
        inc, exc = self.includes, self.excludes
        if inc.caps and not inc.caps <= host.caps:
            return False
        if inc.arches and host.goarch not in inc.arches:
            return False
        if inc.min_kernel is not None and host.kernel < inc.min_kernel:
            return False
        if exc.caps and exc.caps & host.caps:
            return False
        if exc.arches and host.goarch in exc.arches:
            return False
        return not (exc.min_kernel is not None and host.kernel >= exc.min_kernel)


@dataclass(frozen=True)
class Profile:
    default_action: Action
    default_errno_ret: int | None = None
    # OCI `architectures` / old Docker `architectures`.
    architectures: tuple[str, ...] = ()
    # Docker `archMap`: (architecture, subArchitectures).
    arch_map: tuple[tuple[str, tuple[str, ...]], ...] = ()
    rules: tuple[Rule, ...] = ()
    flags: tuple[str, ...] = ()
    # Loader diagnostics (unknown syscall names); not part of the profile's identity.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def effective_rules(self, host: Host) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.applies_to(host))

    def canonical_json(self) -> str:
        """A stable serialisation (the cache key is its hash)."""
        return json.dumps(to_json_dict(self), sort_keys=True, separators=(",", ":"))


UNCONFINED = Profile(default_action=Action.ALLOW)


# --------------------------------------------------------------------------- loading


def parse_kernel(release: str) -> tuple[int, ...]:
    """`6.18.44-fc-v657` -> (6, 18, 44); `4.8` -> (4, 8)."""
    m = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", release)
    if m is None:
        raise ValueError(f"not a kernel version: {release!r}")
    return tuple(int(g) for g in m.groups() if g is not None)


def load_json_text(text: str, source: str = "") -> Profile:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{source}: " if source else ""
        raise PolicyError("", f"{where}not JSON: {exc}") from exc
    return from_json_dict(doc)


def from_json_dict(doc: Any) -> Profile:
    """Build a Profile from a Docker profile, an OCI `linux.seccomp` object or a config.json."""
    prefix = ""
    if isinstance(doc, Mapping) and "linux" in doc and "defaultAction" not in doc:
        linux = _mapping(doc["linux"], "linux")
        if "seccomp" not in linux:
            raise PolicyError("linux", "no seccomp object")
        doc, prefix = linux["seccomp"], "linux.seccomp"
    return _Loader(prefix).profile(doc)


# The fields each object may have. Anything else is an error naming its JSON path: a typo
# ("errnoret", "arg") would otherwise silently change what the profile means.
_PROFILE_KEYS = frozenset(
    {
        "defaultAction",
        "defaultErrnoRet",
        "defaultErrno",  # Podman: the errno's name, informational next to defaultErrnoRet
        "architectures",
        "archMap",
        "syscalls",
        "flags",
        "listenerPath",  # OCI: for SCMP_ACT_NOTIFY with an external agent (not used here)
        "listenerMetadata",
    }
)
_RULE_KEYS = frozenset(
    {"names", "name", "action", "errnoRet", "errno", "args", "includes", "excludes", "comment"}
)
_ARG_KEYS = frozenset({"index", "value", "valueTwo", "op"})
_CONDITION_KEYS = frozenset({"caps", "arches", "minKernel"})
_ARCHMAP_KEYS = frozenset({"architecture", "subArchitectures"})
# OCI runtime-spec `linux.seccomp.flags`: what seccomp(2) accepts at install time.
SECCOMP_FLAGS = frozenset(
    {
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(path, f"expected an object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


class _Loader:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.warnings: list[str] = []

    def path(self, *parts: str | int) -> str:
        out = self.prefix
        for p in parts:
            out = f"{out}[{p}]" if isinstance(p, int) else _join(out, p)
        return out

    def known_keys(self, doc: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in doc:
            if key not in allowed:
                where = _join(path, key) if isinstance(key, str) else path
                raise PolicyError(where, f'unknown field "{key}"')

    # -- scalars

    def int_(self, value: Any, path: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(path, f"expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise PolicyError(path, f"{value} is out of range {lo}..{hi}")
        return value

    def str_(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise PolicyError(path, f"expected a string, got {_kind(value)}")
        return value

    def str_list(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise PolicyError(path, f"expected an array of strings, got {_kind(value)}")
        return tuple(self.str_(v, f"{path}[{i}]") for i, v in enumerate(value))

    def action(self, value: Any, path: str) -> Action:
        s = self.str_(value, path)
        try:
            return Action(s)
        except ValueError:
            raise PolicyError(path, f'unknown action "{s}"') from None

    def errno_(
        self, doc: Mapping[str, Any], ret_key: str, name_key: str, *parts: str | int
    ) -> int | None:
        """`errnoRet` (a number) wins; Podman's `errno` (a name) is the fallback."""
        if doc.get(ret_key) is not None:
            return self.int_(doc[ret_key], self.path(*parts, ret_key), 0, MAX_ERRNO)
        if doc.get(name_key):
            name = self.str_(doc[name_key], self.path(*parts, name_key))
            nr = getattr(errno, name, None)
            if not isinstance(nr, int):
                raise PolicyError(self.path(*parts, name_key), f'unknown errno "{name}"')
            return nr
        return None

    # -- structure

    def profile(self, doc: Any) -> Profile:
        doc = _mapping(doc, self.prefix)
        self.known_keys(doc, _PROFILE_KEYS, self.prefix)
        if "defaultAction" not in doc:
            raise PolicyError(self.path("defaultAction"), "missing")
        default_action = self.action(doc["defaultAction"], self.path("defaultAction"))
        default_errno = self.errno_(doc, "defaultErrnoRet", "defaultErrno")

        arches = self.str_list(doc.get("architectures"), self.path("architectures"))
        for i, a in enumerate(arches):
            self.arch_name(a, self.path("architectures", i))
        arch_map = self.arch_map(doc.get("archMap"))

        raw_rules = doc.get("syscalls")
        if raw_rules is None:
            raw_rules = []
        if not isinstance(raw_rules, list):
            raise PolicyError(self.path("syscalls"), f"expected an array, got {_kind(raw_rules)}")
        rules = tuple(self.rule(r, i) for i, r in enumerate(raw_rules))
        flags = self.str_list(doc.get("flags"), self.path("flags"))
        for i, flag in enumerate(flags):
            if flag not in SECCOMP_FLAGS:
                raise PolicyError(self.path("flags", i), f'unknown flag "{flag}"')
        for key in ("listenerPath", "listenerMetadata"):
            if doc.get(key) is not None:
                self.str_(doc[key], self.path(key))
        return Profile(
            default_action=default_action,
            default_errno_ret=default_errno,
            architectures=arches,
            arch_map=arch_map,
            rules=rules,
            flags=flags,
            warnings=tuple(self.warnings),
        )

    def arch_name(self, name: str, path: str) -> str:
        if name not in _arch.SCMP_ARCH_TOKENS and name not in _arch.FOREIGN_SCMP_ARCHES:
            raise PolicyError(path, f'unknown architecture "{name}"')
        return name

    def arch_map(self, value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise PolicyError(self.path("archMap"), f"expected an array, got {_kind(value)}")
        out = []
        for i, entry in enumerate(value):
            entry = _mapping(entry, self.path("archMap", i))
            self.known_keys(entry, _ARCHMAP_KEYS, self.path("archMap", i))
            if "architecture" not in entry:
                raise PolicyError(self.path("archMap", i, "architecture"), "missing")
            main = self.arch_name(
                self.str_(entry["architecture"], self.path("archMap", i, "architecture")),
                self.path("archMap", i, "architecture"),
            )
            subs = self.str_list(
                entry.get("subArchitectures"), self.path("archMap", i, "subArchitectures")
            )
            for j, s in enumerate(subs):
                self.arch_name(s, self.path("archMap", i, "subArchitectures", j))
            out.append((main, subs))
        return tuple(out)

    def rule(self, doc: Any, i: int) -> Rule:
        doc = _mapping(doc, self.path("syscalls", i))
        self.known_keys(doc, _RULE_KEYS, self.path("syscalls", i))
        if doc.get("names") is not None:
            names = self.str_list(doc["names"], self.path("syscalls", i, "names"))
        elif doc.get("name") is not None:  # Docker's pre-1.13 single-name form
            names = (self.str_(doc["name"], self.path("syscalls", i, "name")),)
        else:
            raise PolicyError(self.path("syscalls", i, "names"), "missing")
        for j, name in enumerate(names):
            if not name:
                raise PolicyError(self.path("syscalls", i, "names", j), "empty syscall name")
            if not _arch.known(name):
                self.warnings.append(
                    f'{self.path("syscalls", i, "names", j)}: unknown syscall "{name}"'
                    f" (neither rsbox nor libseccomp {_arch.libseccomp_version()} knows it;"
                    " skipped)"
                )
        if "action" not in doc:
            raise PolicyError(self.path("syscalls", i, "action"), "missing")
        action = self.action(doc["action"], self.path("syscalls", i, "action"))
        errno_ret = self.errno_(doc, "errnoRet", "errno", "syscalls", i)

        raw_args = doc.get("args")
        if raw_args is None:
            raw_args = []
        if not isinstance(raw_args, list):
            raise PolicyError(
                self.path("syscalls", i, "args"), f"expected an array, got {_kind(raw_args)}"
            )
        if len(raw_args) > MAX_ARGS:
            raise PolicyError(
                self.path("syscalls", i, "args"), f"{len(raw_args)} conditions, at most 6"
            )
        args = tuple(self.arg(a, i, j) for j, a in enumerate(raw_args))
        comment = doc.get("comment") or ""
        self.str_(comment, self.path("syscalls", i, "comment"))
        return Rule(
            names=names,
            action=action,
            errno_ret=errno_ret,
            args=args,
            includes=self.condition(doc.get("includes"), i, "includes"),
            excludes=self.condition(doc.get("excludes"), i, "excludes"),
            comment=comment,
        )

    def arg(self, doc: Any, i: int, j: int) -> Arg:
        base = ("syscalls", i, "args", j)
        doc = _mapping(doc, self.path(*base))
        self.known_keys(doc, _ARG_KEYS, self.path(*base))
        for key in ("index", "op"):
            if key not in doc:
                raise PolicyError(self.path(*base, key), "missing")
        index = self.int_(doc["index"], self.path(*base, "index"), 0, MAX_ARGS - 1)
        value = self.int_(doc.get("value", 0), self.path(*base, "value"), 0, U64_MAX)
        value_two = self.int_(doc.get("valueTwo", 0), self.path(*base, "valueTwo"), 0, U64_MAX)
        op_name = self.str_(doc["op"], self.path(*base, "op"))
        try:
            op = Op(op_name)
        except ValueError:
            raise PolicyError(self.path(*base, "op"), f'unknown operator "{op_name}"') from None
        return Arg(index=index, value=value, value_two=value_two, op=op)

    def condition(self, doc: Any, i: int, which: str) -> Condition:
        if doc is None:
            return Condition()
        base = ("syscalls", i, which)
        doc = _mapping(doc, self.path(*base))
        self.known_keys(doc, _CONDITION_KEYS, self.path(*base))
        caps = self.str_list(doc.get("caps"), self.path(*base, "caps"))
        arches = self.str_list(doc.get("arches"), self.path(*base, "arches"))
        min_kernel = None
        if doc.get("minKernel"):
            raw = self.str_(doc["minKernel"], self.path(*base, "minKernel"))
            if not re.fullmatch(r"\d+(\.\d+){0,2}", raw):
                raise PolicyError(self.path(*base, "minKernel"), f'bad kernel version "{raw}"')
            min_kernel = parse_kernel(raw)
        return Condition(caps=frozenset(caps), arches=frozenset(arches), min_kernel=min_kernel)


# --------------------------------------------------------------------------- dumping


def _condition_dict(c: Condition) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.caps:
        out["caps"] = sorted(c.caps)
    if c.arches:
        out["arches"] = sorted(c.arches)
    if c.min_kernel is not None:
        out["minKernel"] = ".".join(str(p) for p in c.min_kernel)
    return out


def to_json_dict(profile: Profile) -> dict[str, Any]:
    """Docker-format JSON for `profile` (loads back to an equal Profile)."""
    out: dict[str, Any] = {"defaultAction": profile.default_action.value}
    if profile.default_errno_ret is not None:
        out["defaultErrnoRet"] = profile.default_errno_ret
    if profile.architectures:
        out["architectures"] = list(profile.architectures)
    if profile.arch_map:
        out["archMap"] = [
            {"architecture": a, "subArchitectures": list(s)} for a, s in profile.arch_map
        ]
    if profile.flags:
        out["flags"] = list(profile.flags)
    rules = []
    for r in profile.rules:
        d: dict[str, Any] = {"names": list(r.names), "action": r.action.value}
        if r.errno_ret is not None:
            d["errnoRet"] = r.errno_ret
        if r.args:
            d["args"] = [
                {"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op.value}
                for a in r.args
            ]
        if not r.includes.is_empty():
            d["includes"] = _condition_dict(r.includes)
        if not r.excludes.is_empty():
            d["excludes"] = _condition_dict(r.excludes)
        if r.comment:
            d["comment"] = r.comment
        rules.append(d)
    out["syscalls"] = rules
    return out


def all_names(rules: Sequence[Rule]) -> frozenset[str]:
    return frozenset(n for r in rules for n in r.names)
