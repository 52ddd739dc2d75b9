"""Where `rsbox-init` is: the static C init (init.c) that setup.py builds into this package,
beside this module, or in a checkout the environment's installed copy (fs.built)."""

from __future__ import annotations

import os
from pathlib import Path

from fs.built import installed_copies
from rootless.errors import HostError

NAME = "rsbox-init"


def init_binary() -> Path:
    """The path of an executable rsbox-init, else HostError."""
    for path in installed_copies(os.path.dirname(__file__), "rootless/launch", [NAME]):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return Path(path)
    raise HostError(
        f"{NAME} is missing or not executable in {Path(__file__).parent}",
        hint="reinstall rsbox: ./setup.sh venv",
    )
