"""rootless.housekeeping and the store's prune/rename paths, on a real store (no
container runs here: "running" is whatever the test says)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rootless.errors import ContainerError
from rootless.housekeeping import (
    PruneReport,
    compute_disk_usage,
    disk_usage,
    prune_containers,
    prune_images,
)
from rootless.image_commands import cmd_import
from rootless.store import Container, Store
from tests.images import make_busybox_rootfs


def du(*paths: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.splitlines()[-1].split()[0])


def _rootfs(tmp_path: Path, name: str, extra: str = "") -> Path:
    root = make_busybox_rootfs(tmp_path / name)
    if extra:
        (root / "etc" / "extra").write_text(extra)
    return root


@pytest.fixture
def filled(tmp_path: Path, store: Store) -> dict[str, str]:
    """Three images: bb (a container uses it), dang (its name went to the next one:
    untagged), tagged (unused)."""
    ids = {}
    ids["bb"] = cmd_import(store, str(_rootfs(tmp_path, "bb")), "bb")
    ids["dang"] = cmd_import(store, str(_rootfs(tmp_path, "d1", "one")), "tmp:1")
    ids["tagged"] = cmd_import(
        store, str(_rootfs(tmp_path, "d2", "two")), "tmp:1"
    )  # takes the name
    store.create_container(store.resolve_image("bb"), "user", {"image": "bb"})
    return ids


def test_du_counts_as_du_does(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_bytes(b"x" * 10000)
    (d / "link").hardlink_to(d / "f")
    (d / "sym").symlink_to("f")
    with open(d / "sparse", "wb") as f:
        f.truncate(1 << 24)  # a hole costs nothing
    assert disk_usage([d]) == du(d)


def test_disk_usage_equals_du_of_the_stores_parts(store: Store, filled: dict[str, str]) -> None:
    usage = compute_disk_usage(store, running=lambda c: False)
    assert usage.images.size == du(store.root / "layers", store.root / "blobs")
    assert usage.containers.size == du(store.root / "containers")
    assert (usage.images.total, usage.images.active) == (3, 1)
    assert (usage.containers.total, usage.containers.active) == (1, 0)
    assert usage.containers.reclaimable == sum(i.size for i in usage.container_items) > 0
    by_id = {i.image.id: i for i in usage.image_items}
    # what `image prune -a` frees: everything of the two images no container uses
    assert usage.images.reclaimable == by_id[filled["dang"]].size + by_id[filled["tagged"]].size
    assert by_id[filled["bb"]].containers == 1
    assert (usage.volumes.size, usage.build_cache.size) == (0, 0)


def test_prune_removes_dangling_images_only(store: Store, filled: dict[str, str]) -> None:
    report = PruneReport()
    prune_images(store, all_unused=False, report=report)
    left = {i.id for i in store.images()}
    assert left == {filled["bb"], filled["tagged"]}
    assert ("deleted", f"sha256:{filled['dang']}") in report.images
    assert not any(what == "untagged" for what, _ in report.images)
    assert report.reclaimed > 0


def test_prune_all_keeps_every_image_a_container_uses(store: Store, filled: dict[str, str]) -> None:
    layer_dirs = list(store.resolve_image("bb").layers)
    report = PruneReport()
    prune_images(store, all_unused=True, report=report)
    assert [i.id for i in store.images()] == [filled["bb"]]
    assert all(p.is_dir() for p in layer_dirs)
    assert ("untagged", "localhost/tmp:1") in report.images
    again = PruneReport()
    prune_images(store, all_unused=True, report=again)
    assert again.images == [] and again.reclaimed == 0


def test_prune_image_checks_again_under_the_lock(store: Store, filled: dict[str, str]) -> None:
    assert store.prune_image(filled["bb"], dangling_only=False) is None  # in use
    assert store.prune_image(filled["tagged"], dangling_only=True) is None  # has a name
    pruned = store.prune_image(filled["tagged"], dangling_only=False)
    assert pruned is not None and pruned.names == ("localhost/tmp:1",)
    assert store.prune_image(filled["tagged"], dangling_only=False) is None  # gone


def test_prune_containers_skips_running_and_refusing(store: Store, filled: dict[str, str]) -> None:
    image = store.resolve_image("bb")
    store.create_container(image, "stopped", {})
    store.create_container(image, "busy", {})
    removed: list[str] = []

    def remove(c: Container) -> None:
        if c.name == "busy":  # started meanwhile: the monitor lock says no
            raise ContainerError("running")
        removed.append(c.name)
        store.remove_container(c.id)

    report = PruneReport()
    prune_containers(store, lambda c: c.name == "user", remove, report)
    assert removed == ["stopped"]
    assert {c.name for c in store.containers()} == {"user", "busy"}
    assert len(report.containers) == 1 and report.reclaimed > 0


def test_rename(store: Store, filled: dict[str, str]) -> None:
    image = store.resolve_image("bb")
    other = store.create_container(image, "other", {})
    renamed = store.rename_container("user", "renamed")
    assert renamed.name == "renamed" and store.container("renamed").id == renamed.id
    for bad in ("other", "renamed", "-bad", "a b"):
        with pytest.raises(ContainerError):
            store.rename_container("renamed", bad)
    with pytest.raises(ContainerError):
        store.rename_container("nosuch", "x")
    assert store.container("other").id == other.id
