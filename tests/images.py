"""Images built by the test suite itself (reused by tests/rootless and tests/e2e).

* `make_busybox_rootfs`: a directory with the host's static busybox and applet symlinks.
* `make_busybox_tarball`: the same as a (gzip) tarball, owners 0:0.
* `make_layered_oci_layout`: an OCI image layout with three layers: busybox base (gzip),
  a layer with a whiteout (``etc/removeme``) and an opaque directory (``opaque/``), a
  plain-tar top layer. Written by hand (deterministic) and checked against umoci in
  tests/rootless/test_oci_layout.py.
* `make_umoci_layout`: a layered image made by umoci itself (rootless).
* Bombs: `sparse_tar` (GNU tar --sparse: a few KiB describing GiBs), `gzip_bomb` (a few
  MB of gzip inflating to GiBs of zeros), and `docker_archive` / `write_oci_layout_blobs`
  to wrap such layers as they are (never decompressed in memory).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "ls", "cat", "echo", "true", "false", "mkdir", "rm", "touch", "id", "env",
    "sleep", "printf", "test", "stat", "pwd", "hostname", "ps", "grep", "mount", "wc",
    "head", "ln", "chmod", "uname", "readlink", "find", "cp", "mv", "tee", "date",
)  # fmt: skip
TAG = "v1"


def make_busybox_rootfs(dest: Path) -> Path:
    """Create (or fill) ``dest`` as a minimal busybox root filesystem; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "etc", "root", "tmp", "dev", "proc", "sys", "usr/bin", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    os.chmod(dest / "bin" / "busybox", 0o755)
    for applet in APPLETS:
        (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (dest / "etc" / "hostname").write_text("rsbox\n")
    return dest


def make_busybox_tarball(dest: Path, *, compress: bool = True) -> Path:
    """A tarball (gzip unless ``compress=False``) of a busybox rootfs, owners 0:0."""
    work = dest.parent / f".{dest.name}.rootfs"
    make_busybox_rootfs(work)

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(dest, "w:gz" if compress else "w") as tar:
        for name in sorted(os.listdir(work)):
            tar.add(work / name, arcname=name, filter=as_root)
    shutil.rmtree(work)
    return dest


# --- OCI layout by hand ----------------------------------------------------------------


class TarBuilder:
    """Small in-memory tar writer for hand-made (and hostile) layers."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (closed by bytes())

    def _info(self, name: str, kind: bytes, mode: int, **kw: object) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = 1_700_000_000
        for k, v in kw.items():
            setattr(info, k, v)
        return info

    def dir(self, name: str, mode: int = 0o755, **kw: object) -> TarBuilder:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, **kw))
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> TarBuilder:
        info = self._info(name, tarfile.REGTYPE, mode, **kw)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str, **kw: object) -> TarBuilder:
        self.tar.addfile(self._info(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw))
        return self

    def hardlink(self, name: str, target: str, **kw: object) -> TarBuilder:
        self.tar.addfile(self._info(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw))
        return self

    def device(
        self, name: str, kind: bytes, major: int, minor: int, mode: int = 0o666
    ) -> TarBuilder:
        self.tar.addfile(self._info(name, kind, mode, devmajor=major, devminor=minor))
        return self

    def add_tree(self, root: Path) -> TarBuilder:
        def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        for name in sorted(os.listdir(root)):
            self.tar.add(root / name, arcname=name, filter=as_root)
        return self

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def _put_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def put_image(
    layout: Path, config: Mapping[str, object], layers: list[dict[str, object]]
) -> dict[str, object]:
    """Config and manifest blobs of one image; returns the manifest's descriptor."""
    config_desc = _put_blob(layout, json.dumps(config).encode())
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers,
    }
    desc = _put_blob(layout, json.dumps(manifest).encode())
    desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    return desc


def write_oci_layout(
    dest: Path,
    layers: list[tuple[bytes, bool]],
    tag: str = TAG,
    config_extra: dict[str, object] | None = None,
) -> tuple[Path, str]:
    """Write an OCI layout with the given (uncompressed tar, gzip?) layers."""
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layer_descs = []
    diff_ids = []
    for raw, compress in layers:
        diff_ids.append(f"sha256:{hashlib.sha256(raw).hexdigest()}")
        data = gzip.compress(raw, mtime=0) if compress else raw
        desc = _put_blob(dest, data)
        desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        layer_descs.append(desc)
    config = {
        "created": "2024-01-02T03:04:05.123456789Z",
        "architecture": goarch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": {"org.example.test": "layered"},
            **(config_extra or {}),
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest_desc = put_image(dest, config, layer_descs)
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index_path = dest / "index.json"
    manifests: list[object] = []
    if index_path.exists():
        manifests = json.loads(index_path.read_text())["manifests"]
    manifests.append(manifest_desc)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }
    index_path.write_text(json.dumps(index))
    return dest, tag


