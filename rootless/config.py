"""rsbox's own configuration file: defaults for the store and for `rsbox run`.

Files, read in this order, a later one overriding an earlier one key by key:
``/etc/rsbox/config.toml`` (the administrator's), then ``$XDG_CONFIG_HOME/rsbox/config.toml``
(``~/.config/rsbox/config.toml``, the user's). ``$RSBOX_CONFIG`` names one file to read
instead of both (``/dev/null`` for none). Command-line flags and environment variables
(``--root``, ``RSBOX_ROOT``) override the files. A key rsbox does not know, or a value of
the wrong kind, fails in one line naming the file and the key: a typo must not silently
leave a default in place.

    [storage]
    root = "~/containers"                 # the store (default $XDG_DATA_HOME/rsbox)
    image-stores = ["/shared/images"]     # read-only stores searched after your own
                                          # (and after those given with --image-store)

    [run]
    network = "pasta"                     # as --network: pasta[:OPT,...], slirp4netns, none, host
    pull = "missing"                      # as --pull: missing, always, never
    seccomp = "default"                   # as --security-opt seccomp=: a name or a path
    log-driver = "json-file"              # the only one rsbox writes
    log-opts = { max-size = "10m", max-file = 3 }   # as --log-opt (Docker's daemon.json)
    warm-helper = false                   # no per-user helper doing `run` warm
                                          # (rootless.launch.warm; RSBOX_WARM_HELPER=0)

Reading the files costs nothing when there are none: ``tomllib`` is imported only for a
file that exists (this runs on the start path of every `rsbox run`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootless import locations
from rootless.errors import ConfigError, UsageError

HINT = "see 'Configuration' in rsbox's README"
PULL_POLICIES = ("missing", "always", "never")


@dataclass(frozen=True)
class Settings:
    """The defaults the files set (None or empty: rsbox's own default)."""

    root: Path | None = None
    image_stores: tuple[Path, ...] = ()
    network: str | None = None
    pull: str | None = None
    seccomp: str | None = None
    log_opts: tuple[str, ...] = ()  # KEY=VALUE, checked as --log-opt is
    warm_helper: bool = True  # [run] warm-helper (rootless.launch.warm)
    files: tuple[Path, ...] = field(default=(), compare=False)  # the files read, in order


def config_files(env: Mapping[str, str] = os.environ) -> list[Path]:
    """The files to read (those that exist), in order (rootless.locations)."""
    return [Path(p) for p in locations.config_files(env)]


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Read and merge the files (raises ConfigError)."""
    files = config_files(env)
    if not files:
        return Settings()
    merged: dict[str, Any] = {}
    for path in files:
        merged.update(_parse(path))
    return Settings(**merged, files=tuple(files))


def image_stores(env: Mapping[str, str] = os.environ) -> tuple[Path, ...]:
    """The read-only image stores the files name, in search order. For the `--image-store`
    flag (branch `stores`: ``rootless.store.image_store_list(given, configured)``): the
    stores given on the command line are searched first, then these."""
    return load_settings(env).image_stores


class _Table:
    def __init__(self, path: Path, doc: Mapping[str, Any], where: str) -> None:
        self.path, self.doc, self.where = path, doc, where

    def fail(self, key: str, what: str) -> ConfigError:
        name = f"{self.where}{key}".rstrip(".")
        return ConfigError(f"{self.path}: {name}: {what}", hint=HINT)

    def check_keys(self, known: tuple[str, ...]) -> None:
        for key in self.doc:
            if key not in known:
                raise self.fail(key, f"unknown key (known here: {', '.join(known)})")

    def text(self, key: str, choices: tuple[str, ...] = ()) -> str | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def to_path(self, key: str, value: object) -> Path:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a path, got {value!r}")
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise self.fail(key, f"{value!r} is not an absolute path (~ is allowed)")
        return path

    def table(self, key: str) -> _Table:
        value = self.doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {value!r}")
        return _Table(self.path, value, f"{self.where}{key}.")


def _parse(path: Path) -> dict[str, Any]:
    """The settings one file sets, checked."""
    import tomllib

    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint=HINT) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint=HINT) from exc
    top = _Table(path, doc, "")
    top.check_keys(("storage", "run"))
    out: dict[str, Any] = {}
    storage = top.table("storage")
    storage.check_keys(("root", "image-stores"))
    if "root" in storage.doc:
        out["root"] = storage.to_path("root", storage.doc["root"])
    if "image-stores" in storage.doc:
        stores = storage.doc["image-stores"]
        if not isinstance(stores, list):
            raise storage.fail("image-stores", f"expected a list of paths, got {stores!r}")
        out["image_stores"] = tuple(storage.to_path("image-stores", s) for s in stores)
    run = top.table("run")
    run.check_keys(("network", "pull", "seccomp", "log-driver", "log-opts", "warm-helper"))
    if "warm-helper" in run.doc:
        if not isinstance(run.doc["warm-helper"], bool):
            raise run.fail("warm-helper", f"expected true or false, got {run.doc['warm-helper']!r}")
        out["warm_helper"] = run.doc["warm-helper"]
    if (network := run.text("network")) is not None:
        from rootless.runspec import NETWORKS, parse_network

        try:
            mode, _ = parse_network(network)
        except UsageError as exc:
            raise run.fail("network", exc.message) from exc
        if mode not in NETWORKS:
            raise run.fail("network", f"{mode!r} is not one of {', '.join(sorted(NETWORKS))}")
        out["network"] = network
    if (pull := run.text("pull", PULL_POLICIES)) is not None:
        out["pull"] = pull
    if (seccomp := run.text("seccomp")) is not None:
        out["seccomp"] = seccomp
    run.text("log-driver", ("json-file",))
    opts = run.table("log-opts")
    items = []
    for key, value in opts.doc.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise opts.fail(key, f"expected a string or a number, got {value!r}")
        items.append(f"{key}={value}")
    if items:
        from rootless.lifecycle import LogOptions

        try:
            LogOptions.parse(items)
        except UsageError as exc:
            raise opts.fail("", exc.message.replace("--log-opt ", "")) from exc
        out["log_opts"] = tuple(items)
    return out
