"""Layer extraction: hostile tarballs never write outside the layer; meta keeps the truth."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from fs.meta import LayerMeta
from rootless.errors import LayerError
from rootless.extract import clean_member_path, detect_compression, extract_layer
from tests.images import TarBuilder


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    d = tmp_path / "sentinel"
    d.mkdir()
    (d / "file").write_text("untouched\n")
    return d


def _snapshot(d: Path) -> dict[str, tuple[int, bytes]]:
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(d))] = (st.st_mode, p.read_bytes() if p.is_file() else b"")
    return out


def _extract(tmp_path: Path, data: bytes, **kw: int) -> tuple[Path, LayerMeta, str]:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(data)
    dest = tmp_path / "layer"
    result = extract_layer(blob, dest, **kw)
    assert LayerMeta.load(dest / "meta").entries == result.meta.entries
    return dest / "fs", result.meta, result.diff_id


def _hostile(tmp_path: Path, sentinel: Path, tar: TarBuilder) -> Path:
    """Extract, expecting LayerError, and check nothing outside the layer changed."""
    before = _snapshot(sentinel)
    with pytest.raises(LayerError) as info:
        _extract(tmp_path, tar.bytes())
    assert info.value.hint
    assert "\n" not in info.value.message
    assert _snapshot(sentinel) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer", "layer.tar", "sentinel"]
    return tmp_path / "layer" / "fs"


def test_clean_member_path_neutralises_and_rejects() -> None:
    assert clean_member_path("/etc/passwd") == ("etc", "passwd")
    assert clean_member_path("./a//b/./c") == ("a", "b", "c")
    assert clean_member_path("a/../b") == ("b",)
    assert clean_member_path("./") == ()
    for bad in ("../x", "a/../../x", "/../x"):
        with pytest.raises(LayerError):
            clean_member_path(bad)


def test_plain_layer_contents_and_diff_id(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .dir("etc")
        .file("etc/hello", b"hi\n")
        .symlink("etc/link", "/etc/hello")
        .hardlink("etc/hard", "etc/hello")
        .bytes()
    )
    fs, meta, diff_id = _extract(tmp_path, data)
    assert diff_id == hashlib.sha256(data).hexdigest()
    assert (fs / "etc" / "hello").read_bytes() == b"hi\n"
    assert os.readlink(fs / "etc" / "link") == "/etc/hello"
    assert (fs / "etc" / "hard").stat().st_ino == (fs / "etc" / "hello").stat().st_ino
    assert len(meta) == 0


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, lambda b: b])
def test_compression_detected_by_magic_and_diff_id_is_uncompressed(
    tmp_path: Path, compress: object
) -> None:
    data = TarBuilder().file("a", b"x" * 10000).bytes()
    assert callable(compress)
    packed = compress(data)
    fs, _, diff_id = _extract(tmp_path, packed)
    assert diff_id == hashlib.sha256(data).hexdigest()
    assert (fs / "a").read_bytes() == b"x" * 10000


def test_detect_compression() -> None:
    assert detect_compression(b"\x1f\x8b\x08") == "gzip"
    assert detect_compression(b"\x28\xb5\x2f\xfd") == "zstd"
    assert detect_compression(b"ustar") == "none"


def test_absolute_path_is_neutralised(tmp_path: Path, sentinel: Path) -> None:
    before = _snapshot(sentinel)
    fs, _, _ = _extract(tmp_path, TarBuilder().file(f"{sentinel}/file", b"pwned").bytes())
    assert _snapshot(sentinel) == before
    assert (fs / str(sentinel).lstrip("/") / "file").read_bytes() == b"pwned"


def test_dotdot_traversal_is_rejected(tmp_path: Path, sentinel: Path) -> None:
    _hostile(tmp_path, sentinel, TarBuilder().file("../../sentinel/x", b"pwned"))


def test_dotdot_inside_the_layer_is_resolved(tmp_path: Path) -> None:
    fs, _, _ = _extract(tmp_path, TarBuilder().dir("a").file("a/../b", b"ok").bytes())
    assert (fs / "b").read_bytes() == b"ok"


def test_symlink_parent_escape_is_rejected(tmp_path: Path, sentinel: Path) -> None:
    fs = _hostile(
        tmp_path, sentinel, TarBuilder().symlink("a", str(sentinel)).file("a/pwned", b"x")
    )
    assert not (sentinel / "pwned").exists()
    assert os.readlink(fs / "a") == str(sentinel)


def test_relative_symlink_parent_escape_is_rejected(tmp_path: Path, sentinel: Path) -> None:
    _hostile(
        tmp_path,
        sentinel,
        TarBuilder().symlink("a", "../../sentinel").file("a/file", b"pwned"),
    )


def test_symlink_directory_in_deep_parent_is_rejected(tmp_path: Path, sentinel: Path) -> None:
    _hostile(
        tmp_path,
        sentinel,
        TarBuilder().dir("d").symlink("d/s", str(sentinel)).dir("d/s/sub").file("d/s/sub/f"),
    )


def test_hardlink_escape_is_rejected(tmp_path: Path, sentinel: Path) -> None:
    _hostile(tmp_path, sentinel, TarBuilder().hardlink("h", "../../sentinel/file"))


def test_hardlink_absolute_target_stays_inside(tmp_path: Path, sentinel: Path) -> None:
    # "/…/sentinel/file" is neutralised to a path inside the layer, which does not exist.
    _hostile(tmp_path, sentinel, TarBuilder().hardlink("h", f"{sentinel}/file"))


def test_hardlink_through_symlink_parent_is_rejected(tmp_path: Path, sentinel: Path) -> None:
    _hostile(tmp_path, sentinel, TarBuilder().symlink("s", str(sentinel)).hardlink("h", "s/file"))


def test_hardlink_to_escaping_symlink_links_the_symlink(tmp_path: Path, sentinel: Path) -> None:
    before = _snapshot(sentinel)
    data = (
        TarBuilder()
        .symlink("s", f"{sentinel}/file")
        .hardlink("h", "s")
        .file("s", b"pwned via s")  # replaces the symlink, never writes through it
        .file("h", b"pwned via h")
        .bytes()
    )
    fs, _, _ = _extract(tmp_path, data)
    assert _snapshot(sentinel) == before
    assert (fs / "s").read_bytes() == b"pwned via s"
    assert (fs / "h").read_bytes() == b"pwned via h"


def test_file_over_escaping_symlink_replaces_the_symlink(tmp_path: Path, sentinel: Path) -> None:
    before = _snapshot(sentinel)
    data = TarBuilder().symlink("f", f"{sentinel}/file").file("f", b"pwned").bytes()
    fs, _, _ = _extract(tmp_path, data)
    assert _snapshot(sentinel) == before
    assert not (fs / "f").is_symlink()


def test_dir_over_escaping_symlink_is_not_followed(tmp_path: Path, sentinel: Path) -> None:
    before = _snapshot(sentinel)
    data = TarBuilder().symlink("d", str(sentinel)).dir("d", mode=0o000).bytes()
    fs, _, _ = _extract(tmp_path, data)
    assert _snapshot(sentinel) == before
    assert stat.S_ISDIR((fs / "d").lstat().st_mode)


def test_device_nodes_become_placeholders_with_meta(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .dir("dev")
        .device("dev/null", tarfile.CHRTYPE, 1, 3)
        .device("dev/sda", tarfile.BLKTYPE, 8, 0, 0o660)
        .device("dev/fifo", tarfile.FIFOTYPE, 0, 0, 0o600)
        .bytes()
    )
    fs, meta, _ = _extract(tmp_path, data)
    st = (fs / "dev" / "null").lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    null = meta.get("dev/null")
    assert null is not None
    assert null.mode == stat.S_IFCHR | 0o666 and null.rdev == os.makedev(1, 3)
    sda = meta.get("dev/sda")
    assert sda is not None and sda.mode == stat.S_IFBLK | 0o660
    fifo = meta.get("dev/fifo")
    assert fifo is not None and stat.S_ISFIFO(fifo.mode)


def test_setuid_is_stripped_on_disk_and_kept_in_meta(tmp_path: Path) -> None:
    data = TarBuilder().file("passwd", b"#!", mode=0o4755).file("sg", mode=0o2755).bytes()
    fs, meta, _ = _extract(tmp_path, data)
    assert stat.S_IMODE((fs / "passwd").lstat().st_mode) == 0o755
    entry = meta.get("passwd")
    assert entry is not None and entry.mode == stat.S_IFREG | 0o4755
    sg = meta.get("sg")
    assert sg is not None and sg.mode == stat.S_IFREG | 0o2755


def test_lockout_modes_stay_usable_on_disk(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .dir("locked", mode=0o000)
        .file("locked/secret", b"s", mode=0o000)
        .dir("ro", mode=0o555)
        .bytes()
    )
    fs, meta, _ = _extract(tmp_path, data)
    assert stat.S_IMODE((fs / "locked").lstat().st_mode) == 0o700
    assert (fs / "locked" / "secret").read_bytes() == b"s"
    assert stat.S_IMODE((fs / "locked" / "secret").lstat().st_mode) == 0o600
    locked = meta.get("locked")
    assert locked is not None and locked.mode == stat.S_IFDIR
    secret = meta.get("locked/secret")
    assert secret is not None and secret.mode == stat.S_IFREG
    ro = meta.get("ro")
    assert ro is not None and ro.mode == stat.S_IFDIR | 0o555
    assert stat.S_IMODE((fs / "ro").lstat().st_mode) == 0o755


def test_ownership_and_xattrs_go_to_meta(tmp_path: Path) -> None:
    b = TarBuilder()
    info = tarfile.TarInfo("home/u")
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.uid = info.gid = 1000
    info.pax_headers = {"SCHILY.xattr.user.test": "value", "SCHILY.xattr.security.x": "y"}
    b.dir("home")
    b.tar.addfile(info)
    fs, meta, _ = _extract(tmp_path, b.bytes())
    entry = meta.get("home/u")
    assert entry is not None
    assert (entry.uid, entry.gid) == (1000, 1000)
    assert entry.xattrs == {"user.test": b"value", "security.x": b"y"}
    assert (fs / "home" / "u").lstat().st_uid == os.getuid()


def test_whiteouts_are_kept_as_plain_files(tmp_path: Path) -> None:
    data = (
        TarBuilder().dir("etc").file("etc/.wh.passwd").dir("opt").file("opt/.wh..wh..opq").bytes()
    )
    fs, meta, _ = _extract(tmp_path, data)
    assert (fs / "etc" / ".wh.passwd").is_file()
    assert (fs / "opt" / ".wh..wh..opq").is_file()
    assert len(meta) == 0


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .dir("x")
        .file("x/inner", b"1")
        .file("x", b"now a file")
        .file("y", b"old")
        .file("y", b"new")
        .bytes()
    )
    fs, _, _ = _extract(tmp_path, data)
    assert (fs / "x").read_bytes() == b"now a file"
    assert (fs / "y").read_bytes() == b"new"


def test_size_limit_rejects_bombs(tmp_path: Path) -> None:
    data = gzip.compress(TarBuilder().file("big", b"\0" * 1_000_000).bytes())
    assert len(data) < 10_000
    with pytest.raises(LayerError, match="limit"):
        _extract(tmp_path, data, max_bytes=100_000)


def test_corrupt_stream_is_a_layer_error(tmp_path: Path) -> None:
    good = gzip.compress(TarBuilder().file("a", b"x" * 5000).bytes())
    with pytest.raises(LayerError, match="corrupt"):
        _extract(tmp_path, good[: len(good) // 2])


def test_truncated_plain_tar_is_a_layer_error(tmp_path: Path) -> None:
    data = TarBuilder().file("a", os.urandom(5000)).bytes()
    with pytest.raises(LayerError):
        _extract(tmp_path, data[:1024])


def test_empty_regular_stream_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LayerError):
        _extract(tmp_path, b"this is not a tar file at all" * 30)


def test_tarfile_written_by_python_roundtrips(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("dir/file")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    fs, _, _ = _extract(tmp_path, buf.getvalue())
    assert (fs / "dir" / "file").read_bytes() == b"abc"


def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    data = TarBuilder().file("implicit/parent/file", b"x", mode=0o644).dir("d", 0o755).bytes()
    old = os.umask(0o077)
    try:
        fs, meta, _ = _extract(tmp_path, data)
    finally:
        os.umask(old)
    assert stat.S_IMODE(fs.stat().st_mode) == 0o755
    assert stat.S_IMODE((fs / "implicit").stat().st_mode) == 0o755
    assert stat.S_IMODE((fs / "implicit" / "parent").stat().st_mode) == 0o755
    assert stat.S_IMODE((fs / "implicit" / "parent" / "file").stat().st_mode) == 0o644
    assert stat.S_IMODE((fs / "d").stat().st_mode) == 0o755
    assert len(meta) == 0


def test_zstd_layer_extracts_and_a_damaged_frame_is_a_layer_error(tmp_path: Path) -> None:
    import zstandard

    data = TarBuilder().file("z.txt", b"zstd\n" * 1000).bytes()
    fs, _, _ = _extract(tmp_path, zstandard.ZstdCompressor().compress(data))
    assert (fs / "z.txt").read_bytes() == b"zstd\n" * 1000
    frame = bytearray(zstandard.ZstdCompressor().compress(data))
    frame[12:40] = b"\xff" * 28
    (tmp_path / "bad").mkdir()
    with pytest.raises(LayerError, match="corrupt") as info:
        _extract(tmp_path / "bad", bytes(frame))
    assert info.value.hint


def test_sparse_file_counts_its_expanded_size(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as f:
        f.truncate(5_000_000)
        f.seek(5_000_000)
        f.write(b"x")
    blob = tmp_path / "sparse.tar"
    subprocess.run(
        ["tar", "--sparse", "--format=pax", "-cf", str(blob), "-C", str(tmp_path), sparse.name],
        check=True,
    )
    assert blob.stat().st_size < 100_000
    with pytest.raises(LayerError, match="limit"):
        extract_layer(blob, tmp_path / "layer", max_bytes=1_000_000)
    (tmp_path / "ok").mkdir()
    fs, _, _ = _extract(tmp_path / "ok", blob.read_bytes())
    data = (fs / "sparse.bin").read_bytes()
    assert len(data) == 5_000_001 and data[-1:] == b"x" and not data[:-1].strip(b"\0")
