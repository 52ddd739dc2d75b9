"""Where a file that setup.py builds into the package is, one rule for the three of them:
rootless's C extension (rootless.syscalls), rsbox-init (rootless.launch.initbin) and the
libfuse shim (fs.kcache).

An installed rsbox has it beside the module that needs it. A source checkout imports its
packages from the checkout (`python -m rootless` and pytest put the current directory
first on sys.path), where nothing is built: there the copy installed in the environment
is used, found under a sys.path entry or, under `python -S` (the environment shims, where
site added nothing), in the interpreter's own environment's site-packages (reinstall
after editing a C file: ./setup.sh venv). Imports nothing but os and sys: the shims'
lean path may ask."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def installed_copies(beside: str, package: str, names: Iterable[str]) -> list[str]:
    """The paths to try, in order, for `names` built into `package` (a directory of the
    install, such as "rootless/launch"): `beside` (the directory of the module asking),
    then under each sys.path entry, then the environment of the interpreter (VENV/bin/
    python: under -S sys.prefix is not yet the venv's) and sys.prefix."""
    site = os.path.join(
        "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"
    )
    prefixes = (os.path.dirname(os.path.dirname(sys.executable)), sys.prefix)
    dirs = [beside]
    dirs += [os.path.join(os.path.abspath(e or "."), package) for e in sys.path]
    dirs += [os.path.join(p, site, package) for p in prefixes]
    return [os.path.join(d, n) for d in dict.fromkeys(dirs) for n in names]
