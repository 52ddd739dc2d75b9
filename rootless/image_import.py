"""`rsbox import`: a root filesystem (directory or tarball) -> a one-layer image.

Like ``docker import``/``podman import``: a directory is archived in-process with every
owner recorded as 0:0 (the files belong to the user who imports them, and become root's
inside the container); a tarball (plain or compressed) is the layer as it is. The image
gets a minimal OCI config: PATH, ``/bin/sh`` as Cmd, the host's os/architecture.
``oci:PATH[:TAG]`` imports from an OCI image layout instead.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from .errors import ImageError, ImageNotFound
from .extract import SpaceGuard, write_sparse
from .oci_layout import host_arch, import_oci_layout, parse_oci_ref
from .store import Image, Store, normalize_name

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class _SparseOut:
    """The file object tarfile writes the archive to: zeros stay holes, every write is
    charged to the store's guard first."""

    def __init__(self, fd: int, guard: SpaceGuard | None) -> None:
        self.fd = fd
        self.guard = guard
        self.pos = 0

    def write(self, data: bytes) -> int:
        write_sparse(self.fd, self.pos, bytes(data), self.guard)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos


def tar_directory(src: Path, dest: Path, guard: SpaceGuard | None = None) -> None:
    """Write an uncompressed tar of the contents of ``src`` (names relative, no ``./``),
    owners 0:0, symlinks kept as symlinks, hardlinks kept."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        out = _SparseOut(fd, guard)
        with tarfile.open(fileobj=cast(IO[bytes], out), mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(src)):
                tar.add(src / name, arcname=name, recursive=True, filter=_as_root)
        os.ftruncate(fd, out.pos)
    finally:
        os.close(fd)


def minimal_config(diff_id: str, created: str | None = None) -> bytes:
    created = created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = {
        "created": created,
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": created, "created_by": "rsbox import"}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def import_rootfs(store: Store, src: Path | str, ref: str) -> Image:
    """Import ``src`` (directory, tarball, or ``oci:PATH[:TAG]``) as image ``ref``."""
    name = normalize_name(ref)
    if str(src).startswith("oci:"):
        path, tag = parse_oci_ref(str(src))
        return import_oci_layout(store, path, tag, ref)
    src = Path(src)
    if src.is_dir():
        with tempfile.TemporaryDirectory(prefix="import-", dir=store.tmp) as work:
            tarball = Path(work) / "layer.tar"
            try:
                tar_directory(src, tarball, store.space_guard(f"layer of {src}"))
            except OSError as exc:
                raise ImageError(
                    f"cannot archive {src}: {exc}",
                    hint="every file of the directory must be readable by you",
                ) from exc
            info = store.add_layer(tarball)
    elif src.is_file():
        info = store.add_layer(src)
    else:
        raise ImageNotFound(
            f"{src}: no such directory or tarball",
            hint="import a directory, a .tar/.tar.gz file, or oci:DIR[:TAG]",
        )
    return store.add_image(minimal_config(info.diff_id), [info.diff_id], [name])
