"""Read an OCI image layout directory (``skopeo copy ... oci:DIR:TAG``, ``umoci``).

A layout is ``oci-layout`` ({"imageLayoutVersion": "1.0.0"}), ``index.json`` (an image
index whose descriptors may carry ``org.opencontainers.image.ref.name``, the tag) and
``blobs/<alg>/<hex>``. Everything read is verified against its descriptor's digest and
size before use; a digest that is not ``sha256:<64 hex>`` is refused (it would also name
a path). Nested indexes (multi-platform images) are resolved to the host's platform.
Docker schema 2 media types are accepted too, since skopeo may keep them.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ImageError, ImageNotFound
from .store import Image, Store, normalize_name

REF_NAME = "org.opencontainers.image.ref.name"

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_arch() -> str:
    """The host architecture in OCI/Go naming (amd64, arm64, ...)."""
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


def _hint(path: Path) -> str:
    return f"check that {path} was written by `skopeo copy ... oci:DIR:TAG` or umoci"


class _Layout:
    def __init__(self, path: Path) -> None:
        self.path = path
        marker = path / "oci-layout"
        try:
            doc = json.loads(marker.read_text())
        except FileNotFoundError as exc:
            raise ImageNotFound(
                f"{path} is not an OCI image layout (no oci-layout file)", hint=_hint(path)
            ) from exc
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot read {marker}: {exc}", hint=_hint(path)) from exc
        version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise ImageError(
                f"{path}: unsupported imageLayoutVersion {version!r}", hint=_hint(path)
            )

    def blob_path(self, desc: Mapping[str, Any]) -> tuple[Path, str]:
        digest = str(desc.get("digest", ""))
        m = _DIGEST.fullmatch(digest)
        if m is None:
            raise ImageError(
                f"{self.path}: unsupported or malformed digest {digest!r}", hint=_hint(self.path)
            )
        return self.path / "blobs" / "sha256" / m.group(1), m.group(1)

    def read_verified(self, desc: Mapping[str, Any]) -> bytes:
        """A small blob (manifest, config, index), digest and size checked."""
        path, hexdigest = self.blob_path(desc)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{self.path}: missing blob {desc.get('digest')}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != hexdigest:
            raise ImageError(
                f"{self.path}: blob {desc.get('digest')} does not match its digest",
                hint="the layout is damaged; copy it again",
            )
        size = desc.get("size")
        if isinstance(size, int) and size != len(data):
            raise ImageError(f"{self.path}: blob {desc.get('digest')} has the wrong size")
        return data

    def read_json(self, desc: Mapping[str, Any]) -> dict[str, Any]:
        data = self.read_verified(desc)
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ImageError(f"{self.path}: blob {desc.get('digest')} is not JSON") from exc
        if not isinstance(doc, dict):
            raise ImageError(f"{self.path}: blob {desc.get('digest')} is not a JSON object")
        return doc

    def index(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.path / "index.json").read_text())
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot read {self.path}/index.json: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
            raise ImageError(f"{self.path}/index.json has no manifests list")
        return doc


def _media_type(desc: Mapping[str, Any], doc: Mapping[str, Any] | None = None) -> str:
    mt = desc.get("mediaType") or (doc or {}).get("mediaType") or ""
    return str(mt)


def _select_by_tag(layout: _Layout, manifests: list[Any], tag: str | None) -> dict[str, Any]:
    descs = [d for d in manifests if isinstance(d, dict)]
    if tag is not None:
        hits = [d for d in descs if (d.get("annotations") or {}).get(REF_NAME) == tag]
        if not hits:  # some tools store a full reference as the ref.name
            hits = [
                d
                for d in descs
                if str((d.get("annotations") or {}).get(REF_NAME, "")).endswith(f":{tag}")
            ]
        if not hits:
            tags = sorted(
                str((d.get("annotations") or {}).get(REF_NAME))
                for d in descs
                if (d.get("annotations") or {}).get(REF_NAME)
            )
            raise ImageNotFound(
                f"{layout.path} has no image tagged {tag!r}",
                hint=f"tags in this layout: {', '.join(tags) or 'none'}",
            )
        return dict(hits[0])
    if len(descs) == 1:
        return dict(descs[0])
    raise ImageError(
        f"{layout.path} holds {len(descs)} images; say which one",
        hint=f"use oci:{layout.path}:TAG",
    )


def _manifest(layout: _Layout, desc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Follow (possibly nested) indexes to the host platform's manifest."""
    for _ in range(8):
        doc = layout.read_json(desc)
        mt = _media_type(desc, doc)
        if mt in MANIFEST_TYPES or (not mt and "layers" in doc):
            return doc, str(desc["digest"])
        if mt in INDEX_TYPES or "manifests" in doc:
            candidates = [
                d
                for d in doc.get("manifests", [])
                if isinstance(d, dict)
                and (d.get("platform") or {}).get("architecture", host_arch()) == host_arch()
                and (d.get("platform") or {}).get("os", "linux") == "linux"
            ]
            if not candidates:
                raise ImageNotFound(
                    f"{layout.path}: no image for linux/{host_arch()}",
                    hint="copy the image for this platform (skopeo --override-arch)",
                )
            desc = candidates[0]
            continue
        raise ImageError(f"{layout.path}: unsupported manifest media type {mt!r}")
    raise ImageError(f"{layout.path}: image indexes nested too deeply")


