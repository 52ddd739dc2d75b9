"""`rsbox load -i` and `rsbox save -o`: docker-archive and oci-archive tarballs.

docker-archive (``docker save``/``podman save``): ``manifest.json`` lists, per image, its
``Config`` (a JSON file), ``RepoTags`` and ``Layers`` (uncompressed, or compressed by
newer Docker, tarballs inside the archive). oci-archive: an OCI image layout in a tar.

The archive is hostile input like any layer: it is never extracted with tarfile's own
path handling. Members are looked up by name and copied one at a time into a private
temporary directory of the store (file names rsbox chooses), then verified on import.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

from .errors import ImageError, UsageError
from .extract import open_decompressed
from .oci_layout import import_oci_layout
from .store import Image, Store, normalize_name

_HEX = re.compile(r"[0-9a-f]{64}")
_HINT = "the file must be a docker-archive or oci-archive tarball (`podman save`, `rsbox save`)"


def _label(tar: tarfile.TarFile) -> str:
    name = tar.name
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"cannot read {path}: {exc}", hint=_HINT) from exc


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        member = tar.getmember(name.removeprefix("./"))
    except KeyError:
        try:
            member = tar.getmember(f"./{name}")
        except KeyError as exc:
            raise ImageError(
                f"{_label(tar)}: {name} is missing from the archive", hint=_HINT
            ) from exc
    f = tar.extractfile(member) if member.isreg() else None
    if f is None:
        raise ImageError(f"{_label(tar)}: {name} is not a regular file", hint=_HINT)
    return f


def _copy_out(tar: tarfile.TarFile, name: str, dest: Path) -> None:
    with _member(tar, name) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1024 * 1024)


def load(store: Store, path: Path) -> list[Image]:
    """Load every image of the archive at ``path``."""
    with _open(path) as tar:
        names = {m.name.removeprefix("./") for m in tar.getmembers()}
        if "manifest.json" in names:
            return _load_docker(store, tar)
        if "index.json" in names and "oci-layout" in names:
            return [_load_oci(store, tar, names)]
    raise ImageError(f"{path} is neither a docker-archive nor an oci-archive", hint=_HINT)


def _load_docker(store: Store, tar: tarfile.TarFile) -> list[Image]:
    try:
        entries = json.load(_member(tar, "manifest.json"))
        assert isinstance(entries, list)
    except (ValueError, AssertionError) as exc:
        raise ImageError(f"{_label(tar)}: manifest.json is malformed", hint=_HINT) from exc
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{_label(tar)}: malformed entry in manifest.json", hint=_HINT)
        config = _member(tar, str(entry.get("Config"))).read()
        try:
            diff_ids = [
                str(d).removeprefix("sha256:") for d in json.loads(config)["rootfs"]["diff_ids"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ImageError(
                f"{_label(tar)}: image config has no rootfs.diff_ids", hint=_HINT
            ) from exc
        if len(diff_ids) != len(entry["Layers"]) or not all(_HEX.fullmatch(d) for d in diff_ids):
            raise ImageError(f"{_label(tar)}: layers and diff_ids do not match", hint=_HINT)
        stored = []
        for layer_name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
            if store.layer_dir(diff_id).is_dir():
                stored.append(diff_id)
                continue
            with tempfile.TemporaryDirectory(prefix="load-", dir=store.tmp) as work:
                blob = Path(work) / "layer"
                _copy_out(tar, str(layer_name), blob)
                stored.append(store.add_layer(blob, diff_id=diff_id).diff_id)
        tags = [normalize_name(t) for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        images.append(store.add_image(config, stored, tags))
    return images


def _load_oci(store: Store, tar: tarfile.TarFile, names: set[str]) -> Image:
    with tempfile.TemporaryDirectory(prefix="load-", dir=store.tmp) as work:
        layout = Path(work) / "layout"
        (layout / "blobs" / "sha256").mkdir(parents=True)
        _copy_out(tar, "oci-layout", layout / "oci-layout")
        _copy_out(tar, "index.json", layout / "index.json")
        for name in names:
            parts = name.split("/")
            if len(parts) == 3 and parts[:2] == ["blobs", "sha256"] and _HEX.fullmatch(parts[2]):
                _copy_out(tar, name, layout / "blobs" / "sha256" / parts[2])
        index = json.loads((layout / "index.json").read_text())
        ref = next(
            (
                str((d.get("annotations") or {}).get("org.opencontainers.image.ref.name"))
                for d in index.get("manifests", [])
                if (d.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            ),
            None,
        )
        name = ref if ref and ":" in ref and "/" in ref else f"localhost/loaded:{ref or 'latest'}"
        return import_oci_layout(store, layout, ref, name)


def save(store: Store, refs: list[str], output: Path, fmt: str = "docker-archive") -> None:
    """Write the images to ``output`` (tmp + rename: never a half-written archive)."""
    if fmt not in ("docker-archive", "oci-archive"):
        raise UsageError(f"unknown format {fmt!r}", hint="use --format docker-archive|oci-archive")
    images = [store.resolve_image(r) for r in refs]
    fd, tmpname = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent or Path("."))
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            if fmt == "docker-archive":
                _save_docker(store, images, refs, tar)
            else:
                if len(images) != 1:
                    raise UsageError("oci-archive holds one image", hint="save one image at a time")
                _save_oci(store, images[0], tar)
        os.replace(tmpname, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmpname)
        raise


def _normalized(ref: str) -> str | None:
    try:
        return normalize_name(ref)
    except UsageError:
        return None


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Archive entries as `podman save` writes them: root-owned, world-readable."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _save_docker(store: Store, images: list[Image], refs: list[str], tar: tarfile.TarFile) -> None:
    manifest: list[dict[str, Any]] = []
    written: set[str] = set()
    for image, ref in zip(images, refs, strict=True):
        config_name = f"{image.id}.json"
        if config_name not in written:
            _add_bytes(tar, config_name, store.image_config_bytes(image.id))
            written.add(config_name)
        layers = []
        for info in store.image_layers(image.id):
            name = f"{info.diff_id}/layer.tar"
            layers.append(name)
            if name in written:
                continue
            written.add(name)
            member = tarfile.TarInfo(name)
            member.size = info.size
            member.mode = 0o644
            with open(store.blob_path(info.blob), "rb") as blob:
                tar.addfile(member, open_decompressed(blob))
        tags = [n for n in image.names if n == _normalized(ref)] or list(image.names)
        manifest.append({"Config": config_name, "RepoTags": tags, "Layers": layers})
    _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())


def _save_oci(store: Store, image: Image, tar: tarfile.TarFile) -> None:
    from .registry.push import save_oci_layout

    tag = image.names[0].rpartition(":")[2] if image.names else "latest"
    with tempfile.TemporaryDirectory(prefix="save-", dir=store.tmp) as work:
        layout = Path(work)
        save_oci_layout(store, image, layout, tag)
        index = json.loads((layout / "index.json").read_text())
        for desc in index["manifests"]:  # full names, as podman/skopeo write them
            if image.names:
                desc["annotations"]["org.opencontainers.image.ref.name"] = image.names[0]
        (layout / "index.json").write_text(json.dumps(index))
        for name in ("oci-layout", "index.json", "blobs", "blobs/sha256"):
            tar.add(layout / name, arcname=name, recursive=False, filter=_as_root)
        for blob in sorted((layout / "blobs" / "sha256").iterdir()):
            tar.add(blob, arcname=f"blobs/sha256/{blob.name}", filter=_as_root)
