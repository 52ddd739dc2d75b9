"""containers-registries.conf(5), read the way Podman (containers/image) reads it.

Which files, in this order (later files override earlier ones, key by key):

1. the main file: ``$CONTAINERS_REGISTRIES_CONF`` if set; else the user's
   ``$XDG_CONFIG_HOME/containers/registries.conf`` (``~/.config/...``) if it exists; else
   ``/etc/containers/registries.conf``. A missing file is no error.
2. drop-ins, ``*.conf`` in name order: ``/etc/containers/registries.conf.d`` then the
   user's ``containers/registries.conf.d``; when the user's main file was used, only the
   user's directory (containers-registries.conf.d(5)).
3. ``$HOME/.cache/containers/short-name-aliases.conf``: the aliases Podman recorded after
   a prompt; they win over the files above, as in Podman.

What a file may set: ``unqualified-search-registries`` (replaces the earlier list),
``short-name-mode`` (enforcing, permissive, disabled), ``[aliases]`` (merged; an empty
value erases an alias), ``[[registry]]`` tables (merged by prefix) with ``prefix``,
``location``, ``insecure``, ``blocked``, ``mirror-by-digest-only`` and
``[[registry.mirror]]`` (``location``, ``insecure``, ``pull-from-mirror``). The main file
may instead use the deprecated version 1 format (``[registries.search|insecure|block]``).
Keys rsbox does not use (``credential-helpers``, newer additions) are ignored as
containers/image ignores unknown keys: these files are shared with Podman and Buildah.
A wrong value fails in one line naming the file and the key.

Decision (rsbox, not Podman): a short name that has no alias while no search registry is
configured resolves to docker.io, as Docker does (Podman refuses it).
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from rootless.errors import ConfigError, UsageError

from . import RegistryError
from .reference import DOCKER_HUB, Reference, parse_reference, registry_part, valid_registry

ShortNameMode = Literal["enforcing", "permissive", "disabled"]
PullFromMirror = Literal["all", "digest-only", "tag-only"]
SHORT_NAME_MODES: tuple[ShortNameMode, ...] = ("enforcing", "permissive", "disabled")
PULL_FROM_MIRROR: tuple[PullFromMirror, ...] = ("all", "digest-only", "tag-only")

SYSTEM_CONF = Path("/etc/containers/registries.conf")
SYSTEM_DIR = Path("/etc/containers/registries.conf.d")


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: PullFromMirror = "all"


@dataclass(frozen=True)
class RegistryEntry:
    """One ``[[registry]]`` table."""

    prefix: str  # "host[:port][/path]" or "*.domain"
    location: str  # "" only for a wildcard prefix: no rewrite
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    file: Path | None = None

    def matched_length(self, ref: str) -> int:
        """How much of ``ref`` (``host/repo:tag``) this prefix covers, or -1."""
        if self.prefix.startswith("*."):
            host = ref.partition("/")[0]
            domain = self.prefix[1:]  # ".example.com"
            bare = host.partition(":")[0] if host.count(":") == 1 else host
            return len(bare) if bare.endswith(domain) and len(bare) > len(domain) else -1
        if ref == self.prefix:
            return len(ref)
        if ref.startswith(self.prefix) and ref[len(self.prefix)] in ":/@":
            return len(self.prefix)
        return -1


@dataclass(frozen=True)
class Source:
    """Where to fetch a logical reference from: a mirror or the primary location."""

    ref: Reference
    insecure: bool
    mirror: bool


@dataclass(frozen=True)
class Candidate:
    """A fully qualified name (what the image is called in the store) and its sources,
    in the order they are tried."""

    name: Reference
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class RegistriesConf:
    search: tuple[str, ...] = ()
    short_name_mode: ShortNameMode = "permissive"
    aliases: Mapping[str, str] = field(default_factory=dict)
    registries: tuple[RegistryEntry, ...] = ()
    files: tuple[Path, ...] = ()  # the files that were read, in order

    # -- [[registry]] ------------------------------------------------------------------

    def entry_for(self, ref: Reference) -> tuple[RegistryEntry, int] | None:
        """The table with the longest matching prefix, and the length it matched."""
        text = str(ref)
        best: tuple[RegistryEntry, int] | None = None
        for entry in self.registries:
            n = entry.matched_length(text)
            if n >= 0 and (best is None or len(entry.prefix) > len(best[0].prefix)):
                best = (entry, n)
        return best

    def sources(self, ref: Reference) -> tuple[Source, ...]:
        """Mirrors (those allowed for a tag or a digest pull) in order, then the primary
        location; refuses a blocked reference."""
        found = self.entry_for(ref)
        if found is None:
            return (Source(ref, False, False),)
        entry, n = found
        if entry.blocked:
            where = f"[[registry]] prefix {entry.prefix!r} in {entry.file}"
            raise RegistryError(
                f"{ref} is blocked by registries.conf ({where})",
                hint="pull it from another registry, or ask whoever manages that file",
            )
        text = str(ref)
        out: list[Source] = []
        for m in entry.mirrors:
            wanted = "digest-only" if ref.digest else "tag-only"
            if entry.mirror_by_digest_only and not ref.digest:
                continue
            if m.pull_from_mirror not in ("all", wanted):
                continue
            out.append(Source(_rewrite(m.location, text, n, m.location), m.insecure, True))
        primary = ref if not entry.location else _rewrite(entry.location, text, n, entry.prefix)
        out.append(Source(primary, entry.insecure, False))
        return tuple(out)

    def insecure(self, ref: Reference) -> bool:
        found = self.entry_for(ref)
        return found is not None and found[0].insecure

    def check_push(self, ref: Reference) -> None:
        """Pushes are not redirected (as in Podman) but a blocked name stays blocked."""
        self.sources(ref)

    # -- short names -------------------------------------------------------------------

    def candidates(self, text: str, *, tty: bool | None = None) -> tuple[Candidate, ...]:
        """The names ``text`` may mean, in the order they are tried: one for a fully
        qualified name or an alias; one per search registry otherwise (the short-name
        mode decides whether several are allowed)."""
        if registry_part(text) is not None:
            ref = parse_reference(text)
            return (Candidate(ref, self.sources(ref)),)
        name, suffix = _split_suffix(text)
        if alias := self.aliases.get(name):
            ref = parse_reference(alias + suffix)
            return (Candidate(ref, self.sources(ref)),)
        if not self.search:
            ref = parse_reference(f"{DOCKER_HUB}/{text}")  # Docker's answer (see above)
            return (Candidate(ref, self.sources(ref)),)
        refs = [parse_reference(f"{r}/{text}") for r in self.search]
        if len(refs) > 1 and self.short_name_mode != "disabled":
            if tty is None:
                tty = sys.stdin.isatty() and sys.stdout.isatty()
            if tty:
                refs = [_prompt(text, refs)]
            elif self.short_name_mode == "enforcing":
                raise RegistryError(
                    f"short name {text!r} did not resolve to an alias and short-name-mode is "
                    f"enforcing with several search registries ({', '.join(self.search)}) "
                    "and no terminal to ask on",
                    hint=f"name the registry ({refs[0]}) or add an [aliases] entry "
                    "in registries.conf",
                )
        return tuple(Candidate(ref, self.sources(ref)) for ref in refs)


def _prompt(text: str, refs: list[Reference]) -> Reference:
    """Podman's question on a terminal: which registry did you mean?"""
    print(f"? Please select an image for {text!r}:", file=sys.stderr)
    for i, ref in enumerate(refs, 1):
        print(f"  {i}) {ref}", file=sys.stderr)
    print("choice [1]: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip() or "1"
    if not answer.isdigit() or not 1 <= int(answer) <= len(refs):
        raise RegistryError(f"no such choice {answer!r}", hint=f"answer 1 to {len(refs)}")
    return refs[int(answer) - 1]


def _rewrite(location: str, ref: str, matched: int, what: str) -> Reference:
    new = location + ref[matched:]
    try:
        return parse_reference(new)
    except UsageError as exc:
        raise ConfigError(
            f"registries.conf: {what!r} rewrites {ref} to the invalid reference {new!r}",
            hint="fix that [[registry]] location",
        ) from exc


def _split_suffix(text: str) -> tuple[str, str]:
    """``name:tag@digest`` -> (``name``, ``:tag@digest``)."""
    name, at, digest = text.partition("@")
    suffix = f"@{digest}" if at else ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        suffix = f":{tag}{suffix}"
    return name, suffix


# --- reading the files -------------------------------------------------------------------


def config_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config")


def conf_files(env: Mapping[str, str] = os.environ) -> list[Path]:
    """The files to read, in order (those that exist), as containers/image picks them."""
    user = config_home(env) / "containers" / "registries.conf"
    user_dir = user.parent / "registries.conf.d"
    if explicit := env.get("CONTAINERS_REGISTRIES_CONF"):
        main, dirs = Path(explicit), [SYSTEM_DIR, user_dir]
    elif user.is_file():
        main, dirs = user, [user_dir]
    else:
        main, dirs = SYSTEM_CONF, [SYSTEM_DIR, user_dir]
    files = [main] if main.is_file() else []
    for d in dirs:
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix == ".conf" and p.is_file())
    cache = Path(env.get("HOME") or Path.home()) / ".cache/containers/short-name-aliases.conf"
    if cache.is_file():
        files.append(cache)
    return files


