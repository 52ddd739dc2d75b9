"""Where `rsbox-init` is: the static C init (init.c) that setup.py builds into this package.

It sits next to this module in an installed rsbox. A source checkout imports `rootless`
from the checkout (`python -m rootless` and pytest put the current directory first on
sys.path), where no binary is built: there the copy installed in the environment's
site-packages is used (built from the init.c of that install: reinstall after editing).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from rootless.errors import HostError

NAME = "rsbox-init"


def _candidates() -> Iterator[Path]:
    yield Path(__file__).with_name(NAME)
    for entry in sys.path:  # the installed copy when `rootless` comes from a checkout
        yield Path(entry or ".", "rootless", "launch", NAME).absolute()


def init_binary() -> Path:
    """The path of an executable rsbox-init, else HostError."""
    for path in _candidates():
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise HostError(
        f"{NAME} is missing or not executable in {Path(__file__).parent}",
        hint="reinstall rsbox: ./setup.sh venv",
    )
