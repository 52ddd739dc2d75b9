"""docker-archive / oci-archive: round trips through rsbox, and hostile archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from rootless.errors import ImageError, LayerError, RsboxError, StoreFull
from rootless.image_archive import load, save
from rootless.image_import import import_rootfs
from rootless.store import RESERVE_ENV, Store
from tests.images import (
    GIB,
    TarBuilder,
    allocated,
    docker_archive,
    gzip_bomb,
    sparse_tar,
)
from tests.rootless.leftovers import nothing_stored


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
    assert nothing_stored(store.root)  # no orphan layer directory, blob or row


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


def _layer(tar: bytes) -> tuple[bytes, str]:
    return tar, hashlib.sha256(tar).hexdigest()


def test_a_bad_last_layer_takes_back_the_layers_loaded_before_it(
    store: Store, tmp_path: Path
) -> None:
    good = _layer(TarBuilder().file("good", b"good").bytes())
    bad_tar = TarBuilder().file("bad", b"bad").bytes()
    for second in (bad_tar, gzip.compress(bad_tar)):  # plain and compressed (newer Docker)
        path = docker_archive(tmp_path / "bad.tar", [good, (second, "2" * 64)])
        with pytest.raises(LayerError, match="config says"):
            load(store, path)
        assert nothing_stored(store.root)
    # control: the same archive with the right diff_id loads
    path = docker_archive(tmp_path / "ok.tar", [good, _layer(bad_tar)])
    (image,) = load(store, path)
    assert [p.name for p in image.layers] == [good[1], hashlib.sha256(bad_tar).hexdigest()]


def _one_line(err: RsboxError) -> str:
    line = err.line()
    assert "\n" not in line and "(hint: " in line, line
    return line


@pytest.fixture
def saved(store: Store, tmp_path: Path) -> Path:
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(TarBuilder().file("data.bin", os.urandom(300_000)).bytes())
    import_rootfs(store, tarball, "demo:v1")
    save(store, ["demo:v1"], tmp_path / "out.tar")
    return tmp_path / "out.tar"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty"),
        (b"hello, this is not a tar file\n" * 40, "is not a tar archive"),
        (gzip.compress(b"not a tar inside the gzip\n" * 40), "is not a tar archive"),
        (gzip.compress(TarBuilder().file("a", b"a" * 9000).bytes())[:300], "truncated"),
    ],
)
def test_loading_what_is_not_an_archive_is_one_line(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    with Store.open(tmp_path / "s") as fresh:
        with pytest.raises(ImageError) as info:
            load(fresh, path)
        assert words in _one_line(info.value)
        assert nothing_stored(fresh.root)


@pytest.mark.parametrize("where", [0.02, 0.3, 0.6, 0.95, "in manifest.json"])
def test_loading_a_truncated_archive_is_one_line_and_leaves_nothing(
    saved: Path, tmp_path: Path, where: float | str
) -> None:
    data = saved.read_bytes()
    if isinstance(where, float):
        end = int(len(data) * where)
    else:  # the last member: cut 3 bytes into its data
        with tarfile.open(saved) as tar:
            end = tar.getmember("manifest.json").offset_data + 3
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:end])
    with Store.open(tmp_path / "s") as fresh:
        with pytest.raises(ImageError) as info:
            load(fresh, cut)
        assert "truncated" in _one_line(info.value)
        assert nothing_stored(fresh.root)
        cut.write_bytes(data)  # control: the whole archive loads
        assert load(fresh, cut)[0].names == ("localhost/demo:v1",)


def test_save_to_a_missing_directory_is_one_line_and_writes_nothing(
    store: Store, saved: Path, tmp_path: Path
) -> None:
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ImageError) as info:
        save(store, ["demo:v1"], tmp_path / "no" / "such" / "x.tar")
    line = _one_line(info.value)
    assert "cannot write" in line and "does not exist" in line
    with pytest.raises(ImageError) as info:
        save(store, ["demo:v1"], tmp_path)  # a directory
    assert "is a directory" in _one_line(info.value)
    assert sorted(tmp_path.iterdir()) == before  # no partial or temporary file


def test_loading_sparse_and_bomb_layers_stores_them_sparse(store: Store, tmp_path: Path) -> None:
    sparse = _layer(sparse_tar(tmp_path / "src", 2 * GIB))
    bomb = gzip_bomb(256 * 1024 * 1024)
    (image,) = load(store, docker_archive(tmp_path / "bombs.tar", [sparse, bomb]))
    big, zeros = image.layers[0] / "fs" / "sparse.bin", image.layers[1] / "fs" / "zeros.bin"
    assert big.stat().st_size == 2 * GIB and zeros.stat().st_size == 256 * 1024 * 1024
    assert allocated(big) + allocated(zeros) < 2 * 1024 * 1024
    blobs = list((store.root / "blobs" / "sha256").iterdir())
    assert sum(allocated(b) for b in blobs) < 4 * 1024 * 1024


def test_loading_past_the_reserve_is_refused_and_leaves_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = _layer(TarBuilder().file("r.bin", os.urandom(1 << 20)).bytes())
    path = docker_archive(tmp_path / "a.tar", [layer])
    monkeypatch.setenv(RESERVE_ENV, "100%")
    with pytest.raises(StoreFull) as info:
        load(store, path)
    assert f"layer sha256:{layer[1][:12]} would leave less than" in _one_line(info.value)
    assert nothing_stored(store.root)
    monkeypatch.setenv(RESERVE_ENV, "0")  # control
    assert load(store, path)
