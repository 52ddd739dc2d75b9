"""`system df` and the prunes: what the store holds, and taking back what nothing uses.

Sizes are what the files take on disk, counted as `du` counts them: allocated blocks
(holes in sparse files cost nothing), every inode once (hard links inside a layer),
directories included, symlinks not followed. The store's parts:

* Images: `layers/` (one directory per layer, shared by every image that has it, counted
  once) and `blobs/` (each layer's blob as pulled or imported, and each image's config).
  Active: used by at least one container (running or not). Reclaimable: the layers,
  blobs and configs of images no container uses (what `image prune -a` frees).
* Containers: `containers/` (each container's writable layer, log, config). Active:
  running. Reclaimable: the stopped ones (what `container prune` frees).
* Local Volumes: `volumes/` (rootless.volumes). Active: used by at least one container
  (running or not). Reclaimable: the volumes no container uses (what `volume prune -a`
  frees). A directory the container made unreadable to the user (a non-root owner under
  the full id map, mode 0700) counts as itself only, as `du` run by the user would.
* Build Cache: rsbox has none yet; it shows as 0.

What prune removes is Docker's definition (docker/cli docs container_prune.md,
image_prune.md, system_prune.md): `container prune` every container that is not running;
`image prune` the dangling images (no name: an image pulled only by digest is one) that
no container uses;
`image prune -a` every image that no container (running or stopped) uses; `volume prune`
(and `system prune --volumes`) every anonymous volume no container (running or stopped)
uses, `volume prune -a` every such volume, named or not (Docker 23's rule). Each removal goes
through the store's own path (`Store.prune_image`, the CLI's container removal), which
checks again under the store's writer lock (or the container's monitor lock): an image a
container started using meanwhile, or a container that started meanwhile, is kept.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rootless.errors import ContainerError
from rootless.store import Container, Image, Store
from rootless.volumes import VolumeRecord, Volumes


def disk_usage(paths: Iterable[Path], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes on disk of everything under `paths`, as `du` counts them; `seen` (inodes
    already counted) lets several calls count a shared inode once."""
    seen = set() if seen is None else seen
    total = 0
    todo = [os.fspath(p) for p in paths]
    while todo:
        path = todo.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue  # removed meanwhile
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(path) as it:
                    todo.extend(entry.path for entry in it)
            except OSError:
                continue  # unreadable: counted as du would, itself only
    return total


@dataclass(frozen=True)
class ImageUsage:
    image: Image
    size: int  # its layers, their blobs, its config
    shared: int  # the part of `size` other images use too
    containers: int


@dataclass(frozen=True)
class ContainerUsage:
    container: Container
    size: int
    running: bool


@dataclass(frozen=True)
class VolumeUsage:
    volume: VolumeRecord
    size: int
    links: int  # containers that use it


@dataclass(frozen=True)
class Usage:
    """One line of `system df`."""

    total: int
    active: int
    size: int
    reclaimable: int


@dataclass(frozen=True)
class DiskUsage:
    images: Usage
    containers: Usage
    volumes: Usage
    build_cache: Usage
    image_items: tuple[ImageUsage, ...] = ()
    container_items: tuple[ContainerUsage, ...] = ()
    volume_items: tuple[VolumeUsage, ...] = ()


def _image_parts(store: Store, image: Image) -> list[Path]:
    parts = [store.blob_path(image.id)]
    for layer in store.image_layers(image.id):
        parts += [store.layer_dir(layer.diff_id), store.blob_path(layer.blob)]
    return parts


