"""rootless.cp without a container: argument parsing, symlinks resolved inside the root,
and Docker's destination rules applied through the union's own code (a stopped
container's upper)."""

from __future__ import annotations

import errno
import io
import stat
import tarfile
from pathlib import Path

import pytest

from fs.changes import Stack, merged_entries
from rootless.cp import CpArg, Plan, UnionTarget, apply_archive, parse_arg, resolve_scoped
from rootless.errors import ContainerError
from tests.fs.layers import make_layer

BASE = {"etc/passwd": "root\n", "dst/": "", "file": "f\n", "deep/er/x": "x\n"}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ctr:/etc/passwd", CpArg("ctr", "/etc/passwd")),
        ("ctr:", CpArg("ctr", "/")),
        ("/abs/a:b", CpArg(None, "/abs/a:b")),
        ("./rel:x", CpArg(None, "./rel:x")),
        ("plain", CpArg(None, "plain")),
        ("-", CpArg(None, "-")),
    ],
)
def test_parse_arg(text: str, want: CpArg) -> None:
    assert parse_arg(text) == want


def test_symlinks_resolve_inside_the_root() -> None:
    links = {"a": "/b/c", "b/c": "../../../d", "loop": "loop"}
    look = links.get
    assert resolve_scoped("/a/x", look, False) == "d/x"  # .. stops at the root
    assert resolve_scoped("a", look, False) == "a"  # the last one is kept
    assert resolve_scoped("a", look, True) == "d"
    with pytest.raises(OSError) as exc:
        resolve_scoped("loop/x", look, True)
    assert exc.value.errno == errno.ELOOP


def _target(tmp_path: Path) -> tuple[UnionTarget, Stack]:
    lower = make_layer(tmp_path / "l0", BASE)
    upper = tmp_path / "upper"
    return UnionTarget((lower,), upper), Stack.of((lower,), upper)


def _tar(*members: tuple[str, bytes | None]) -> tarfile.TarFile:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 1000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o4755
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return tarfile.open(fileobj=out, mode="r|")


def _tree(stack: Stack) -> dict[str, tuple[int, int, int]]:
    return {e.path: (e.meta.uid, stat.S_IMODE(e.meta.mode), e.size) for e in merged_entries(stack)}


def test_file_into_directory_and_under_a_new_name(tmp_path: Path) -> None:
    target, stack = _target(tmp_path)
    apply_archive(target, _tar(("f.txt", b"one")), Plan("/dst", False, "f.txt"))
    apply_archive(target, _tar(("f.txt", b"two!")), Plan("/dst/renamed", False, "f.txt"))
    apply_archive(target, _tar(("f.txt", b"three")), Plan("/file", False, "f.txt"))
    tree = _tree(stack)
    assert tree["dst/f.txt"] == (0, 0o4755, 3)  # root's without -a, the mode kept
    assert tree["dst/renamed"][2] == 4
    assert tree["file"][2] == 5  # an existing file is overwritten


def test_directory_rules(tmp_path: Path) -> None:
    target, stack = _target(tmp_path)
    tree = (("d", None), ("d/x", b"x"), ("d/sub", None), ("d/sub/y", b"y"))
    apply_archive(target, _tar(*tree), Plan("/dst", False, "d", src_dir=True, archive=True))
    apply_archive(target, _tar(*tree), Plan("/new", False, "d", src_dir=True))
    apply_archive(target, _tar(*tree), Plan("/dst", False, "d", src_dir=True, contents_only=True))
    got = _tree(stack)
    assert got["dst/d/sub/y"] == (1000, 0o4755, 1) and got["dst/d"][:2] == (1000, 0o750)
    assert got["new/sub/y"][0] == 0 and got["new"][:2] == (0, 0o750)
    assert "dst/x" in got and "dst/sub/y" in got
    with pytest.raises(ContainerError, match="directory to the file"):
        apply_archive(target, _tar(*tree), Plan("/file", False, "d", src_dir=True))
    with pytest.raises(ContainerError, match="does not exist"):
        apply_archive(target, _tar(("f", b"")), Plan("/missing/", False, "f"))
    with pytest.raises(ContainerError, match="does not exist"):
        apply_archive(target, _tar(("f", b"")), Plan("/missing/f", False, "f"))


def test_a_stream_goes_into_an_existing_directory_only(tmp_path: Path) -> None:
    target, stack = _target(tmp_path)
    apply_archive(target, _tar(("a", None), ("a/b", b"b")), Plan("/deep", True, archive=True))
    assert _tree(stack)["deep/a/b"][0] == 1000
    with pytest.raises(ContainerError, match="existing directory"):
        apply_archive(target, _tar(("a", None)), Plan("/file", True))
    with pytest.raises(ContainerError, match="outside"):
        apply_archive(target, _tar(("../escape", b"x")), Plan("/dst", True))
