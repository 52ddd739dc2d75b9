"""`rsbox load -i` and `rsbox save -o`: docker-archive and oci-archive tarballs.

docker-archive (``docker save``/``podman save``): ``manifest.json`` lists, per image, its
``Config`` (a JSON file), ``RepoTags`` and ``Layers`` (uncompressed, or compressed by
newer Docker, tarballs inside the archive). oci-archive: an OCI image layout in a tar.

The archive is hostile input like any layer: it is never extracted with tarfile's own
path handling. Members are looked up by name and copied one at a time into a private
temporary directory of the store (file names rsbox chooses), then verified on import.
Copies are written sparse and charged to the store's free-space guard, like layers;
JSON members are read up to `MAX_JSON` bytes. A load that fails (a damaged or truncated
archive, a layer that does not match its digest) takes back the layers it had added:
it leaves nothing new in the store.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import lzma
import os
import re
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from .errors import ImageError, RsboxError, StoreError, UsageError
from .extract import SpaceGuard, copy_member, open_decompressed
from .oci_layout import import_oci_layout
from .store import Image, Store, normalize_name

MAX_JSON = 8 * 1024 * 1024  # manifest.json, image configs, index.json
_HEX = re.compile(r"[0-9a-f]{64}")
_HINT = "the file must be a docker-archive or oci-archive tarball (`podman save`, `rsbox save`)"
_DAMAGED: tuple[type[Exception], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
)


def _label(tar: tarfile.TarFile) -> str:
    name = tar.name
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _open(path: Path) -> tarfile.TarFile:
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path} is empty", hint=_HINT)
        return tarfile.open(path, "r:*")
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}", hint=_HINT) from exc
    except tarfile.TarError as exc:
        raise ImageError(
            f"{path} is not a tar archive (plain, gzip, bzip2 or xz)", hint=_HINT
        ) from exc


def _regular(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    try:
        member = tar.getmember(name.removeprefix("./"))
    except KeyError:
        try:
            member = tar.getmember(f"./{name}")
        except KeyError as exc:
            raise ImageError(
                f"{_label(tar)}: {name} is missing from the archive", hint=_HINT
            ) from exc
    if not member.isreg():
        raise ImageError(f"{_label(tar)}: {name} is not a regular file", hint=_HINT)
    return member


def _read_small(tar: tarfile.TarFile, name: str) -> bytes:
    member = _regular(tar, name)
    if member.size > MAX_JSON:
        raise ImageError(
            f"{_label(tar)}: {name} is {member.size} bytes, more than a document can be",
            hint=_HINT,
        )
    f = tar.extractfile(member)
    assert f is not None  # a regular file
    with f:
        return f.read()


def _copy_out(tar: tarfile.TarFile, name: str, dest: Path, guard: SpaceGuard) -> None:
    member = _regular(tar, name)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        copy_member(tar, member, fd, guard)
    finally:
        os.close(fd)


def load(store: Store, path: Path) -> list[Image]:
    """Load every image of the archive at ``path``; all or, on error, nothing new."""
    created: list[str] = []  # layers this load put into the store
    try:
        with _open(path) as tar:
            names = {m.name.removeprefix("./") for m in tar.getmembers()}
            if "manifest.json" in names:
                return _load_docker(store, tar, created)
            if "index.json" in names and "oci-layout" in names:
                return [_load_oci(store, tar, names, created)]
        raise ImageError(
            f"{path} is neither a docker-archive nor an oci-archive (or it is truncated)",
            hint=_HINT,
        )
    except BaseException as exc:
        if created:
            store.discard_layers(created)
        if isinstance(exc, RsboxError):
            raise
        if isinstance(exc, _DAMAGED) or (isinstance(exc, OSError) and exc.errno is None):
            raise ImageError(
                f"{path} is truncated or damaged: {_one_line(exc)}",
                hint="the archive is incomplete or corrupt; copy or save it again",
            ) from exc
        if isinstance(exc, OSError):
            raise StoreError(
                f"cannot load {path}: {_one_line(exc)}",
                hint="check the store's permissions and free space",
            ) from exc
        raise


def _load_docker(store: Store, tar: tarfile.TarFile, created: list[str]) -> list[Image]:
    try:
        entries = json.loads(_read_small(tar, "manifest.json"))
        assert isinstance(entries, list)
    except (ValueError, AssertionError) as exc:
        raise ImageError(f"{_label(tar)}: manifest.json is malformed", hint=_HINT) from exc
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{_label(tar)}: malformed entry in manifest.json", hint=_HINT)
        config = _read_small(tar, str(entry.get("Config")))
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
                guard = store.space_guard(f"layer sha256:{diff_id[:12]}")
                _copy_out(tar, str(layer_name), blob, guard)
                info = store.add_layer(blob, diff_id=diff_id, created=created)
                stored.append(info.diff_id)
        tags = [normalize_name(t) for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        images.append(store.add_image(config, stored, tags))
    return images


def _load_oci(store: Store, tar: tarfile.TarFile, names: set[str], created: list[str]) -> Image:
    with tempfile.TemporaryDirectory(prefix="load-", dir=store.tmp) as work:
        layout = Path(work) / "layout"
        (layout / "blobs" / "sha256").mkdir(parents=True)
        (layout / "oci-layout").write_bytes(_read_small(tar, "oci-layout"))
        index_bytes = _read_small(tar, "index.json")
        (layout / "index.json").write_bytes(index_bytes)
        for name in names:
            parts = name.split("/")
            if len(parts) == 3 and parts[:2] == ["blobs", "sha256"] and _HEX.fullmatch(parts[2]):
                guard = store.space_guard(f"blob sha256:{parts[2][:12]}")
                _copy_out(tar, name, layout / "blobs" / "sha256" / parts[2], guard)
        ref = _ref_name(index_bytes)
        name = ref if ref and ":" in ref and "/" in ref else f"localhost/loaded:{ref or 'latest'}"
        return import_oci_layout(store, layout, ref, name, created=created)


def _ref_name(index_bytes: bytes) -> str | None:
    """The first ``org.opencontainers.image.ref.name`` of an index (None if it has none;
    a malformed index is reported by `import_oci_layout`)."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        for desc in json.loads(index_bytes).get("manifests", []):
            ref = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            if ref:
                return str(ref)
    return None


