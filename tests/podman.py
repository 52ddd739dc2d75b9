"""Podman in tests: a private XDG_RUNTIME_DIR for each test, a scratch store that is
removed after it, and nothing left running."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def scratch_podman(tmp_path: Path, full_map: bool) -> Iterator[Callable[..., str]]:
    """`pod(*args, timeout=300)`: podman (vfs, runc, cgroupfs) on its own store under
    tmp_path, asserting exit 0 and returning stdout. Under a single-id map (not full_map)
    podman can store files only with their owners squashed. On exit the store is reset
    and removed."""
    runroot = Path(tempfile.mkdtemp(prefix="prun-"))  # podman: a short path
    podman = [
        "podman", "--root", str(tmp_path / "proot"), "--runroot", str(runroot),
        "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--storage-driver", "vfs",
    ]  # fmt: skip
    if not full_map:
        podman += ["--storage-opt", "vfs.ignore_chown_errors=true"]
    with private_runtime(tmp_path) as env:

        def pod(*args: str, timeout: float = 300) -> str:
            res = subprocess.run(
                [*podman, *args], capture_output=True, text=True, env=env, timeout=timeout
            )
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
            return res.stdout

        try:
            yield pod
        finally:
            # files of subordinate ids (uid 1000 in the image) belong to no one the test
            # runs as: only podman's user namespace can remove them
            subprocess.run([*podman, "system", "reset", "-f"], env=env, capture_output=True)
            subprocess.run(
                [*podman, "unshare", "rm", "-rf", str(tmp_path / "proot"), str(runroot)],
                env=env,
                capture_output=True,
            )
            shutil.rmtree(runroot, ignore_errors=True)


def owners_dropped(listing: str) -> list[str]:
    """A tree listing's lines without their columns 4 and 5 (uid and gid) where they have
    them (`path type mode uid gid ...`; shorter lines, e.g. readlink's, stay as they are):
    what a podman run that squashed owners must still agree on."""
    out = []
    for line in listing.splitlines():
        cols = line.split(" ")
        if len(cols) >= 5:
            del cols[3:5]
        out.append(" ".join(cols))
    return out