def load(env: Mapping[str, str] = os.environ) -> RegistriesConf:
    """Read and merge the files Podman would read (raises ConfigError)."""
    return merge(conf_files(env))


def merge(files: list[Path]) -> RegistriesConf:
    search: tuple[str, ...] = ()
    mode: ShortNameMode = "permissive"
    aliases: dict[str, str] = {}
    registries: dict[str, RegistryEntry] = {}
    for i, path in enumerate(files):
        part = parse_file(path, main=i == 0)
        if part.search is not None:
            search = part.search
        if part.mode is not None:
            mode = part.mode
        for name, value in part.aliases.items():
            if value:
                aliases[name] = value
            else:
                aliases.pop(name, None)
        registries.update((e.prefix, e) for e in part.registries)
    return RegistriesConf(search, mode, aliases, tuple(registries.values()), tuple(files))


@dataclass
class _Part:
    """What one file sets (None: not set there)."""

    search: tuple[str, ...] | None = None
    mode: ShortNameMode | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    registries: list[RegistryEntry] = field(default_factory=list)


class _Reader:
    """Typed access to one TOML table, errors naming the file and the key."""

    def __init__(self, path: Path, table: Mapping[str, Any], where: str = "") -> None:
        self.path, self.table, self.where = path, table, where

    def fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(
            f"{self.path}: {self.where}{key}: {what}",
            hint="see containers-registries.conf(5)",
        )

    def get(self, key: str, kind: type[Any], default: Any) -> Any:
        value = self.table.get(key, default)
        if value is not default and not isinstance(value, kind):
            raise self.fail(key, f"expected {kind.__name__}, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(cast(list[str], value))

    def choice(self, key: str, choices: tuple[str, ...]) -> str | None:
        value = self.get(key, str, None)
        if value is None or value == "":
            return None
        if value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)