def goarch() -> str:
    import platform

    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def make_layered_oci_layout(dest: Path) -> tuple[Path, str]:
    """Three layers; after stacking: busybox rootfs, ``/etc/removeme`` deleted by a
    whiteout, ``/opaque`` holding only ``new`` (opaque dir hides ``old1``, ``old2``),
    ``/top.txt`` from the plain top layer. Returns (layout dir, tag)."""
    rootfs = make_busybox_rootfs(dest.parent / f".{dest.name}.rootfs")
    base = (
        TarBuilder()
        .add_tree(rootfs)
        .file("etc/removeme", b"to be removed\n")
        .dir("opaque")
        .file("opaque/old1", b"old\n")
        .file("opaque/old2", b"old\n")
        .bytes()
    )
    shutil.rmtree(rootfs)
    middle = (
        TarBuilder()
        .dir("etc")
        .file("etc/.wh.removeme")
        .dir("opaque")
        .file("opaque/.wh..wh..opq")
        .file("opaque/new", b"new\n")
        .bytes()
    )
    top = TarBuilder().file("top.txt", b"top\n").bytes()
    return write_oci_layout(dest, [(base, True), (middle, True), (top, False)])


def make_umoci_layout(dest: Path, tag: str = TAG) -> tuple[Path, str]:
    """A two-layer image made by umoci (rootless): busybox, then ``etc/hostname`` removed
    and ``etc/gone.txt`` removed (umoci writes the whiteouts), ``added.txt`` created."""
    work = dest.parent / f".{dest.name}.umoci"
    work.mkdir(parents=True)
    image = f"{dest}:{tag}"

    def umoci(*args: str) -> None:
        subprocess.run(["umoci", *args], check=True, capture_output=True)

    umoci("init", "--layout", str(dest))
    umoci("new", "--image", image)
    bundle = work / "bundle"
    umoci("unpack", "--rootless", "--image", image, str(bundle))
    make_busybox_rootfs(bundle / "rootfs")
    (bundle / "rootfs" / "etc" / "gone.txt").write_text("deleted in the next layer\n")
    umoci("repack", "--image", image, str(bundle))
    shutil.rmtree(bundle)
    umoci("unpack", "--rootless", "--image", image, str(bundle))
    (bundle / "rootfs" / "etc" / "hostname").unlink()
    (bundle / "rootfs" / "etc" / "gone.txt").unlink()
    (bundle / "rootfs" / "added.txt").write_text("added\n")
    umoci("repack", "--image", image, str(bundle))
    shutil.rmtree(work)
    return dest, tag


def make_registry_layout(dest: Path, tag: str = TAG) -> tuple[Path, str]:
    """A multi-platform OCI layout for the registry tests: the index holds the host's
    image (busybox base gzip, a zstd layer with ``/zstd.txt``, a plain layer with
    ``/plain.txt``) and an arm64 (or amd64 on arm64 hosts) image of one layer."""
    import zstandard

    rootfs = make_busybox_rootfs(dest.parent / f".{dest.name}.rootfs")
    base = TarBuilder().add_tree(rootfs).bytes()
    shutil.rmtree(rootfs)
    zlayer = TarBuilder().file("zstd.txt", b"from a zstd layer\n").bytes()
    plain = TarBuilder().file("plain.txt", b"from a plain layer\n").bytes()
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def image(arch: str, layers: list[tuple[bytes, str]]) -> dict[str, object]:
        descs, diff_ids = [], []
        for raw, kind in layers:
            diff_ids.append(f"sha256:{hashlib.sha256(raw).hexdigest()}")
            compress: dict[str, Callable[[bytes], bytes]] = {
                "gzip": lambda r: gzip.compress(r, mtime=0),
                "zstd": lambda r: zstandard.ZstdCompressor().compress(r),
                "none": lambda r: r,
            }
            data = compress[kind](raw)
            desc = _put_blob(dest, data)
            suffix = {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[kind]
            desc["mediaType"] = f"application/vnd.oci.image.layer.v1.tar{suffix}"
            descs.append(desc)
        config = {
            "created": "2024-01-02T03:04:05Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        desc = put_image(dest, config, descs)
        desc["platform"] = {"os": "linux", "architecture": arch}
        return desc

    host = goarch()
    other = "amd64" if host == "arm64" else "arm64"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            image(other, [(plain, "gzip")]),
            image(host, [(base, "gzip"), (zlayer, "zstd"), (plain, "none")]),
        ],
    }
    index_desc = _put_blob(dest, json.dumps(index).encode())
    index_desc["mediaType"] = "application/vnd.oci.image.index.v1+json"
    index_desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    top = {"schemaVersion": 2, "manifests": [index_desc]}
    (dest / "index.json").write_text(json.dumps(top))
    return dest, tag


# --- bombs -------------------------------------------------------------------------------

GIB = 1024**3
SPARSE_FORMATS = {  # what `tar --sparse` writes, by name
    "pax-0.0": ["--format=pax", "--sparse-version=0.0"],
    "pax-0.1": ["--format=pax", "--sparse-version=0.1"],
    "pax-1.0": ["--format=pax", "--sparse-version=1.0"],
    "gnu": ["--format=gnu"],
}
SPARSE_DATA = {0: b"start", GIB: b"middle", None: b"end"}  # offset (None: the last bytes)


