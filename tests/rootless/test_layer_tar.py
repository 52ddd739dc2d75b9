"""rootless.images.layer_tar: a container's upper as an OCI layer tarball (read back with
tarfile and with rsbox's own extraction), reproducible byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from fs.changes import Stack, merged_entries, upper_changes
from fs.meta import EntryMeta
from rootless.errors import UsageError
from rootless.extract import extract_layer
from rootless.images.layer_tar import TarWriter, WrittenLayer, write_layer
from tests.fs.upper import Scratch

BASE = {
    "etc/passwd": "root:x:0:0::/root:/bin/sh\n",
    "etc/motd": "hi\n",
    "usr/bin/ping": "ELF",
    "var/cache/a": "a",
    "var/cache/b": "b",
}
CAP = bytes.fromhex("0100000200200000000000000000000000000000")


def _container(base: Path, when: int = 1_700_000_000) -> Scratch:
    """The same container work, whatever `base` is; mtimes all `when` or later."""
    s = Scratch(base, BASE)
    s.write("etc/motd", b"changed\n")
    s.mkdir("home", 0o755)
    s.mkdir("home/app", 0o750, uid=1000, gid=1000)
    s.write("home/app/data", b"data\n", mode=0o640, uid=1000, gid=100)
    s.write("home/app/suid", b"#!", mode=0o755)
    s.chmod("home/app/suid", 0o4755)
    s.symlink("home/app/link", "data", uid=1000, gid=1000)
    s.link("home/app/data", "home/app/hard")
    s.setxattr("usr/bin/ping", "security.capability", CAP)
    s.mkdir("dev")
    s.mknod("dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    s.rm("etc/passwd")
    s.rm_rf("var/cache")
    s.mkdir("var/cache")
    s.write("var/cache/fresh", b"f")
    return s


def _blob(s: Scratch, **kw: object) -> tuple[bytes, WrittenLayer]:
    out = io.BytesIO()
    written = write_layer(upper_changes(Stack.of(s.lowers, s.upper)).items, out, **kw)  # type: ignore[arg-type]
    return out.getvalue(), written


def _members(tar_bytes: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        return tar.getmembers()


def test_members_hold_what_the_container_saw(tmp_path: Path) -> None:
    blob, written = _blob(_container(tmp_path))
    raw = gzip.decompress(blob)
    members = {m.name: m for m in _members(raw)}
    data = members["home/app/data"]
    assert (data.uid, data.gid, data.mode, data.uname) == (1000, 100, 0o640, "")
    assert members["home/app"].isdir() and members["home/app"].uid == 1000
    assert members["home/app/suid"].mode == 0o4755
    link = members["home/app/link"]
    assert link.issym() and link.linkname == "data" and link.uid == 1000
    hard = members["home/app/hard"]
    assert hard.islnk() and hard.linkname == "home/app/data"
    ping = members["usr/bin/ping"]
    assert (
        ping.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
        == CAP
    )
    null = members["dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3) and null.mode == 0o666
    assert members["etc/.wh.passwd"].isreg() and members["etc/.wh.passwd"].size == 0
    assert "var/cache/.wh..wh..opq" in members and "var/cache/fresh" in members
    assert "var/cache/a" not in members
    assert written.diff_id == hashlib.sha256(raw).hexdigest()
    assert written.digest == hashlib.sha256(blob).hexdigest()
    assert written.size == len(raw) and written.blob_size == len(blob)
    assert written.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"


def test_member_order_is_parents_first_and_whiteouts_first(tmp_path: Path) -> None:
    names = [m.name for m in _members(gzip.decompress(_blob(_container(tmp_path))[0]))]
    assert names.index("home") < names.index("home/app") < names.index("home/app/data")
    cache = [n for n in names if n.startswith("var/cache/")]
    assert cache == ["var/cache/.wh..wh..opq", "var/cache/fresh"]
    etc = [n for n in names if n.startswith("etc/")]
    assert etc == ["etc/.wh.passwd", "etc/motd"]


def test_rsbox_extracts_its_own_layer_with_the_same_owners(tmp_path: Path) -> None:
    blob, written = _blob(_container(tmp_path / "c"))
    (tmp_path / "layer.tar.gz").write_bytes(blob)
    result = extract_layer(tmp_path / "layer.tar.gz", tmp_path / "x")
    assert result.diff_id == written.diff_id
    meta = result.meta
    assert meta.get("home/app/data") == EntryMeta(uid=1000, gid=100, mode=stat.S_IFREG | 0o640)
    assert meta.get("usr/bin/ping") is not None
    assert meta.get("usr/bin/ping").xattrs == {"security.capability": CAP}  # type: ignore[union-attr]
    dev = meta.get("dev/null")
    assert dev is not None and dev.rdev == os.makedev(1, 3)
    hard = tmp_path / "x/fs/home/app/hard"
    assert hard.stat().st_ino == (tmp_path / "x/fs/home/app/data").stat().st_ino


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_same_changes_with_a_clamp_give_the_same_bytes(tmp_path: Path, compression: str) -> None:
    a = _container(tmp_path / "a")
    b = _container(tmp_path / "b")
    # the second container did the same work later: every mtime differs
    for root, dirs, files in os.walk(b.upper):
        for n in dirs + files:
            os.utime(os.path.join(root, n), (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    clamp = 1_600_000_000
    blob_a, wa = _blob(a, compression=compression, clamp=clamp)
    blob_b, wb = _blob(b, compression=compression, clamp=clamp)
    assert blob_a == blob_b and wa == wb
    unclamped_a, _ = _blob(a, compression=compression)
    unclamped_b, _ = _blob(b, compression=compression)
    assert unclamped_a != unclamped_b
    raw = (
        gzip.decompress(blob_a)
        if compression == "gzip"
        else zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob_a)).read()
    )
    assert all(m.mtime <= clamp for m in _members(raw))
    if compression == "zstd":
        assert blob_a[:4] == b"\x28\xb5\x2f\xfd"
        assert wa.media_type.endswith("+zstd")
    else:
        assert blob_a[4:8] == b"\0\0\0\0"  # gzip's mtime field: 0


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        _blob(Scratch(tmp_path, BASE), compression="lz4")


def test_sockets_are_left_out_and_names_can_be_given(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.mkdir("run")
    s.mknod("run/sock", stat.S_IFSOCK | 0o777)
    s.write("run/pid", b"1")
    out = io.BytesIO()
    writer = TarWriter(out)
    for e in merged_entries(Stack.of(s.lowers, s.upper), "run"):
        writer.add(e, "x/" + e.path.rpartition("/")[2])
    writer.close()
    assert [m.name for m in _members(out.getvalue())] == ["x/pid"]
