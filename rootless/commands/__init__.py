"""The subcommands of `rsbox`, one module per group.

Each module has `register(sub)`, which adds its parsers and sets `handler` on each:
`handler(ns, ctx) -> int` (the exit status). Modules import their libraries inside the
handlers, so that `rsbox run` does not pay for the imports of `rsbox pull`.
To add a group: write the module and name it in `MODULES` (in the order of `--help`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rootless.errors import UsageError

if TYPE_CHECKING:
    from rootless.config import Settings
    from rootless.launch.prefork import Helper
    from rootless.store import Store

MODULES = (
    "rootless.commands.run",
    "rootless.commands.containers",
    "rootless.commands.images",
    "rootless.commands.changes",
    "rootless.commands.build",
    "rootless.commands.info",
    "rootless.commands.system",
    "rootless.commands.volumes",
    "rootless.commands.policy",
    "rootless.commands.completion",
)


@dataclass
class Context:
    """What every handler may need: the store root (--root) and, for `run`, the P1 that
    the CLI forked first thing (see rootless.launch.prefork)."""

    root: Path | None
    helper: Helper | None = None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """rsbox's config file (rootless.config), read once; flags override it."""
        if self._settings is None:
            from rootless.config import load_settings

            self._settings = load_settings()
        return self._settings

    def store(self) -> Store:
        from rootless.store import Store, default_root

        return Store.open(self.root or default_root(self.settings()))


Handler = Callable[[argparse.Namespace, Context], int]


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 125, one line) instead of exiting with 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def build_parser() -> Parser:
    parser = Parser(
        prog="rsbox", description="Rootless containers for people who do not have root."
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="store directory (default: $RSBOX_ROOT, the config file's [storage] root, "
        "or $XDG_DATA_HOME/rsbox)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in MODULES:
        importlib.import_module(name).register(sub)
    return parser
