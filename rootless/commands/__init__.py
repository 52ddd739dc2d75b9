"""The subcommands of `rsbox`, one module per group.

Each module has `register(sub)`, which adds its parsers and sets `handler` on each:
`handler(ns, ctx) -> int` (the exit status). Modules import their libraries inside the
handlers, so that `rsbox run` does not pay for the imports of `rsbox pull`.
To add a group: write the module and name it in `MODULES` (in the order of `--help`).

Only the group of the command asked for is imported and registered when `QUICK` names
it (measured under load: importing and building every group's parsers took 52 ms of
CPU, `exec`'s alone 17 ms). Any other command, `--help` and a mistyped command get the whole tree, so a
group missing from `QUICK` is slower, never wrong (tests/rootless/test_cli.py checks
that every entry is right).
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable

from rootless.errors import UsageError

TYPE_CHECKING = False  # typing, dataclasses and pathlib are not on `exec`'s path
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, NoReturn

    from rootless.config import Settings
    from rootless.launch.prefork import Helper
    from rootless.store import Store

MODULES = (
    "rootless.commands.run",
    "rootless.commands.exec",
    "rootless.commands.containers",
    "rootless.commands.images",
    "rootless.commands.changes",
    "rootless.commands.build",
    "rootless.commands.env",
    "rootless.commands.info",
    "rootless.commands.system",
    "rootless.commands.volumes",
    "rootless.commands.policy",
    "rootless.commands.completion",
)
# command -> the module that registers it, for the commands whose start users feel.
QUICK = {
    "run": "rootless.commands.run",
    "exec": "rootless.commands.exec",
    "start": "rootless.commands.containers",
    "ps": "rootless.commands.containers",
    "stop": "rootless.commands.containers",
    "rm": "rootless.commands.containers",
    "env": "rootless.commands.env",  # a no-op `env build` spent half its time here
    "shell": "rootless.commands.env",
}


class Context:
    """What every handler may need: the store root (--root) and, for `run`, the P1 that
    the CLI forked first thing (see rootless.launch.prefork)."""

    def __init__(
        self,
        root: str | None,
        helper: Helper | None = None,
        image_stores: tuple[str, ...] = (),
        tmp_root: str | None = None,
    ) -> None:
        self.root_arg = root  # as given: `exec` resolves it without pathlib
        self.helper = helper
        self.image_stores = image_stores  # --image-store, in order (rootless.store)
        self.tmp_root = tmp_root  # --tmp-root (rootless.storefs)
        self._settings: Settings | None = None

    @property
    def root(self) -> Path | None:
        from pathlib import Path

        return None if self.root_arg is None else Path(self.root_arg)

    def settings(self) -> Settings:
        """rsbox's config file (rootless.config), read once; flags override it."""
        if self._settings is None:
            from rootless.config import load_settings

            self._settings = load_settings()
        return self._settings

    def store(self) -> Store:
        from pathlib import Path

        from rootless.store import Store, default_root, image_store_list

        settings = self.settings()
        return Store.open(
            self.root or default_root(settings),
            image_stores=image_store_list(
                [Path(p) for p in self.image_stores], settings.image_stores
            ),
            tmp_root=None if self.tmp_root is None else Path(self.tmp_root),
        )


Handler = Callable[[argparse.Namespace, Context], int]


class Formatter(argparse.HelpFormatter):
    """argparse's help layout, with the terminal's width found as shutil finds it but
    without importing shutil (bz2, lzma, fnmatch): argparse makes a formatter for every
    add_argument, so every command paid that import (~2 ms of CPU under load)."""

    def __init__(self, prog: str) -> None:
        text = os.environ.get("COLUMNS", "")
        columns = int(text) if text.isdigit() else 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(1).columns
            except OSError:
                columns = 80
        super().__init__(prog, width=columns - 2)


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 125, one line) instead of exiting with 2."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def build_parser(command: str | None = None) -> Parser:
    """The parser of every group, or of `command`'s group alone when QUICK names it."""
    parser = Parser(
        prog="rsbox", description="Rootless containers for people who do not have root."
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="store directory (default: $RSBOX_ROOT, the config file's [storage] root, "
        "or $XDG_DATA_HOME/rsbox)",
    )
    parser.add_argument(
        "--image-store",
        action="append",
        default=[],
        metavar="DIR",
        help="a read-only store to take images from after the own one (repeatable)",
    )
    parser.add_argument(
        "--tmp-root",
        metavar="DIR",
        help="local directory for writable layers when the store is on a network "
        "filesystem (default: $RSBOX_TMP_ROOT or /var/tmp/rsbox-UID)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    quick = QUICK.get(command or "")
    for name in (quick,) if quick else MODULES:
        importlib.import_module(name).register(sub)
    return parser