def parse_file(path: Path, *, main: bool = True) -> _Part:
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", hint="fix its permissions or remove it"
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the file") from exc
    top = _Reader(path, doc)
    part = _Part()
    if "registries" in doc:
        if not main:
            raise top.fail("registries", "version 1 tables are allowed in the main file only")
        _version1(top, part)
    search = top.strings("unqualified-search-registries")
    if search is not None:
        for host in search:
            if not valid_registry(host):
                raise top.fail("unqualified-search-registries", f"{host!r} is not host[:port]")
        if part.search is not None:
            raise top.fail("unqualified-search-registries", "mixes versions 1 and 2")
        part.search = search
    part.mode = cast(ShortNameMode | None, top.choice("short-name-mode", SHORT_NAME_MODES))
    aliases = top.get("aliases", dict, {})
    for name, value in aliases.items():
        at = _Reader(path, aliases, "aliases.")
        if not isinstance(value, str):
            raise at.fail(name, f"expected a string, got {value!r}")
        _check_alias(at, name, value)
        part.aliases[name] = value
    tables = top.get("registry", list, [])
    seen: set[str] = set()
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            raise top.fail("registry", "expected [[registry]] tables")
        entry = _registry(_Reader(path, table, f"registry[{i}]."), path)
        if entry.prefix in seen:
            raise top.fail("registry", f"prefix {entry.prefix!r} is defined more than once")
        seen.add(entry.prefix)
        part.registries.append(entry)
    return part


