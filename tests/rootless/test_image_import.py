"""`rsbox import` of a directory and of a tarball (busybox from the host)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from fs.meta import LayerMeta
from rootless.errors import ImageNotFound, StoreFull, UsageError
from rootless.image_import import DEFAULT_PATH, import_rootfs, tar_directory
from rootless.store import RESERVE_ENV, Store
from tests.images import (
    APPLETS,
    GIB,
    gzip_bomb,
    make_busybox_rootfs,
    make_busybox_tarball,
    sparse_tar,
)
from tests.rootless.leftovers import nothing_stored


def _check_busybox_layer(layer: Path) -> None:
    fs = layer / "fs"
    assert os.readlink(fs / "bin" / "sh") == "busybox"
    for applet in APPLETS:
        assert (fs / "bin" / applet).is_symlink()
    # Statically linked: runs from the extracted layer on the host.
    out = subprocess.run(
        [str(fs / "bin" / "busybox"), "echo", "hello"], capture_output=True, text=True, check=True
    )
    assert out.stdout == "hello\n"
    assert (fs / "tmp").stat().st_mode & 0o1777 == 0o1777
    # Owners recorded as 0:0, modes kept: nothing to override.
    assert len(LayerMeta.load(layer / "meta")) == 0


def test_import_directory(tmp_path: Path, store: Store) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    image = import_rootfs(store, rootfs, "busybox")
    assert image.names == ("localhost/busybox:latest",)
    assert image.config.env == (DEFAULT_PATH,)
    assert image.config.cmd == ("/bin/sh",)
    _check_busybox_layer(image.layers[0])
    config = json.loads((store.root / "blobs" / "sha256" / image.id).read_text())
    assert config["os"] == "linux" and config["architecture"]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{image.layers[0].name}"]


def test_directory_tar_records_root_owner(tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    tar_directory(rootfs, tmp_path / "out.tar")
    with tarfile.open(tmp_path / "out.tar") as tar:
        members = tar.getmembers()
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert not any(m.name.startswith(("/", "./")) for m in members)
    assert "bin/busybox" in {m.name for m in members}


@pytest.mark.parametrize("compress", [True, False])
def test_import_tarball(tmp_path: Path, store: Store, compress: bool) -> None:
    tarball = make_busybox_tarball(tmp_path / "bb.tar", compress=compress)
    image = import_rootfs(store, tarball, "bb:v1")
    assert image.names == ("localhost/bb:v1",)
    _check_busybox_layer(image.layers[0])


def test_import_missing_source(tmp_path: Path, store: Store) -> None:
    with pytest.raises(ImageNotFound):
        import_rootfs(store, tmp_path / "nope", "x")


def test_import_bad_name_fails_before_work(tmp_path: Path, store: Store) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    with pytest.raises(UsageError):
        import_rootfs(store, rootfs, "Bad Name")
    assert not list((store.root / "layers").iterdir())


def _store_allocated(store: Store) -> int:
    total = 0
    for d, _, files in os.walk(store.root):
        total += sum(os.lstat(os.path.join(d, f)).st_blocks * 512 for f in files)
    return total


def test_import_of_a_sparse_tarball_and_a_bomb_stays_sparse(tmp_path: Path, store: Store) -> None:
    sparse = tmp_path / "sparse.tar"
    sparse.write_bytes(sparse_tar(tmp_path / "src", 2 * GIB, "gnu"))
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip_bomb(256 * 1024 * 1024)[0])
    before = _store_allocated(store)
    big = import_rootfs(store, sparse, "sparse").layers[0] / "fs" / "sparse.bin"
    zeros = import_rootfs(store, bomb, "bomb").layers[0] / "fs" / "zeros.bin"
    assert big.stat().st_size == 2 * GIB and zeros.stat().st_size == 256 * 1024 * 1024
    assert _store_allocated(store) - before < 8 * 1024 * 1024  # layers, blobs, database


def test_import_of_a_directory_keeps_zeros_as_holes(tmp_path: Path, store: Store) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with open(rootfs / "holes.bin", "wb") as f:
        f.write(b"head")
        f.truncate(512 * 1024 * 1024)
    image = import_rootfs(store, rootfs, "holes")
    out = image.layers[0] / "fs" / "holes.bin"
    with open(out, "rb") as f:
        assert f.read(5) == b"head\0" and out.stat().st_size == 512 * 1024 * 1024
    assert _store_allocated(store) < 8 * 1024 * 1024  # the blob too (an uncompressed tar)


def test_import_past_the_reserve_is_refused_and_leaves_nothing(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    tarball = make_busybox_tarball(tmp_path / "bb.tar.gz")
    monkeypatch.setenv(RESERVE_ENV, "100%")
    for src in (rootfs, tarball):
        with pytest.raises(StoreFull, match="would leave less than"):
            import_rootfs(store, src, "bb")
        assert nothing_stored(store.root)
    monkeypatch.setenv(RESERVE_ENV, "0")  # control
    assert import_rootfs(store, rootfs, "bb").layers
