"""`rsbox env shims`: `.rsbox/bin/TOOL` in the project for each `[expose] bins` entry,
a small Python script that runs TOOL in the project's environment from any directory,
with its arguments, streams and exit status unchanged: through the lean entry
(rootless.env.enter) when the project's container is warm, else through `rsbox shell
--project` (which builds, starts or explains). Each shim names the interpreter, the
package's directory and the store it was written with; shims of tools no longer listed
are removed (only files rsbox wrote, known by their second line).

The interpreter runs with -IS (isolated, no site): no PYTHON* variable of the caller's
and no site-packages scan, ~1/3 of a bare start; the package's directory is put on the
path by the shim itself. A kernel reads one argument after the interpreter's path in a
`#!` line, up to 255 bytes: an interpreter path with spaces or longer than that goes
through /bin/sh.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from rootless.env.config import EnvConfig

MARK = "# written by `rsbox env shims`; rewritten and removed by it"


def shim_dir(cfg: EnvConfig) -> Path:
    return cfg.root / ".rsbox" / "bin"


def shim_text(cli: Sequence[str], cfg: EnvConfig, tool: str) -> str:
    import rootless

    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(rootless.__file__)))
    root_arg = cli[cli.index("--root") + 1] if "--root" in cli else None
    python = (
        "import sys\n"
        f"sys.path.insert(0, {package_dir!r})\n"
        "from rootless.env.enter import shim\n"
        f"shim({str(cfg.root)!r}, {root_arg!r}, {list(cli)!r}, {tool!r})\n"
    )
    exe = cli[0]
    if len(exe) < 240 and not any(c.isspace() for c in exe):
        return f"#!{exe} -IS\n{MARK}\n{python}"
    code = shlex.quote(python.replace("\n", "; "))
    return f'#!/bin/sh\n{MARK}\nexec {shlex.quote(exe)} -IS -c {code} "$@"\n'


def write_shims(cli: Sequence[str], cfg: EnvConfig) -> list[Path]:
    from rootless.lifecycle import atomic_write_bytes

    d = shim_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        if old.name not in cfg.bins and _ours(old):
            old.unlink()
    out = []
    for tool in cfg.bins:
        path = d / tool
        atomic_write_bytes(path, shim_text(cli, cfg, tool).encode(), mode=0o755)
        out.append(path)
    return out


def _ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(512 + len(MARK)).splitlines()[1:2] == [MARK.encode()]
    except (OSError, IndexError):
        return False
