"""Read-only image stores (`--image-store`): used as they are, never written."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.errors import ImageError, ImageNotFound, StoreError
from rootless.image_import import import_rootfs
from rootless.store import Store, image_store_list
from tests.images import make_busybox_tarball


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry below root: (mode, size, mtime_ns); what "nothing written" compares."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in (*dirnames, *filenames):
            st = os.lstat(os.path.join(dirpath, n))
            out[os.path.relpath(os.path.join(dirpath, n), root)] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
            )
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def chmod_tree(root: Path, add: int, remove: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in (dirpath, *(os.path.join(dirpath, f) for f in (*dirnames, *filenames))):
            st = os.lstat(n)
            if not stat.S_ISLNK(st.st_mode):
                mode = stat.S_IMODE(st.st_mode) | add
                if stat.S_ISDIR(st.st_mode) and add & 0o444:
                    mode |= (add & 0o444) >> 2  # a+rX
                os.chmod(n, mode & ~remove)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A store filled by its owner, then made readable and unwritable for everyone."""
    root = tmp_path / "shared"
    tar = make_busybox_tarball(tmp_path / "busybox.tar.gz")
    with Store.open(root) as s:
        import_rootfs(s, tar, "busybox")
    chmod_tree(root, 0o444, 0)
    Store.open(root).close()  # the owner's next command: rollback journal from now on
    chmod_tree(root, 0, 0o222)
    yield root
    chmod_tree(root, 0o200, 0)  # pytest's tmp_path cleanup


def test_images_of_a_read_only_store_are_found_after_the_own_and_nothing_is_written(
    tmp_path: Path, shared: Path
) -> None:
    before = snapshot(shared)
    with Store.open(tmp_path / "mine", image_stores=[shared]) as s:
        image = s.resolve_image("busybox")
        assert image.store == shared and image.layers[0].is_relative_to(shared)
        assert [i.store for i in s.images()] == [shared]
        # what inspect, history, save and push read comes from the store that has it
        assert json.loads(s.image_config_bytes(image.id))["rootfs"]["type"] == "layers"
        (layer,) = s.image_layers(image.id)
        assert s.find_blob(layer.blob).is_relative_to(shared) and s.find_blob(layer.blob).is_file()
        c = s.create_container(image, "c1", {})
        with pytest.raises(ImageError, match="read-only image store") as exc:
            s.remove_image("busybox")
        assert f"--root {shared} rmi" in (exc.value.hint or "")
    # the container keeps its image without --image-store (pinned in the own store)
    with Store.open(tmp_path / "mine") as s:
        again = s.resolve_image(s.container("c1").image_id)
        assert again.id == image.id and again.store == shared and again.layers == image.layers
        assert s.images() == []  # a pin is not an image of this store
        with pytest.raises(ImageNotFound):
            s.resolve_image("busybox")
        s.remove_container(c.id)
        with pytest.raises(ImageNotFound):
            s.resolve_image(image.id)  # the pin went with its last container
    assert snapshot(shared) == before
    # the same probe where writing is allowed: the own store did change
    assert (tmp_path / "mine" / "store.db").stat().st_size > 0


def test_an_own_image_of_the_same_name_comes_first(tmp_path: Path, shared: Path) -> None:
    tar = make_busybox_tarball(tmp_path / "mine.tar.gz")
    with Store.open(tmp_path / "mine", image_stores=[shared]) as s:
        own = import_rootfs(s, tar, "busybox")
        assert s.resolve_image("busybox") == own and own.store is None
        assert s.images()[0] == own
        assert {i.store for i in s.images()} <= {None, shared}


def test_a_tag_given_here_to_a_shared_image_is_removed_by_rmi(tmp_path: Path, shared: Path) -> None:
    with Store.open(tmp_path / "mine", image_stores=[shared]) as s:
        s.tag_image("busybox", "localhost/mine:1")
        assert s.resolve_image("mine:1").store == shared
        assert s.remove_image("mine:1") == []
        with pytest.raises(ImageNotFound):
            s.resolve_image("mine:1")
        assert s.resolve_image("busybox").store == shared


def test_a_store_still_in_wal_mode_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "private"
    Store.open(root).close()
    with pytest.raises(StoreError, match="WAL mode") as exc:
        Store.open(tmp_path / "mine", image_stores=[root])
    assert f"chmod -R a+rX {root}" in (exc.value.hint or "")
    with pytest.raises(StoreError, match="not an rsbox store"):
        Store.open(tmp_path / "mine", image_stores=[tmp_path / "nothing"])


def test_image_store_list_keeps_order_and_drops_repeats(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert image_store_list([a, b, a], [str(b), tmp_path / "c"]) == (a, b, tmp_path / "c")
