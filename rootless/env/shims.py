"""`rsbox env shims`: `.rsbox/bin/TOOL` in the project for each `[expose] bins` entry,
a shell script that runs TOOL in the project's environment through `rsbox shell`
(so through `rsbox exec`, the sealed way in) from any directory, with its arguments,
streams and exit status unchanged. Each shim names the interpreter and store it was
written with; shims of tools no longer listed are removed (only files rsbox wrote, known
by their second line)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from rootless.env.config import EnvConfig

MARK = "# written by `rsbox env shims`; rewritten and removed by it"


def shim_dir(cfg: EnvConfig) -> Path:
    return cfg.root / ".rsbox" / "bin"


def shim_text(cli: Sequence[str], cfg: EnvConfig, tool: str) -> str:
    argv = [*cli, "shell", "--project", str(cfg.root), "--", tool]
    return f'#!/bin/sh\n{MARK}\nexec {" ".join(shlex.quote(a) for a in argv)} "$@"\n'


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
            return f.read(len(MARK) + 20).splitlines()[1:2] == [MARK.encode()]
    except (OSError, IndexError):
        return False
