"""Podman in tests: a private XDG_RUNTIME_DIR for each test, and nothing left running."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def private_runtime(tmp_path: Path, **extra: str) -> Iterator[dict[str, str]]:
    """The environment for podman commands (HOME and XDG_RUNTIME_DIR under tmp_path, plus
    `extra`). On exit, the pause process podman (and `podman unshare`) started for this
    runtime directory is killed: it would otherwise outlive the test."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(xdg), **extra}
    try:
        yield env
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((xdg / "libpod/tmp/pause.pid").read_text()), signal.SIGKILL)
