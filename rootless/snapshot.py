"""A container's filesystem read from outside, for commit, diff, export and cp.

- `container_stack`: the image's layers and the container's upper, for fs.changes.
- `mount_points`: what the launcher creates in the upper when the image lacks it (the
  targets of /proc, /sys, /dev, /etc/hosts, /etc/hostname, /etc/resolv.conf and of the
  container's volumes). Docker keeps these in an "init" layer that no commit, diff or
  export of the container's changes includes; fs.changes leaves them out when they are
  still the empty placeholders the launcher made.
- `settled`: while its block runs, what the upper holds on disk is what the container
  wrote. A stopped container cannot start meanwhile (we hold its monitor lock, as
  `rsbox rm` does). A running one has had the kernel write back what it caches for its
  root filesystem (rootless.launch.enter.sync_root, from inside the container: dirty
  pages of files still open go to the FUSE server, which writes the upper); with
  `pause`, and where the container has a cgroup freezer of its own (a delegated cgroup
  v2 tree), it is frozen first and thawed afterwards, as `docker commit` pauses. Where
  there is no freezer (hybrid hierarchies such as this project's CI) a running
  container keeps running: a file it writes during the read may be caught half-way,
  exactly as with `docker commit --pause=false`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fs.changes import Stack
from rootless.errors import ContainerError
from rootless.lifecycle import CONFIG_NAME, exclusive, read_json
from rootless.store import Container, Store

# The launcher's mount targets (rootless.launch.mountplan), relative to the root.
LAUNCHER_PATHS = frozenset({"proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf"})


def container_stack(store: Store, c: Container) -> Stack:
    image = store.resolve_image(c.image_id)
    try:
        return Stack.of(image.layers, c.upper)
    except OSError as exc:
        raise ContainerError(
            f"cannot read the layers of container {c.name}: {exc.strerror}",
            hint="the store is damaged; pull or load the image again",
        ) from exc


def mount_points(c: Container) -> frozenset[str]:
    spec = read_json(c.dir / CONFIG_NAME).get("spec") or {}
    volumes = spec.get("volumes") if isinstance(spec, dict) else None
    targets = {str(v[1]).strip("/") for v in volumes or () if isinstance(v, list) and len(v) >= 2}
    return LAUNCHER_PATHS | frozenset(t for t in targets if t)


def _wait_frozen(freeze: Path, deadline: float) -> None:
    events = freeze.with_name("cgroup.events")
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if "frozen 1" in events.read_text():
                return
        time.sleep(0.01)


@contextlib.contextmanager
def settled(c: Container, *, pause: bool = False) -> Iterator[bool]:
    """See the module docstring. Yields whether the container is running."""
    from rootless.launch.enter import run_inside, running_pid1, sync_root
    from rootless.stats import container_freezer

    lock = contextlib.ExitStack()
    try:
        lock.enter_context(exclusive(c.id))
    except ContainerError:
        pass  # its monitor holds the lock: it is running
    else:
        with lock:
            yield False
        return
    pid1 = running_pid1(c.id)
    if pid1 is None:
        raise ContainerError(
            f"container {c.name} is starting or stopping", hint="try again in a moment"
        )
    found = container_freezer(c.id, pid1) if pause else None
    freeze = found if isinstance(found, Path) else None  # no freezer: sync without one
    if freeze is not None:
        try:
            freeze.write_text("1")
        except OSError:
            freeze = None
        else:
            _wait_frozen(freeze, time.monotonic() + 2)
    try:
        run_inside(pid1, c.dir, sync_root)
        yield True
    finally:
        if freeze is not None:
            with contextlib.suppress(OSError):
                freeze.write_text("0")


def export(store: Store, c: Container, out: BinaryIO) -> None:
    """`rsbox export`: the container's whole filesystem as it sees it, as a tar stream
    (the launcher's mount points included, as Docker's export has them)."""
    from fs.changes import merged_entries
    from rootless.images.layer_tar import TarWriter

    with settled(c):
        stack = container_stack(store, c)
        writer = TarWriter(out)
        for entry in merged_entries(stack):
            writer.add(entry)
        writer.close()