def save(store: Store, refs: list[str], output: Path, fmt: str = "docker-archive") -> None:
    """Write the images to ``output`` (tmp + rename: never a half-written archive)."""
    if fmt not in ("docker-archive", "oci-archive"):
        raise UsageError(f"unknown format {fmt!r}", hint="use --format docker-archive|oci-archive")
    images = [store.resolve_image(r) for r in refs]
    if fmt == "oci-archive" and len(images) != 1:
        raise UsageError("oci-archive holds one image", hint="save one image at a time")
    try:
        fd, tmpname = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent or Path("."))
    except OSError as exc:
        raise _cannot_write(output, exc) from exc
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            if fmt == "docker-archive":
                _save_docker(store, images, refs, tar)
            else:
                _save_oci(store, images[0], tar)
        os.replace(tmpname, output)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmpname)
        if isinstance(exc, OSError) and exc.filename in (None, tmpname, str(output)):
            raise _cannot_write(output, exc) from exc
        if isinstance(exc, OSError):
            raise StoreError(
                f"cannot read {exc.filename}: {exc.strerror or exc}",
                hint="the store is damaged; remove the image and pull or load it again",
            ) from exc
        raise


def _cannot_write(output: Path, exc: OSError) -> ImageError:
    """`save -o FILE` could not write FILE: one line, and what to do about it."""
    parent = output.parent
    hints = {
        errno.ENOENT: f"the directory {parent} does not exist; create it or choose another -o",
        errno.ENOTDIR: f"{parent} is not a directory; choose another -o",
        errno.EISDIR: f"{output} is a directory; give a file name, such as {output / 'images.tar'}",
        errno.EACCES: f"you cannot write to {parent}; choose another -o",
        errno.EPERM: f"you cannot write to {parent}; choose another -o",
        errno.EROFS: f"{parent} is read-only; choose another -o",
        errno.ENOSPC: f"free some space where {parent} is, or choose another -o",
        errno.EDQUOT: f"free some space where {parent} is, or choose another -o",
    }
    hint = hints.get(exc.errno or 0, f"check that {parent} exists and that you can write there")
    return ImageError(f"cannot write {output}: {exc.strerror or exc}", hint=hint)


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
            with open(store.find_blob(info.blob), "rb") as blob:
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
