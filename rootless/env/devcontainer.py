""".devcontainer/devcontainer.json: the subset of the Dev Containers format rsbox runs,
parsed once into the same EnvConfig rsbox.toml gives (read only where a project has no
rsbox.toml).

The file is JSON with comments, as VS Code writes it: `//` and `/* */` comments and
trailing commas are dropped outside strings (`strip_jsonc`, which keeps every newline so
that the JSON error's line is the file's). What each key becomes:

- `image` -> [env] base; `build.dockerfile` (+ `build.context`, `build.args`,
  `build.target`; the older top-level `dockerFile`/`context` too), relative to the
  .devcontainer directory as the spec says -> a containerfile build.
- `containerEnv` and `remoteEnv` -> [run] env (remoteEnv wins; a null value drops it).
  Both are set on the container: rsbox has no separate "remote" process.
- `mounts`: bind mounts, as "source=...,target=...,type=bind[,readonly]" or as objects;
  any other type (volume, tmpfs) is refused.
- `onCreateCommand`, `updateContentCommand`, `postCreateCommand` -> on_create (run once
  per container, in that order); `postStartCommand` -> on_start (after every start).
  A string runs through /bin/sh, an array as argv, an object's entries one after the
  other in the file's order (VS Code runs them in parallel), stopping at the first failure.
- `forwardPorts` -> the container gets a private network (pasta) with each port published
  on the host at the same number (as `rsbox run -p N:N`); "localhost:N" is N, other hosts are refused.
- `remoteUser`, `containerUser`, `updateRemoteUserUID`: accepted and not used. rsbox
  enters as you, so files made in the project or a mount are yours on the host (what
  updateRemoteUserUID tries to approximate).
- `workspaceFolder`, `workspaceMount`: accepted and not used. The project is bound at its
  host path and commands start there, so paths printed inside work outside;
  `${containerWorkspaceFolder}` is that host path.
- `features` is refused: rsbox does not run devcontainer features (they are install
  scripts fetched at build time); put the tools into the Dockerfile.
- Any other key (VS Code's files carry `customizations`, `name`, `runArgs`, ...) is
  ignored with one warning line at `rsbox env build` listing them: refusing them would
  make most real files unusable, and silence would hide a `runArgs` that matters.

Variables: `${localEnv:NAME}` (`${localEnv:NAME:default}`), `${localWorkspaceFolder}`,
`${containerWorkspaceFolder}` and their `Basename` forms are replaced in every string;
`${containerEnv:NAME}` is refused (the image's environment is not known before the build).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rootless.env.config import DEVCONTAINER, EnvConfig, HostPath, default_name
from rootless.errors import ConfigError

#: Keys whose meaning rsbox keeps (above); every other key is reported as ignored.
USED = frozenset(
    {
        "image",
        "build",
        "dockerFile",
        "context",
        "containerEnv",
        "remoteEnv",
        "mounts",
        "onCreateCommand",
        "updateContentCommand",
        "postCreateCommand",
        "postStartCommand",
        "forwardPorts",
        "remoteUser",
        "containerUser",
        "updateRemoteUserUID",
        "workspaceFolder",
        "workspaceMount",
        "features",
        "$schema",
    }
)
_BUILD_KEYS = frozenset({"dockerfile", "context", "args", "target"})
_VARIABLE = re.compile(r"\$\{([A-Za-z]+)(?::([^}:]*)(?::([^}]*))?)?\}")


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas -> JSON. Strings are copied as they are
    (a `//` inside a URL stays); a comment becomes spaces, its newlines kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            end = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
        elif c in "]}":
            # a trailing comma: the last non-blank character written before the bracket
            k = len(out) - 1
            while k >= 0 and out[k].strip() == "":
                k -= 1
            if k >= 0 and out[k] == ",":
                out[k] = " "
            out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / DEVCONTAINER

    def fail(self, key: str, what: str, hint: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {what}", hint=hint)

    def expand(self, key: str, value: str) -> str:
        def one(m: re.Match[str]) -> str:
            kind, arg, default = m.group(1), m.group(2), m.group(3)
            if kind in ("localWorkspaceFolder", "containerWorkspaceFolder"):
                return str(self.root)
            if kind in ("localWorkspaceFolderBasename", "containerWorkspaceFolderBasename"):
                return self.root.name
            if kind == "localEnv" and arg:
                return os.environ.get(arg, default or "")
            if kind == "containerEnv":
                raise self.fail(
                    key,
                    f"{m.group(0)} is not supported",
                    "rsbox sets the environment before the image is known; write the value out",
                )
            return m.group(0)  # not a devcontainer variable: a shell's ${NAME} stays

        return _VARIABLE.sub(one, value)

    def string(self, key: str, value: object, hint: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}", hint)
        return self.expand(key, value)

    def command(self, key: str, value: object) -> list[str]:
        """A lifecycle command (string, array or object of those) -> shell commands."""
        hint = 'a string ("npm ci"), an array (["npm", "ci"]) or an object of those'
        if isinstance(value, str):
            return [self.expand(key, value)] if value.strip() else []
        if isinstance(value, list):
            if not value or not all(isinstance(v, str) for v in value):
                raise self.fail(key, f"expected an array of strings, got {value!r}", hint)
            return [shlex.join(self.expand(key, v) for v in value)]
        if isinstance(value, dict):
            cmds: list[str] = []
            for name, sub in value.items():
                if isinstance(sub, dict):
                    raise self.fail(f"{key}.{name}", "an object inside an object", hint)
                cmds += self.command(f"{key}.{name}", sub)
            return cmds
        raise self.fail(key, f"expected a command, got {value!r}", hint)

    def environment(self, key: str, value: object) -> dict[str, str | None]:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and k and "=" not in k and (v is None or isinstance(v, str))
            for k, v in value.items()
        ):
            raise self.fail(key, f"expected NAME: string pairs, got {value!r}", '{"A": "b"}')
        return {k: None if v is None else self.expand(f"{key}.{k}", v) for k, v in value.items()}

    def mount(self, value: object) -> HostPath:
        hint = '"source=/host/path,target=/path,type=bind[,readonly]" or the same as an object'
        if isinstance(value, str):
            fields: dict[str, object] = {}
            for part in value.split(","):
                name, eq, v = part.partition("=")
                fields[name.strip()] = v.strip() if eq else True
        elif isinstance(value, dict):
            fields = dict(value)
        else:
            raise self.fail("mounts", f"expected a string or an object, got {value!r}", hint)
        kind = fields.get("type", "bind")
        if kind != "bind":
            raise self.fail(
                "mounts",
                f"{value!r}: only bind mounts are supported (type={kind})",
                "bind a host directory, or keep the data in the project",
            )
        source = fields.get("source", fields.get("src"))
        target = fields.get("target", fields.get("destination", fields.get("dst")))
        if not isinstance(source, str) or not isinstance(target, str):
            raise self.fail("mounts", f"{value!r}: needs a source and a target", hint)
        src = Path(self.expand("mounts", source)).expanduser()
        dst = Path(self.expand("mounts", target))
        if not src.is_absolute() or not dst.is_absolute():
            raise self.fail("mounts", f"{value!r}: source and target must be absolute", hint)
        ro = fields.get("readonly", fields.get("ro", False))
        return HostPath(src, ro in (True, "true", "1"), None if dst == src else dst)

    def port(self, value: object) -> int:
        hint = 'a port number (3000) or "localhost:3000"'
        text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        host, sep, number = text.rpartition(":")
        if (sep and host not in ("localhost", "127.0.0.1")) or not number.isdigit():
            raise self.fail("forwardPorts", f"cannot forward {value!r}", hint)
        port = int(number)
        if not 0 < port < 65536:
            raise self.fail("forwardPorts", f"{value!r} is not a port", hint)
        return port


def _and(cmds: list[str]) -> str | None:
    """Shell commands -> one that runs them in order and stops at the first failure."""
    if len(cmds) <= 1:
        return cmds[0] if cmds else None
    return " && ".join(f"(\n{c}\n)" for c in cmds)


def parse_devcontainer(root: Path, text: str) -> EnvConfig:
    """`text` (the devcontainer.json of the project at `root`) -> EnvConfig, or one
    ConfigError naming the file and the key."""
    r = _Reader(root)
    try:
        doc = json.loads(strip_jsonc(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{r.path}:{exc.lineno}: {exc.msg}", hint="JSON with // comments, as VS Code writes"
        ) from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{r.path}: expected an object", hint='{ "image": "debian:12" }')
    if doc.get("features"):
        raise r.fail(
            "features",
            "rsbox does not run devcontainer features",
            "install the tools in a Dockerfile (build.dockerfile) instead",
        )
    cfg: dict[str, Any] = {"root": root, "name": default_name(root), "file": DEVCONTAINER}
    here = root / ".devcontainer"

    build: Mapping[str, Any] = {}
    if "build" in doc:
        if not isinstance(doc["build"], dict):
            raise r.fail("build", "expected an object", '"build": {"dockerfile": "Dockerfile"}')
        build = doc["build"]
    elif "dockerFile" in doc:  # the format's older spelling
        build = {"dockerfile": doc["dockerFile"], "context": doc.get("context", ".")}
    if "image" in doc and build:
        raise r.fail("image", "image and build together", "keep one of image and build")
    if "image" in doc:
        cfg["base"] = r.string("image", doc["image"], '"image": "debian:12"')
    elif build:
        dockerfile = r.string("build.dockerfile", build.get("dockerfile"), '"Dockerfile"')
        cfg["containerfile"] = here / dockerfile
        context = r.string("build.context", build.get("context", "."), '".."')
        cfg["context"] = Path(os.path.normpath(here / context))
        if "args" in build:
            args = r.environment("build.args", build["args"])
            cfg["build_args"] = {k: v for k, v in args.items() if v is not None}
        if "target" in build:
            cfg["target"] = r.string("build.target", build["target"], "a stage's name")
    else:
        raise r.fail(
            "image",
            "needs image or build.dockerfile" + (" (dockerComposeFile is not supported)"
                                                 if "dockerComposeFile" in doc else ""),
            '"image": "mcr.microsoft.com/devcontainers/base:debian"',
        )  # fmt: skip

    env: dict[str, str | None] = {}
    for key in ("containerEnv", "remoteEnv"):
        if key in doc:
            env.update(r.environment(key, doc[key]))
    cfg["env"] = {k: v for k, v in env.items() if v is not None}
    if "mounts" in doc:
        if not isinstance(doc["mounts"], list):
            raise r.fail("mounts", "expected an array", '["source=/a,target=/a,type=bind"]')
        cfg["mounts"] = tuple(r.mount(m) for m in doc["mounts"])
    create: list[str] = []
    for key in ("onCreateCommand", "updateContentCommand", "postCreateCommand"):
        if key in doc:
            create += r.command(key, doc[key])
    cfg["on_create"] = _and(create)
    if "postStartCommand" in doc:
        cfg["on_start"] = _and(r.command("postStartCommand", doc["postStartCommand"]))
    if "forwardPorts" in doc:
        if not isinstance(doc["forwardPorts"], list):
            raise r.fail("forwardPorts", "expected an array", "[3000, 8080]")
        ports = tuple(dict.fromkeys(r.port(p) for p in doc["forwardPorts"]))
        if ports:
            cfg["ports"], cfg["network"] = ports, "private"
    cfg["ignored"] = tuple(sorted(k for k in doc if k not in USED)) + tuple(
        sorted(f"build.{k}" for k in build if k not in _BUILD_KEYS)
    )
    return EnvConfig(**cfg)
