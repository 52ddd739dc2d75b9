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
from rootless.errors import LayerError, StoreFull
from rootless.extract import SpaceGuard, clean_member_path, detect_compression, extract_layer
from tests.images import (
    GIB,
    SPARSE_FORMATS,
    TarBuilder,
    allocated,
    gzip_bomb,
    sparse_tar,
)


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


def test_a_whiteout_of_a_255_byte_name_is_overlayfs_marker(tmp_path: Path) -> None:
    """`.wh.` + 255 bytes cannot be a file name: the whiteout becomes a 0/0 character
    device at the name itself (what fs/ reads as a whiteout); a shorter one stays a file."""
    long, short = "x" * 255, "y" * 251
    data = TarBuilder().dir("d").file(f"d/.wh.{long}", b"").file(f"d/.wh.{short}", b"").bytes()
    fs, meta, _ = _extract(tmp_path, data)
    marker = (fs / "d" / long).lstat()
    assert stat.S_ISCHR(marker.st_mode) and marker.st_rdev == os.makedev(0, 0)
    assert (fs / "d" / f".wh.{short}").is_file()  # control: the OCI form where it fits
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


# --- bounded extraction: sparse members, zeros as holes, the store's free space ----------


@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
def test_sparse_member_stays_sparse_on_disk(tmp_path: Path, fmt: str) -> None:
    blob = sparse_tar(tmp_path / "src", 2 * GIB, fmt)
    assert len(blob) <= 20480  # a few KiB describing 2 GiB
    fs, _, diff_id = _extract(tmp_path, blob)
    out = fs / "sparse.bin"
    assert out.stat().st_size == 2 * GIB
    assert allocated(out) < 1024 * 1024  # not 2 GiB of zeros
    assert diff_id == hashlib.sha256(blob).hexdigest()
    fd = os.open(out, os.O_RDONLY)
    try:  # the data where tar put it, zeros around it
        assert os.pread(fd, 6, 0) == b"start\0"
        assert os.pread(fd, 8, GIB - 1) == b"\0middle\0"
        assert os.pread(fd, 5, 2 * GIB - 4) == b"\0end"
        assert os.pread(fd, 4096, GIB // 2) == bytes(4096)
    finally:
        os.close(fd)


def test_allocated_blocks_show_what_was_really_written(tmp_path: Path) -> None:
    """Control for the sparse tests: data that is not zeros is all on disk."""
    data = os.urandom(4 * 1024 * 1024)
    fs, _, _ = _extract(tmp_path, TarBuilder().file("random.bin", data).bytes())
    assert (fs / "random.bin").read_bytes() == data
    assert allocated(fs / "random.bin") >= len(data)


def test_zero_blocks_become_holes_and_the_content_is_exact(tmp_path: Path) -> None:
    rnd = os.urandom
    data = (
        rnd(100)  # unaligned data, then zeros across block boundaries
        + bytes(3 * 1024 * 1024 + 17)
        + rnd(5000)
        + bytes(4095)  # less than a block of zeros: kept as data
        + rnd(1)
        + bytes(2 * 1024 * 1024)  # trailing zeros: the length comes from ftruncate
    )
    fs, _, _ = _extract(tmp_path, TarBuilder().file("mixed.bin", data).bytes())
    assert (fs / "mixed.bin").read_bytes() == data
    assert allocated(fs / "mixed.bin") < 256 * 1024


def test_gzip_bomb_of_zeros_is_stored_sparse(tmp_path: Path) -> None:
    bomb, diff_id = gzip_bomb(256 * 1024 * 1024)
    assert len(bomb) < 512 * 1024
    fs, _, got = _extract(tmp_path, bomb)
    assert got == diff_id
    assert (fs / "zeros.bin").stat().st_size == 256 * 1024 * 1024
    assert allocated(fs / "zeros.bin") < 1024 * 1024
    assert (fs / "after.txt").read_bytes() == b"after\n"  # the stream goes on after it


def _pax_sparse(realsize: int, regions: list[tuple[int, int]]) -> bytes:
    """A PAX 0.1 sparse member (the map in a PAX header) written by hand."""
    data = b"".join(bytes([65 + i]) * size for i, (_, size) in enumerate(regions))
    headers = {
        "GNU.sparse.size": str(realsize),
        "GNU.sparse.map": ",".join(f"{o},{n}" for o, n in regions),
    }
    return TarBuilder().file("s.bin", data, pax_headers=headers).bytes()


def test_handmade_sparse_map_is_followed(tmp_path: Path) -> None:
    fs, _, _ = _extract(tmp_path, _pax_sparse(10_000, [(0, 3), (8192, 5)]))
    assert (fs / "s.bin").read_bytes() == b"AAA" + bytes(8189) + b"BBBBB" + bytes(10_000 - 8197)


@pytest.mark.parametrize(
    "regions",
    [
        [(0, 10), (5, 10)],  # overlapping
        [(8192, 5), (0, 3)],  # out of order
        [(9_998, 5)],  # past the end of the file
    ],
)
def test_malformed_sparse_map_is_rejected(tmp_path: Path, regions: list[tuple[int, int]]) -> None:
    with pytest.raises(LayerError, match="malformed sparse map") as info:
        _extract(tmp_path, _pax_sparse(10_000, regions))
    assert info.value.hint


class SmallFs:
    """statvfs of a pretend filesystem of ``capacity`` bytes holding exactly what is
    allocated below ``root`` (st_blocks: holes cost nothing), for SpaceGuard."""

    def __init__(self, root: Path, capacity: int) -> None:
        self.root = root
        self.capacity = capacity
        self.looks = 0

    def used(self) -> int:
        total = 0
        for d, dirs, files in os.walk(self.root):
            for name in dirs + files:
                total += os.lstat(os.path.join(d, name)).st_blocks * 512
        return total

    def __call__(self, path: object) -> os.statvfs_result:
        self.looks += 1
        free = max(0, self.capacity - self.used()) // 4096
        blocks = self.capacity // 4096
        return os.statvfs_result((4096, 4096, blocks, free, free, 10**6, 10**6, 10**6, 0, 255))


def _guarded(work: Path, blob: bytes, capacity: int, reserve: int) -> SmallFs:
    """Extract ``blob`` into ``work``/layer on a pretend filesystem of ``capacity``."""
    work.mkdir()
    src = work.parent / f"{work.name}.tar"
    src.write_bytes(blob)
    fake = SmallFs(work, capacity)
    guard = SpaceGuard(work, reserve, "layer sha256:0123456789ab", hint="hint", statvfs=fake)
    extract_layer(src, work / "layer", guard=guard)
    return fake


MIB = 1024 * 1024


def test_space_guard_refuses_a_layer_that_would_eat_the_reserve(tmp_path: Path) -> None:
    blob = TarBuilder().file("a.bin", os.urandom(24 * MIB)).file("b.bin", b"b").bytes()
    fake = SmallFs(tmp_path / "work", 40 * MIB)
    with pytest.raises(StoreFull) as info:
        _guarded(tmp_path / "work", blob, capacity=40 * MIB, reserve=20 * MIB)
    assert info.value.line().startswith(
        "rsbox: error: layer sha256:0123456789ab would leave less than 20 MiB free on "
    )
    assert info.value.hint == "hint" and "\n" not in info.value.line()
    # refused while writing (a.bin half written), never below the reserve
    fs = tmp_path / "work" / "layer" / "fs"
    assert allocated(fs / "a.bin") > 8 * MIB and fake.used() <= 40 * MIB - 20 * MIB
    assert not (fs / "b.bin").exists()


def test_space_guard_control_the_same_layer_fits_a_smaller_reserve(tmp_path: Path) -> None:
    blob = TarBuilder().file("a.bin", os.urandom(24 * MIB)).file("b.bin", b"b").bytes()
    _guarded(tmp_path / "work", blob, capacity=40 * MIB, reserve=8 * MIB)
    assert (tmp_path / "work" / "layer" / "fs" / "b.bin").read_bytes() == b"b"


def test_space_guard_counts_what_is_written_not_what_a_bomb_expands_to(tmp_path: Path) -> None:
    bomb, _ = gzip_bomb(256 * MIB)  # 256 MiB of zeros "fit" in the 12 MiB left
    _guarded(tmp_path / "bomb", bomb, capacity=16 * MIB, reserve=4 * MIB)
    assert (tmp_path / "bomb" / "layer" / "fs" / "zeros.bin").stat().st_size == 256 * MIB
    blob = sparse_tar(tmp_path / "src", 2 * GIB)
    _guarded(tmp_path / "sparse", blob, capacity=16 * MIB, reserve=4 * MIB)
    assert (tmp_path / "sparse" / "layer" / "fs" / "sparse.bin").stat().st_size == 2 * GIB


def test_space_guard_looks_again_as_the_filesystem_fills(tmp_path: Path) -> None:
    fake = SmallFs(tmp_path, capacity=64 * MIB)
    guard = SpaceGuard(tmp_path, 16 * MIB, "layer x", statvfs=fake)
    guard.charge(MIB)
    assert fake.looks == 1
    for _ in range(7):
        guard.charge(MIB)  # within the margin: no look
    assert fake.looks == 1
    (tmp_path / "other").write_bytes(os.urandom(50 * MIB))  # someone else fills it
    with pytest.raises(StoreFull):
        for _ in range(8):
            guard.charge(MIB)
    assert fake.looks == 2
