"""`rsbox import` of a directory and of a tarball (busybox from the host)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from fs.meta import LayerMeta
from rootless.errors import ImageNotFound, UsageError
from rootless.image_import import DEFAULT_PATH, import_rootfs, tar_directory
from rootless.store import Store
from tests.images import APPLETS, make_busybox_rootfs, make_busybox_tarball


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
