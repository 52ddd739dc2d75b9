"""The store: names, round trip, shared layers, containers, concurrent writers."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rootless.errors import (
    ContainerError,
    ImageError,
    ImageNotFound,
    LayerError,
    StoreFull,
    UsageError,
)
from rootless.image_import import import_rootfs
from rootless.oci_layout import import_oci_layout
from rootless.store import RESERVE_ENV, Store, default_root, normalize_name, store_reserve
from tests.images import (
    TarBuilder,
    write_oci_layout,
    write_oci_layout_blobs,
)
from tests.rootless.leftovers import nothing_stored


def test_default_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RSBOX_ROOT", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_root() == tmp_path / ".local/share/rsbox"
    monkeypatch.setenv("XDG_DATA_HOME", "/x")
    assert default_root() == Path("/x/rsbox")
    monkeypatch.setenv("RSBOX_ROOT", "/y")
    assert default_root() == Path("/y")


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("busybox", "localhost/busybox:latest"),
        ("busybox:1", "localhost/busybox:1"),
        ("localhost/busybox:1", "localhost/busybox:1"),
        ("my/app", "localhost/my/app:latest"),
        ("quay.io/x/y:2.0", "quay.io/x/y:2.0"),
        ("localhost:5000/a", "localhost:5000/a:latest"),
    ],
)
def test_normalize_name(ref: str, name: str) -> None:
    assert normalize_name(ref) == name


@pytest.mark.parametrize("bad", ["", "Busybox", "a@sha256:00", "a:b:c", "-a", "a/:x"])
def test_normalize_name_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        normalize_name(bad)


def test_layout_and_permissions(store: Store) -> None:
    for sub in ("blobs/sha256", "layers", "containers", "tmp", "cache"):
        assert (store.root / sub).is_dir()
    assert (store.root / "store.db").is_file()
    assert store.tmp == store.root / "tmp"
    assert store.cache_dir == store.root / "cache"
    assert (store.root.stat().st_mode & 0o077) == 0


def test_round_trip_across_reopen(tmp_path: Path, busybox_tar: Path) -> None:
    with Store.open(tmp_path / "root") as s:
        image = import_rootfs(s, busybox_tar, "busybox")
    with Store.open(tmp_path / "root") as s:
        again = s.resolve_image("busybox")
        assert again == image
        assert again.names == ("localhost/busybox:latest",)
        assert again.config.cmd == ("/bin/sh",)
        assert again.config.env[0].startswith("PATH=")
        assert len(again.layers) == 1
        assert (again.layers[0] / "fs" / "bin" / "busybox").is_file()
        assert (again.layers[0] / "meta").is_file()
        assert (s.root / "blobs" / "sha256" / again.id).is_file()
        assert again.size > 1_000_000


def test_resolve_by_name_variants_and_id(store: Store, busybox_tar: Path) -> None:
    image = import_rootfs(store, busybox_tar, "busybox:1")
    for ref in ("busybox:1", "localhost/busybox:1", image.id, f"sha256:{image.id}", image.id[:4]):
        assert store.resolve_image(ref).id == image.id
    with pytest.raises(ImageNotFound) as info:
        store.resolve_image("busybox")  # :latest does not exist
    assert info.value.hint is not None and "rsbox images" in info.value.hint
    assert "rsbox import" in info.value.hint
    with pytest.raises(ImageNotFound):
        store.resolve_image("nothere")


def test_digest_refs_resolve_to_what_was_pulled_by_them(store: Store, busybox_tar: Path) -> None:
    image = import_rootfs(store, busybox_tar, "busybox")
    digest = "sha256:" + "ab" * 32
    with pytest.raises(ImageNotFound):
        store.resolve_image(f"example.org/tools/bb@{digest}")
    store.add_digest_ref(f"example.org/tools/bb@{digest}", image.id)
    assert store.resolve_image(f"example.org/tools/bb@{digest}").id == image.id
    assert store.resolve_image(f"example.org/tools/bb:any@{digest}").id == image.id
    with pytest.raises(ImageNotFound):  # another repository, same digest
        store.resolve_image(f"example.org/other@{digest}")
    store.remove_image(image.id)
    with pytest.raises(ImageNotFound):
        store.resolve_image(f"example.org/tools/bb@{digest}")


def test_a_version_1_store_is_migrated(tmp_path: Path, busybox_tar: Path) -> None:
    import sqlite3

    with Store.open(tmp_path / "root") as s:
        image = import_rootfs(s, busybox_tar, "busybox")
    db = sqlite3.connect(tmp_path / "root" / "store.db")
    db.executescript("DROP TABLE digests; PRAGMA user_version=1;")  # as rsbox 1 left it
    db.close()
    with Store.open(tmp_path / "root") as s:
        assert s.resolve_image("busybox").id == image.id
        s.add_digest_ref(f"example.org/bb@sha256:{'cd' * 32}", image.id)
    db = sqlite3.connect(tmp_path / "root" / "store.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()


def test_unqualified_name_finds_other_registries(tmp_path: Path, store: Store) -> None:
    layout, tag = write_oci_layout(tmp_path / "l", [(TarBuilder().file("a").bytes(), True)])
    image = import_oci_layout(store, layout, tag, "docker.io/library/alpine:3")
    assert store.resolve_image("alpine:3").id == image.id
    assert store.resolve_image("library/alpine:3").id == image.id


def test_name_moves_to_the_newer_image(store: Store, busybox_tar: Path) -> None:
    first = import_rootfs(store, busybox_tar, "bb")
    second = import_rootfs(store, busybox_tar, "bb")
    assert first.id != second.id  # created differs, like `podman import`
    assert store.resolve_image("bb").id == second.id
    assert store.resolve_image(first.id).names == ()


def test_images_sharing_a_layer_store_it_once(store: Store, busybox_tar: Path) -> None:
    a = import_rootfs(store, busybox_tar, "a")
    b = import_rootfs(store, busybox_tar, "b")
    assert a.layers == b.layers
    assert len(list((store.root / "layers").iterdir())) == 1
    # Blobs: one layer blob plus two configs.
    assert len(list((store.root / "blobs" / "sha256").iterdir())) == 3
    assert not list(store.tmp.iterdir())


def test_oci_images_sharing_base_layer(tmp_path: Path, store: Store) -> None:
    base = TarBuilder().dir("etc").file("etc/os-release", b"base\n").bytes()
    top1 = TarBuilder().file("one", b"1").bytes()
    top2 = TarBuilder().file("two", b"2").bytes()
    l1, t1 = write_oci_layout(tmp_path / "l1", [(base, True), (top1, True)])
    l2, t2 = write_oci_layout(tmp_path / "l2", [(base, True), (top2, False)])
    i1 = import_oci_layout(store, l1, t1, "one")
    i2 = import_oci_layout(store, l2, t2, "two")
    assert i1.layers[0] == i2.layers[0]
    assert len(list((store.root / "layers").iterdir())) == 3
    # Removing one image keeps the shared layer; removing the other frees it.
    gone = store.remove_image("one")
    assert len(gone) == 1 and i1.layers[0].is_dir() and not i1.layers[1].exists()
    store.remove_image("two")
    assert not list((store.root / "layers").iterdir())


def test_containers_lifecycle(store: Store, busybox_tar: Path) -> None:
    image = import_rootfs(store, busybox_tar, "busybox")
    c = store.create_container(image, "web", {"process": {"args": ["sh"]}})
    assert len(c.id) == 64 and int(c.id, 16) >= 0
    assert c.upper.is_dir() and c.rootfs.is_dir()
    assert json.loads((c.dir / "config.json").read_text()) == {"process": {"args": ["sh"]}}
    assert store.container("web") == c
    assert store.container(c.id[:8]) == c
    assert store.container(c.id) == c
    with pytest.raises(ContainerError, match="already in use"):
        store.create_container(image, "web", {})
    auto = store.create_container(image, None, {})
    assert auto.name and auto.name != "web"
    with pytest.raises(ImageError, match="used by container"):
        store.remove_image("busybox")
    # An upper dir the container made unreadable is still removed.
    locked = c.upper / "locked"
    locked.mkdir()
    (locked / "f").write_text("x")
    os.chmod(locked, 0)
    store.remove_container(c.id)
    assert not c.dir.exists()
    with pytest.raises(ContainerError, match="no such container"):
        store.container("web")
    store.remove_container(auto.name)
    assert store.containers() == []
    assert not list(store.tmp.iterdir())


def test_invalid_container_name(store: Store, busybox_tar: Path) -> None:
    image = import_rootfs(store, busybox_tar, "busybox")
    with pytest.raises(ContainerError):
        store.create_container(image, "../evil", {})


_IMPORT = """
import sys
from pathlib import Path
from rootless.store import Store
from rootless.image_import import import_rootfs
with Store.open(Path(sys.argv[1])) as s:
    print(import_rootfs(s, Path(sys.argv[2]), sys.argv[3]).id)
