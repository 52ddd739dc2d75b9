"""`rsbox.toml`: a project's environment, parsed once into an `EnvConfig`.

The directory that holds `rsbox.toml` is the project (`find_project` walks up from the
working directory, as git finds `.git`). Every key the file may hold is listed in `KEYS`;
an unknown table or key, or a value of the wrong kind, fails in one line naming the file,
the line and the key (exit 125, `ConfigError`): a typo must not silently do nothing.
tomllib reports no positions for values it parsed, so `key_line` finds the key's line in
the text itself (the table header, then the first `key =` below it).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootless.env.enter import CONFIG_NAME, DEVCONTAINER_NAME
from rootless.env.enter import find_project as nearest_project
from rootless.errors import ConfigError

FILENAME = CONFIG_NAME  # the names and the walk up are the lean entry's (enter.py)
DEVCONTAINER = DEVCONTAINER_NAME
KEYS: Mapping[str, tuple[str, ...]] = {
    "env": ("name", "base", "containerfile", "auto_rebuild"),
    "build": ("apt", "run", "pip", "npm"),
    "run": (
        "env",
        "home",
        "share",
        "mounts",
        "network",
        "ssh_agent",
        "host_ca",
        "on_create",
        "idle_stop",
    ),
    "expose": ("bins",),
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_DURATION = re.compile(r"(\d+)([smh])")
_SECONDS = {"s": 1, "m": 60, "h": 3600}
_BIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class Pip:
    python: str  # the interpreter inside the image that runs `-m pip install`
    requirements: str  # a file of the project, relative to its root


@dataclass(frozen=True)
class HostPath:
    """A host path bound into the environment (`share` at the same place under the
    environment's home, `mounts` at the same absolute path unless a devcontainer.json
    mount names another `target`)."""

    path: Path
    readonly: bool
    target: Path | None = None

    @property
    def inside(self) -> Path:
        return self.target or self.path


@dataclass(frozen=True)
class EnvConfig:
    root: Path  # the project directory (holds rsbox.toml)
    name: str
    base: str | None = None
    containerfile: Path | None = None
    auto_rebuild: bool = False  # an entry after a [build] edit rebuilds instead of refusing
    apt: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    pip: Pip | None = None
    npm_global: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    home: str = "isolated"  # isolated | host | an absolute directory
    share: tuple[HostPath, ...] = ()
    mounts: tuple[HostPath, ...] = ()
    network: str = "host"  # host | private
    ssh_agent: bool = False
    host_ca: bool = True
    on_create: str | None = None
    idle_stop: int | None = None  # seconds; None: never
    bins: tuple[str, ...] = ()
    # What only .devcontainer/devcontainer.json sets (rootless.env.devcontainer):
    file: str = FILENAME  # the config file, relative to root
    context: Path | None = None  # the containerfile's build context (default: root)
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None  # the containerfile's stage to build
    ports: tuple[int, ...] = ()  # published through pasta (network "private")
    on_start: str | None = None  # after every start of the container, as on_create
    ignored: tuple[str, ...] = field(default=(), compare=False)  # keys rsbox does not use

    @property
    def path(self) -> Path:
        return self.root / self.file

    @property
    def image(self) -> str:
        return f"localhost/rsbox-env-{self.name}:latest"

    @property
    def container(self) -> str:
        return f"rsbox-env-{self.name}"


def find_project(start: Path) -> Path:
    """The nearest directory at or above `start` that holds rsbox.toml or
    .devcontainer/devcontainer.json (rsbox.toml wins where a directory has both)."""
    root = nearest_project(str(start))
    if root is not None:
        return Path(root)
    raise ConfigError(
        f"no {FILENAME} or {DEVCONTAINER} in {start.absolute()} or any directory above it",
        hint="run `rsbox env init` in the project's directory",
    )


def key_line(text: str, table: str, key: str | None = None) -> int | None:
    """The 1-based line of `[table]`'s header, or of `key = ...` inside that table."""
    current = None
    header = re.compile(r"\s*\[\s*([A-Za-z0-9_.\"-]+)\s*\]\s*(#.*)?")
    for number, line in enumerate(text.splitlines(), 1):
        m = header.fullmatch(line)
        if m:
            current = m.group(1).strip('"')
            if current == table and key is None:
                return number
            continue
        if current == table and key and re.match(rf"\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return None


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, table: str, key: str | None, what: str, hint: str) -> ConfigError:
        line = key_line(self.text, table, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f"[{table}]" + (f" {key}" if key else "")
        return ConfigError(f"{where}: {name}: {what}", hint=hint)

    def string(self, table: str, key: str, value: object, hint: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(table, key, f"expected a non-empty string, got {value!r}", hint)
        return value

    def strings(self, table: str, key: str, value: object, hint: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(table, key, f"expected a list of strings, got {value!r}", hint)
        return tuple(value)

    def boolean(self, table: str, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(
                table, key, f"expected true or false, got {value!r}", "write true or false"
            )
        return value


def parse_config(root: Path, text: str) -> EnvConfig:
    """`text` (rsbox.toml of the project at `root`) -> EnvConfig, or one ConfigError."""
    path = root / FILENAME
    r = _Reader(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", hint="see the TOML syntax at toml.io") from exc
    for table, body in doc.items():
        if table not in KEYS:
            raise r.fail(table, None, "unknown table", f"tables: {', '.join(KEYS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {table} must be a table", hint=f"write [{table}]")
        for key in body:
            if key not in KEYS[table]:
                raise r.fail(table, key, "unknown key", f"[{table}] takes {', '.join(KEYS[table])}")
    e: dict[str, Any] = doc.get("env", {})
    b: dict[str, Any] = doc.get("build", {})
    u: dict[str, Any] = doc.get("run", {})
    x: dict[str, Any] = doc.get("expose", {})
    cfg: dict[str, Any] = {"root": root}

    if "name" in e:
        name = r.string("env", "name", e["name"], "lower-case letters, digits, . _ -")
        if not _NAME.fullmatch(name):
            raise r.fail(
                "env", "name", f"invalid name {name!r}", "lower-case letters, digits, . _ -"
            )
        cfg["name"] = name
    else:
        cfg["name"] = default_name(root)
    if "base" in e:
        cfg["base"] = r.string("env", "base", e["base"], "an image, e.g. debian:12")
    if "containerfile" in e:
        cf = r.string("env", "containerfile", e["containerfile"], "a file of the project")
        if b:
            raise r.fail(
                "env",
                "containerfile",
                "a containerfile and [build] steps together",
                "put the steps into the Containerfile, or drop containerfile",
            )
        cfg["containerfile"] = root / cf
    if "auto_rebuild" in e:
        cfg["auto_rebuild"] = r.boolean("env", "auto_rebuild", e["auto_rebuild"])
    if ("base" in cfg) == ("containerfile" in cfg):
        raise r.fail(
            "env",
            "containerfile" if "base" in cfg else None,
            "needs exactly one of base and containerfile",
            'e.g. base = "docker.io/library/debian:12"',
        )

    for key in ("apt", "run"):
        if key in b:
            cfg[key] = r.strings("build", key, b[key], f'{key} = ["...", "..."]')
    if "pip" in b:
        pip = b["pip"]
        hint = 'pip = { python = "/opt/venv/bin/python", requirements = "requirements.txt" }'
        if not isinstance(pip, dict) or set(pip) != {"python", "requirements"}:
            raise r.fail("build", "pip", f"expected python and requirements, got {pip!r}", hint)
        cfg["pip"] = Pip(
            r.string("build", "pip", pip["python"], hint),
            r.string("build", "pip", pip["requirements"], hint),
        )
    if "npm" in b:
        npm = b["npm"]
        hint = 'npm = { global = ["typescript@5.4.5"] }'
        if not isinstance(npm, dict) or set(npm) != {"global"}:
            raise r.fail("build", "npm", f"expected global, got {npm!r}", hint)
        cfg["npm_global"] = r.strings("build", "npm", npm["global"], hint)

    if "env" in u:
        env = u["env"]
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
        ):
            raise r.fail(
                "run", "env", f"expected NAME = string pairs, got {env!r}", 'env = { A = "b" }'
            )
        cfg["env"] = dict(env)
    if "home" in u:
        home = r.string("run", "home", u["home"], "isolated, host or an absolute directory")
        if home not in ("isolated", "host") and not home.startswith(("/", "~")):
            raise r.fail("run", "home", f"invalid home {home!r}", "isolated, host or a directory")
        cfg["home"] = str(Path(home).expanduser()) if home.startswith("~") else home
    for key in ("share", "mounts"):
        if key in u:
            items = r.strings("run", key, u[key], f'{key} = ["/path", "/other:ro"]')
            cfg[key] = tuple(_host_path(r, key, item) for item in items)
    if "network" in u:
        net = r.string("run", "network", u["network"], "host or private")
        if net not in ("host", "private"):
            raise r.fail("run", "network", f"invalid network {net!r}", "host or private")
        cfg["network"] = net
    for key in ("ssh_agent", "host_ca"):
        if key in u:
            cfg[key] = r.boolean("run", key, u[key])
    if "on_create" in u:
        cfg["on_create"] = r.string("run", "on_create", u["on_create"], "a shell command")
    if "idle_stop" in u:
        cfg["idle_stop"] = _duration(r, u["idle_stop"])
    if "bins" in x:
        bins = r.strings("expose", "bins", x["bins"], 'bins = ["python", "jq"]')
        for name in bins:
            if not _BIN.fullmatch(name):
                raise r.fail("expose", "bins", f"invalid command name {name!r}", "a file name")
        cfg["bins"] = bins
    return EnvConfig(**cfg)


def _host_path(r: _Reader, key: str, item: str) -> HostPath:
    text, sep, opt = item.rpartition(":")
    if not sep or opt not in ("ro", "rw"):
        text, opt = item, "rw"
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise r.fail("run", key, f"{item!r} is not an absolute path", "write /path or ~/path[:ro]")
    return HostPath(path, opt == "ro")


def _duration(r: _Reader, value: object) -> int | None:
    hint = 'a number with s, m or h ("30m"), or "never"'
    if value == "never":
        return None
    m = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) == 0:
        raise r.fail("run", "idle_stop", f"invalid duration {value!r}", hint)
    return int(m.group(1)) * _SECONDS[m.group(2)]


def default_name(root: Path) -> str:
    """The directory's name, made fit for an image name (lower case, `-` for the rest)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", root.name.lower()).strip("-._")
    return name or "project"


def load_config(start: Path) -> EnvConfig:
    from rootless.env.trust import config_file

    root = find_project(start)
    name = FILENAME if config_file(str(root)) == str(root / FILENAME) else DEVCONTAINER
    try:
        text = (root / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {root / name}: {exc}", hint="check the file") from exc
    if name == DEVCONTAINER:
        from rootless.env.devcontainer import parse_devcontainer

        return parse_devcontainer(root, text)
    return parse_config(root, text)


def template(name: str, base: str) -> str:
    """What `rsbox env init` writes: the keys that matter first, the rest commented out
    with their defaults, so the file documents itself."""
    return f"""\
# rsbox.toml: this directory's environment (see `rsbox env --help` and the README,
# "Per-project environments"). Edit, then `rsbox env trust` and `rsbox env build`.
[env]
name = "{name}"  # the image is localhost/rsbox-env-{name}:latest
base = "{base}"  # any image rsbox can pull or has; rsbox.lock records what it was
# containerfile = "Containerfile"  # build this file instead of base + [build]
# auto_rebuild = false  # true: an entry after a [build] edit rebuilds instead of refusing

[build]  # each entry a cached layer, in this order: apt, run, pip, npm
# apt = ["python3-venv", "jq"]
# run = ["python3 -m venv /opt/venv"]
# pip = {{ python = "/opt/venv/bin/python", requirements = "requirements.txt" }}
# npm = {{ global = ["typescript@5.4.5"] }}

[run]  # the long-running container (rsbox env up; rsbox shell)
# env = {{ PATH = "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin" }}
# mounts = []  # host paths, bound at the same path
# network = "host"  # or "private"
# host_ca = true  # the host's CA bundle for the build's RUN steps and in the container

[expose]
# bins = ["python", "jq"]
"""