def _version1(top: _Reader, part: _Part) -> None:
    if "registry" in top.table or "unqualified-search-registries" in top.table:
        raise top.fail("registries", "mixes versions 1 and 2")
    v1 = top.get("registries", dict, {})
    lists: dict[str, tuple[str, ...]] = {}
    for kind in ("search", "insecure", "block"):
        table = v1.get(kind, {})
        if not isinstance(table, dict):
            raise top.fail(f"registries.{kind}", "expected a table")
        got = _Reader(top.path, table, f"registries.{kind}.").strings("registries")
        lists[kind] = got or ()
    part.search = lists["search"]
    for host in dict.fromkeys(lists["insecure"] + lists["block"]):
        part.registries.append(
            RegistryEntry(
                host, host, host in lists["insecure"], host in lists["block"], file=top.path
            )
        )


def _check_alias(at: _Reader, name: str, value: str) -> None:
    if registry_part(name) is not None or _split_suffix(name)[1]:
        raise at.fail(name, "an alias is a short name without a registry, tag or digest")
    if value and (registry_part(value) is None or _split_suffix(value)[1]):
        raise at.fail(name, f"{value!r} must be a full name (registry/repo) without tag or digest")
    for text in (name, value):
        if text:
            _valid(at, name, text if registry_part(text) else f"{DOCKER_HUB}/{text}")


def _valid(at: _Reader, key: str, text: str) -> None:
    try:
        parse_reference(text)
    except UsageError as exc:
        raise at.fail(key, f"{text!r} is not a valid image name") from exc


def _location(at: _Reader, key: str, value: str) -> str:
    value = value.rstrip("/")
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            raise at.fail(key, f"{value!r}: give host[:port][/path] without a scheme")
    return value


def _registry(at: _Reader, path: Path) -> RegistryEntry:
    location = _location(at, "location", at.get("location", str, ""))
    prefix = _location(at, "prefix", at.get("prefix", str, "")) or location
    if not prefix:
        raise at.fail("location", "a [[registry]] needs a location or a prefix")
    if prefix.startswith("*."):
        if "/" in prefix or ":" in prefix or "*" in prefix[1:]:
            raise at.fail("prefix", f"{prefix!r}: a wildcard prefix is *.domain only")
    else:
        if "*" in prefix:
            raise at.fail("prefix", f"{prefix!r}: the wildcard may only start a prefix")
        if not location:
            raise at.fail("location", f"empty for prefix {prefix!r} (allowed for *.domain only)")
        _valid(at, "prefix", prefix if "/" in prefix else f"{prefix}/x")
    if location:
        _valid(at, "location", location if "/" in location else f"{location}/x")
    by_digest = bool(at.get("mirror-by-digest-only", bool, False))
    mirrors: list[Mirror] = []
    for j, table in enumerate(at.get("mirror", list, [])):
        m = _Reader(path, table if isinstance(table, dict) else {}, f"{at.where}mirror[{j}].")
        if not isinstance(table, dict):
            raise m.fail("", "expected [[registry.mirror]] tables")
        where = _location(m, "location", m.get("location", str, ""))
        if not where:
            raise m.fail("location", "a mirror needs a location")
        _valid(m, "location", where if "/" in where else f"{where}/x")
        pfm = m.choice("pull-from-mirror", PULL_FROM_MIRROR)
        if pfm is not None and by_digest:
            raise m.fail("pull-from-mirror", "not allowed with mirror-by-digest-only")
        mirrors.append(
            Mirror(where, bool(m.get("insecure", bool, False)), cast(PullFromMirror, pfm or "all"))
        )
    return RegistryEntry(
        prefix,
        location,
        bool(at.get("insecure", bool, False)),
        bool(at.get("blocked", bool, False)),
        by_digest,
        tuple(mirrors),
        path,
    )