def compute_disk_usage(store: Store, running: Callable[[Container], bool]) -> DiskUsage:
    """The figures of `system df` (and `-v`), walking the store once."""
    images = store.images()
    containers = store.containers()
    users: dict[str, int] = {}
    for c in containers:
        users[c.image_id] = users.get(c.image_id, 0) + 1

    # Every part (layer directory, blob) measured once; an image's figure is the sum of
    # its parts, a part used by two images is shared.
    seen: set[tuple[int, int]] = set()
    part_size: dict[Path, int] = {}
    part_images: dict[Path, int] = {}
    image_parts = {}
    for image in images:
        parts = list(dict.fromkeys(_image_parts(store, image)))
        image_parts[image.id] = parts
        for p in parts:
            if p not in part_size:
                part_size[p] = disk_usage([p], seen)
            part_images[p] = part_images.get(p, 0) + 1
    roots = [store.root / "layers", store.root / "blobs"]
    # What no image names (an import under way, a crash's leftover) and the directories
    # themselves: part of the images' size (as du sees it), reclaimable by nothing here.
    leftovers = disk_usage(roots, seen)
    used_parts = {p for image in images if users.get(image.id) for p in image_parts[image.id]}
    image_items = []
    for image in images:
        parts = image_parts[image.id]
        size = sum(part_size[p] for p in parts)
        shared = sum(part_size[p] for p in parts if part_images[p] > 1)
        image_items.append(ImageUsage(image, size, shared, users.get(image.id, 0)))
    images_size = sum(part_size.values()) + leftovers
    images_reclaimable = sum(s for p, s in part_size.items() if p not in used_parts)

    container_items = []
    cseen: set[tuple[int, int]] = set()
    for c in containers:
        container_items.append(ContainerUsage(c, disk_usage([c.dir], cseen), running(c)))
    containers_size = sum(i.size for i in container_items) + disk_usage(
        [store.root / "containers"], cseen
    )
    vols = Volumes(store)
    links = {name: len(users) for name, users in vols.users().items()}
    vseen: set[tuple[int, int]] = set()
    volume_items = tuple(
        VolumeUsage(v, disk_usage([v.mountpoint.parent], vseen), links.get(v.name, 0))
        for v in vols.all()
    )
    return DiskUsage(
        images=Usage(
            len(images), sum(1 for i in images if users.get(i.id)), images_size, images_reclaimable
        ),
        containers=Usage(
            len(containers),
            sum(1 for i in container_items if i.running),
            containers_size,
            sum(i.size for i in container_items if not i.running),
        ),
        volumes=Usage(
            len(volume_items),
            sum(1 for v in volume_items if v.links),
            sum(v.size for v in volume_items),  # as Docker: no volume, 0B
            sum(v.size for v in volume_items if not v.links),
        ),
        build_cache=Usage(0, 0, 0, 0),
        image_items=tuple(image_items),
        container_items=tuple(container_items),
        volume_items=volume_items,
    )


# --- prune ---------------------------------------------------------------------------------


@dataclass
class PruneReport:
    """What a prune removed, for Docker's report (`Deleted Containers:`, `Deleted
    Images:` with `untagged:`/`deleted:` lines, `Total reclaimed space:`)."""

    containers: list[str] = field(default_factory=list)  # ids
    volumes: list[str] = field(default_factory=list)  # names
    images: list[tuple[str, str]] = field(default_factory=list)  # ("untagged"|"deleted", what)
    reclaimed: int = 0


def prune_containers(
    store: Store,
    running: Callable[[Container], bool],
    remove: Callable[[Container], None],
    report: PruneReport,
) -> None:
    """Remove every container that is not running, through `remove` (the CLI's removal:
    it takes the container's monitor lock, so one that starts meanwhile is kept)."""
    for c in store.containers():
        if running(c):
            continue
        size = disk_usage([c.dir])
        try:
            remove(c)
        except ContainerError:
            continue  # started, or removed, meanwhile: not ours to prune
        report.containers.append(c.id)
        report.reclaimed += size


def prune_images(store: Store, *, all_unused: bool, report: PruneReport) -> None:
    """`image prune` (dangling only) or `image prune -a` (every image no container
    uses). The disk space reclaimed is that of the parts (layer directories, blobs) that
    were there before and are gone after."""
    used = {c.image_id for c in store.containers()}
    candidates: Sequence[Image] = [i for i in store.images() if i.id not in used]
    if not all_unused:
        candidates = [i for i in candidates if not i.names]
    sizes: dict[Path, int] = {}
    for image in candidates:
        for p in _image_parts(store, image):
            if p not in sizes:
                sizes[p] = disk_usage([p])
    for image in candidates:
        pruned = store.prune_image(image.id, dangling_only=not all_unused)
        if pruned is None:
            continue
        report.images += [("untagged", n) for n in (*pruned.names, *pruned.digests)]
        report.images.append(("deleted", f"sha256:{pruned.id}"))
        report.images += [("deleted", f"sha256:{d}") for d in pruned.layers]
    report.reclaimed += sum(s for p, s in sizes.items() if not os.path.lexists(p))


def prune_volumes(
    store: Store, *, all_volumes: bool, keep: Callable[[VolumeRecord], bool], report: PruneReport
) -> None:
    """`volume prune [-a]`: the volumes no container uses, anonymous ones only unless
    `all_volumes`, except those `keep` (a --filter) spares. `Volumes.remove` checks the
    use again under the store's lock: a volume a new container took meanwhile stays."""
    from rootless.errors import VolumeError

    vols = Volumes(store)
    used = vols.users()
    for v in vols.all():
        if v.name in used or (not all_volumes and not v.anonymous) or keep(v):
            continue
        try:
            report.reclaimed += vols.remove(v.name)
        except VolumeError:
            continue
        report.volumes.append(v.name)
