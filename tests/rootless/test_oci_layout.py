"""Reading OCI image layouts: hand-made (whiteout + opaque dir), umoci- and skopeo-made."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import ImageError, ImageNotFound, LayerError
from rootless.image_import import import_rootfs
from rootless.oci_layout import import_oci_layout, parse_oci_ref
from rootless.store import Store
from tests.images import (
    TarBuilder,
    make_layered_oci_layout,
    make_umoci_layout,
    write_oci_layout,
)


def test_parse_oci_ref() -> None:
    assert parse_oci_ref("oci:/a/b:tag") == (Path("/a/b"), "tag")
    assert parse_oci_ref("oci:/a/b") == (Path("/a/b"), None)
    assert parse_oci_ref("oci:rel/dir:v1.0") == (Path("rel/dir"), "v1.0")


def test_layered_layout_with_whiteout_and_opaque_dir(tmp_path: Path, store: Store) -> None:
    layout, tag = make_layered_oci_layout(tmp_path / "layout")
    image = import_rootfs(store, f"oci:{layout}:{tag}", "layered")
    assert image.names == ("localhost/layered:latest",)
    assert len(image.layers) == 3
    base, middle, top = (p / "fs" for p in image.layers)
    assert (base / "bin" / "busybox").is_file()
    assert (base / "etc" / "removeme").is_file()
    assert (middle / "etc" / ".wh.removeme").is_file()
    assert (middle / "opaque" / ".wh..wh..opq").is_file()
    assert (middle / "opaque" / "new").read_text() == "new\n"
    assert (top / "top.txt").read_text() == "top\n"
    assert image.config.labels == {"org.example.test": "layered"}
    assert image.config.workdir == "/"
    assert image.created.startswith("2024-01-02T03:04:05")


def test_umoci_agrees_with_the_hand_made_layout(tmp_path: Path) -> None:
    layout, tag = make_layered_oci_layout(tmp_path / "layout")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    assert not (rootfs / "etc" / "removeme").exists()
    assert sorted(p.name for p in (rootfs / "opaque").iterdir()) == ["new"]
    assert (rootfs / "top.txt").read_text() == "top\n"


def test_umoci_made_layout(tmp_path: Path, store: Store) -> None:
    layout, tag = make_umoci_layout(tmp_path / "umoci")
    image = import_oci_layout(store, layout, tag, "umoci-made")
    assert len(image.layers) == 2
    assert (image.layers[0] / "fs" / "bin" / "busybox").is_file()
    assert (image.layers[1] / "fs" / "etc" / ".wh.hostname").exists()
    assert (image.layers[1] / "fs" / "added.txt").read_text() == "added\n"


def test_skopeo_copied_layout(tmp_path: Path, store: Store) -> None:
    src, tag = make_layered_oci_layout(tmp_path / "src")
    dst = tmp_path / "dst"
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{src}:{tag}", f"oci:{dst}:copied"],
        check=True,
        capture_output=True,
    )
    image = import_rootfs(store, f"oci:{dst}:copied", "copied")
    assert len(image.layers) == 3
    assert (image.layers[2] / "fs" / "top.txt").is_file()


def test_docker_media_types(tmp_path: Path, store: Store) -> None:
    layout, tag = write_oci_layout(tmp_path / "l", [(TarBuilder().file("x", b"1").bytes(), True)])

    def dockerish(manifest: dict[str, Any]) -> None:
        manifest["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
        manifest["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
        manifest["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"

    _rewrite(layout, dockerish)
    image = import_oci_layout(store, layout, tag, "dockerish")
    assert (image.layers[0] / "fs" / "x").read_text() == "1"


def test_tag_selection(tmp_path: Path, store: Store) -> None:
    layout, _ = write_oci_layout(tmp_path / "l", [(TarBuilder().file("a").bytes(), True)], "a")
    write_oci_layout(layout, [(TarBuilder().file("b").bytes(), True)], "b")
    with pytest.raises(ImageError, match="holds 2 images"):
        import_oci_layout(store, layout, None, "x")
    with pytest.raises(ImageNotFound) as info:
        import_oci_layout(store, layout, "c", "x")
    assert info.value.hint is not None and "a, b" in info.value.hint
    image = import_oci_layout(store, layout, "b", "x")
    assert (image.layers[0] / "fs" / "b").exists()


def test_tampered_layer_blob_is_refused(tmp_path: Path, store: Store) -> None:
    layout, tag = write_oci_layout(tmp_path / "l", [(TarBuilder().file("a", b"1").bytes(), False)])
    manifest = _manifest(layout)
    layer = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    layer.write_bytes(TarBuilder().file("a", b"2").bytes())
    with pytest.raises(ImageError, match="digest"):
        import_oci_layout(store, layout, tag, "x")
    assert not list((store.root / "layers").iterdir())


def test_wrong_diff_id_is_refused(tmp_path: Path, store: Store) -> None:
    layout, tag = write_oci_layout(tmp_path / "l", [(TarBuilder().file("a").bytes(), True)])

    def lie(config: dict[str, Any]) -> None:
        config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]

    _rewrite(layout, config_fn=lie)
    with pytest.raises(LayerError, match="config says"):
        import_oci_layout(store, layout, tag, "x")


def test_not_a_layout(tmp_path: Path, store: Store) -> None:
    with pytest.raises(ImageNotFound, match="not an OCI image layout"):
        import_oci_layout(store, tmp_path, None, "x")


def test_path_like_digest_is_refused(tmp_path: Path, store: Store) -> None:
    layout, tag = write_oci_layout(tmp_path / "l", [(TarBuilder().file("a").bytes(), True)])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(ImageError, match="malformed digest"):
        import_oci_layout(store, layout, tag, "x")


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":")[1]


def _put(layout: Path, doc: dict[str, Any], desc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    desc.update(digest=f"sha256:{digest}", size=len(data))
    if "mediaType" in doc and "mediaType" in desc:
        desc["mediaType"] = doc["mediaType"]


def _rewrite(
    layout: Path,
    manifest_fn: Callable[[dict[str, Any]], None] | None = None,
    config_fn: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Edit the first image's manifest/config and fix up the digests above them."""
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]).read_text())
    if config_fn is not None:
        config = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
        config_fn(config)
        _put(layout, config, manifest["config"])
    if manifest_fn is not None:
        manifest_fn(manifest)
    _put(layout, manifest, index["manifests"][0])
    (layout / "index.json").write_text(json.dumps(index))


def _manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    doc: dict[str, Any] = json.loads(_blob(layout, index["manifests"][0]["digest"]).read_text())
    return doc