def import_oci_layout(
    store: Store, path: Path, tag: str | None, name: str, *, created: list[str] | None = None
) -> Image:
    """Import the image ``tag`` (or the only one) of the layout at ``path`` as ``name``.

    All or nothing: the layers it added are taken back when a later one fails (a blob
    or diff_id that does not match). A caller passing ``created`` gets their diff_ids
    appended there and takes them back itself."""
    if created is not None:
        return _import(store, path, tag, name, created)
    own: list[str] = []
    try:
        return _import(store, path, tag, name, own)
    except BaseException:
        if own:
            store.discard_layers(own)
        raise


def _import(store: Store, path: Path, tag: str | None, name: str, created: list[str]) -> Image:
    normalized = normalize_name(name)
    layout = _Layout(Path(path))
    desc = _select_by_tag(layout, layout.index()["manifests"], tag)
    manifest, manifest_digest = _manifest(layout, desc)
    config_desc = manifest.get("config")
    layers = manifest.get("layers")
    if not isinstance(config_desc, dict) or not isinstance(layers, list):
        raise ImageError(f"{layout.path}: manifest {manifest_digest} lacks config or layers")
    config_bytes = layout.read_verified(config_desc)
    try:
        config = json.loads(config_bytes)
        diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"{layout.path}: image config has no rootfs.diff_ids") from exc
    if len(diff_ids) != len(layers):
        raise ImageError(
            f"{layout.path}: {len(layers)} layers but {len(diff_ids)} diff_ids in the config"
        )
    stored: list[str] = []
    for layer_desc, diff_id in zip(layers, diff_ids, strict=True):
        if not isinstance(layer_desc, dict):
            raise ImageError(f"{layout.path}: malformed layer descriptor")
        mt = _media_type(layer_desc)
        if mt not in LAYER_TYPES:
            raise ImageError(f"{layout.path}: unsupported layer media type {mt!r}")
        m = _DIGEST.fullmatch(diff_id)
        if m is None:
            raise ImageError(f"{layout.path}: unsupported diff_id {diff_id!r}")
        blob, hexdigest = layout.blob_path(layer_desc)
        if not blob.is_file():
            raise ImageError(f"{layout.path}: missing layer blob {layer_desc.get('digest')}")
        info = store.add_layer(blob, digest=hexdigest, diff_id=m.group(1), created=created)
        stored.append(info.diff_id)
    return store.add_image(
        config_bytes, stored, [normalized], manifest_digest.removeprefix("sha256:")
    )


def parse_oci_ref(src: str) -> tuple[Path, str | None]:
    """``oci:PATH[:TAG]`` -> (PATH, TAG). A ``:`` followed by no ``/`` ends the path."""
    rest = src.removeprefix("oci:")
    path, sep, tag = rest.rpartition(":")
    if sep and path and tag and "/" not in tag:
        return Path(path), tag
    return Path(rest), None