"""


def test_two_processes_importing_at_once(tmp_path: Path, busybox_tar: Path) -> None:
    root = tmp_path / "root"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _IMPORT, str(root), str(busybox_tar), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two", "one", "three")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1] for o in outs]
    with Store.open(root) as s:
        assert len(list((root / "layers").iterdir())) == 1
        assert {i.names for i in s.images()} >= {
            ("localhost/two:latest",),
            ("localhost/three:latest",),
        }
        assert len(s.images()) == 4
        assert len({i.layers for i in s.images()}) == 1
        assert not list(s.tmp.iterdir())


def test_hostile_layer_leaves_nothing_behind(tmp_path: Path, store: Store) -> None:
    blob = tmp_path / "evil.tar"
    blob.write_bytes(TarBuilder().symlink("a", "/etc").file("a/passwd", b"x").bytes())
    with pytest.raises(LayerError):
        store.add_layer(blob)
    assert not list((store.root / "layers").iterdir())
    assert not list((store.root / "blobs" / "sha256").iterdir())
    assert not list(store.tmp.iterdir())
    assert store.images() == []


def test_stale_tmp_entries_are_cleaned_on_open(tmp_path: Path) -> None:
    with Store.open(tmp_path / "root") as s:
        old = s.tmp / "layer-crashed"
        (old / "fs").mkdir(parents=True)
        os.utime(old, (0, 0))
        young = s.tmp / "layer-running"
        young.mkdir()
    with Store.open(tmp_path / "root") as s:
        assert sorted(p.name for p in s.tmp.iterdir()) == ["layer-running"]


# --- the reserve of free space, and failures that leave nothing --------------------------

GIB = 1024**3


def test_default_reserve_is_a_few_percent_or_a_few_gib_and_sane_when_small() -> None:
    assert store_reserve(1024 * GIB) == 1024 * GIB * 2 // 100  # 2%: 20.5 GiB
    assert store_reserve(100 * GIB) == 2 * GIB  # at least 2 GiB
    assert store_reserve(5 * GIB) == GIB  # never more than a fifth of the filesystem
    assert store_reserve(512 * 1024**2) == 512 * 1024**2 // 5


@pytest.mark.parametrize(
    ("setting", "reserve"),
    [
        ("0", 0),
        ("4096", 4096),
        ("512M", 512 * 1024**2),
        ("10g", 10 * GIB),
        ("1.5GiB", 3 * GIB // 2),
        ("2 TB", 2 * 1024**4),
        ("5%", 5 * GIB),
        ("100%", 100 * GIB),
        (" ", 2 * GIB),  # empty: the default
    ],
)
def test_reserve_setting(setting: str, reserve: int) -> None:
    assert store_reserve(100 * GIB, setting) == reserve


@pytest.mark.parametrize("setting", ["lots", "-1G", "150%", "1X", "G"])
def test_bad_reserve_setting_is_one_line_with_a_hint(setting: str) -> None:
    with pytest.raises(UsageError, match=RESERVE_ENV) as info:
        store_reserve(100 * GIB, setting)
    assert info.value.hint and "\n" not in info.value.line()


def _random_layer(tmp_path: Path) -> Path:
    blob = tmp_path / "layer.tar.gz"
    blob.write_bytes(gzip.compress(TarBuilder().file("r.bin", os.urandom(2 << 20)).bytes()))
    return blob


def test_a_layer_that_would_eat_the_reserve_is_refused_and_leaves_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = _random_layer(tmp_path)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    monkeypatch.setenv(RESERVE_ENV, "100%")  # more than can ever be free
    with pytest.raises(StoreFull) as info:
        store.add_layer(blob)
    line = info.value.line()
    assert line.startswith(f"rsbox: error: layer sha256:{digest[:12]} would leave less than ")
    assert f"free on {store.root} (hint: " in line and RESERVE_ENV in line
    assert nothing_stored(store.root)
    monkeypatch.setenv(RESERVE_ENV, "1M")  # control: the same layer, a small reserve
    assert store.add_layer(blob).blob == digest


def test_a_layer_not_matching_its_diff_id_leaves_nothing(store: Store, tmp_path: Path) -> None:
    blob = _random_layer(tmp_path)
    with pytest.raises(LayerError, match="config says") as info:
        store.add_layer(blob, diff_id="0" * 64)
    assert info.value.hint
    assert nothing_stored(store.root)
    raw = gzip.decompress(blob.read_bytes())  # control: the right diff_id is accepted
    assert store.add_layer(blob, diff_id=hashlib.sha256(raw).hexdigest())
    assert not nothing_stored(store.root)


def test_an_oci_import_failing_at_its_last_layer_takes_back_the_others(
    store: Store, tmp_path: Path
) -> None:
    good = TarBuilder().file("good.txt", b"good\n").bytes()
    bad = TarBuilder().file("bad.txt", b"bad\n").bytes()
    tar = "application/vnd.oci.image.layer.v1.tar"
    layers = [(good, tar, hashlib.sha256(good).hexdigest()), (bad, tar, "1" * 64)]
    layout, tag = write_oci_layout_blobs(tmp_path / "layout", layers)
    with pytest.raises(LayerError, match="config says"):
        import_oci_layout(store, layout, tag, "x:1")
    assert nothing_stored(store.root)
    # a layer an image already uses is never taken back
    import_rootfs(store, _tar_file(tmp_path, good), "keep:1")
    with pytest.raises(LayerError):
        import_oci_layout(store, layout, tag, "x:1")
    assert [i.names for i in store.images()] == [("localhost/keep:1",)]
    assert len(list((store.root / "layers").iterdir())) == 1


def _tar_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"{hashlib.sha256(data).hexdigest()[:8]}.tar"
    path.write_bytes(data)
    return path