def sparse_tar(workdir: Path, size: int = 2 * GIB, fmt: str = "pax-1.0") -> bytes:
    """A layer tarball written by GNU ``tar --sparse``: ``sparse.bin`` of ``size`` bytes,
    holes but for `SPARSE_DATA` (at 0, at 1 GiB if inside, and at the end)."""
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "sparse.bin"
    with open(src, "wb") as f:
        f.truncate(size)
        for offset, data in SPARSE_DATA.items():
            if offset is None:
                f.seek(size - len(data))
            elif offset + len(data) <= size - 3:
                f.seek(offset)
            else:
                continue
            f.write(data)
    out = workdir / f"sparse-{fmt}.tar"
    subprocess.run(
        ["tar", "--sparse", *SPARSE_FORMATS[fmt], "--owner=0", "--group=0", "--numeric-owner",
         "-cf", str(out), "-C", str(workdir), src.name],
        check=True,
    )  # fmt: skip
    src.unlink()
    data = out.read_bytes()
    out.unlink()
    return data


@functools.cache
def gzip_bomb(size: int = 2 * GIB) -> tuple[bytes, str]:
    """(gzip blob, diff_id hex) of a layer holding ``zeros.bin``, ``size`` bytes of zeros
    (a plain member, not sparse), then ``after.txt``. Written as concatenated gzip
    members (RFC 1952 allows it; every gzip reader reads them as one stream): about
    1 KiB of gzip per MiB of zeros, so 2 GiB take about 2 MB, built in a moment."""
    assert size % (1024 * 1024) == 0
    zeros = tarfile.TarInfo("zeros.bin")
    zeros.size, zeros.mode, zeros.mtime = size, 0o644, 1_700_000_000
    after = tarfile.TarInfo("after.txt")
    after.size, after.mode, after.mtime = 6, 0o644, 1_700_000_000
    head = zeros.tobuf(tarfile.USTAR_FORMAT)
    tail = after.tobuf(tarfile.USTAR_FORMAT) + b"after\n".ljust(512, b"\0") + bytes(1024)
    mib = bytes(1024 * 1024)
    sha = hashlib.sha256(head)
    for _ in range(size // len(mib)):
        sha.update(mib)
    sha.update(tail)
    one = gzip.compress(mib, 9, mtime=0)
    blob = gzip.compress(head, mtime=0) + one * (size // len(mib)) + gzip.compress(tail, mtime=0)
    return blob, sha.hexdigest()


def docker_archive(
    dest: Path, layers: list[tuple[bytes, str]], tag: str = "localhost/bomb:v1"
) -> Path:
    """A docker-archive (as ``docker save`` writes it) of one image whose layers are
    the given (blob, diff_id hex) as they are: plain tars or, like newer Docker, gzip."""
    config = {
        "architecture": goarch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for _, d in layers]},
    }
    members = {"config.json": json.dumps(config).encode()}
    for i, (blob, _) in enumerate(layers):
        members[f"l{i}/layer.tar"] = blob
    manifest = [{"Config": "config.json", "RepoTags": [tag], "Layers": list(members)[1:]}]
    members["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(dest, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return dest


def write_oci_layout_blobs(
    dest: Path, layers: list[tuple[bytes, str, str]], tag: str = TAG
) -> tuple[Path, str]:
    """An OCI layout of one image whose layers are (blob, media type, diff_id hex) as
    they are (a bomb is never inflated here)."""
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs = []
    for blob, media_type, _ in layers:
        desc = _put_blob(dest, blob)
        desc["mediaType"] = media_type
        descs.append(desc)
    config = {
        "architecture": goarch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for _, _, d in layers]},
    }
    desc = put_image(dest, config, descs)
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "manifests": [desc]}
    (dest / "index.json").write_text(json.dumps(index))
    return dest, tag


def allocated(path: Path) -> int:
    """Bytes the filesystem really allocated for ``path`` (holes cost nothing)."""
    return path.stat().st_blocks * 512


Header = tuple[str, str, str, int, int, str]  # name, type, mode, uid, gid, link target


def archive_layers(archive: Path) -> list[dict[str, tarfile.TarInfo]]:
    """Every layer of a docker-archive (what `rsbox save` writes), base first: each as
    name (without a trailing /) -> tar header."""
    layers = []
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name in manifest[0]["Layers"]:
            raw = outer.extractfile(name).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(raw)) as layer:
                layers.append({m.name.rstrip("/"): m for m in layer.getmembers()})
    return layers


def layer_headers(members: dict[str, tarfile.TarInfo]) -> set[Header]:
    """A layer's headers without times and sizes: what two builds of the same thing share."""
    return {
        (name, m.type.decode(), oct(m.mode), m.uid, m.gid, m.linkname)
        for name, m in members.items()
    }
