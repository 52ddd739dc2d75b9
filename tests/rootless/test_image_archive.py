"""docker-archive / oci-archive: round trips through rsbox, and hostile archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from rootless.errors import ImageError, LayerError
from rootless.image_archive import load, save
from rootless.image_import import import_rootfs
from rootless.store import Store
from tests.images import TarBuilder


def _archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def _config(*layers: bytes) -> bytes:
    diff_ids = [f"sha256:{hashlib.sha256(raw).hexdigest()}" for raw in layers]
    return json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_then_load_round_trip(store: Store, tmp_path: Path, fmt: str) -> None:
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(TarBuilder().file("hello.txt", b"hi\n").bytes())
    image = import_rootfs(store, tarball, "demo:v1")
    save(store, ["demo:v1"], tmp_path / "out.tar", fmt)
    with Store.open(tmp_path / "other") as other:
        (loaded,) = load(other, tmp_path / "out.tar")
        assert loaded.id == image.id and "localhost/demo:v1" in loaded.names
        assert (loaded.layers[0] / "fs" / "hello.txt").read_bytes() == b"hi\n"


def test_docker_archive_layer_must_match_its_diff_id(store: Store, tmp_path: Path) -> None:
    layer = TarBuilder().file("a", b"a").bytes()
    other = TarBuilder().file("b", b"b").bytes()
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    path = _archive(
        tmp_path / "a.tar",
        {
            "manifest.json": json.dumps(manifest).encode(),
            "c.json": _config(other),
            "l/layer.tar": layer,
        },
    )
    with pytest.raises(LayerError, match="config says"):
        load(store, path)
    assert store.images() == [] and list(store.tmp.iterdir()) == []


def test_docker_archive_members_must_be_regular_files(store: Store, tmp_path: Path) -> None:
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    path = _archive(
        tmp_path / "a.tar",
        {"manifest.json": json.dumps(manifest).encode(), "c.json": _config(b"x")},
        links={"l/layer.tar": "/etc/passwd"},
    )
    with pytest.raises(ImageError, match="not a regular file") as info:
        load(store, path)
    assert info.value.hint


def test_not_an_archive(store: Store, tmp_path: Path) -> None:
    path = _archive(tmp_path / "a.tar", {"random.txt": b"x"})
    with pytest.raises(ImageError, match="neither") as info:
        load(store, path)
    assert info.value.hint
    (tmp_path / "garbage").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ImageError):
        load(store, tmp_path / "garbage")
