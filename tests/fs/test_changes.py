"""fs.changes without a mount: the upper read back as Docker's A/C/D and as a layer's
members, and the merged tree as the container sees it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fs.changes import Entry, Opaque, Stack, Whiteout, merged_entries, upper_changes
from fs.meta import EntryMeta
from fs.resolve import LINK_META_PREFIX
from tests.fs.layers import remove_tree
from tests.fs.upper import Scratch
from tests.shared import unavailable

BASE = {
    "etc/passwd": "root:x:0:0::/root:/bin/sh\n",
    "etc/motd": "hi\n",
    "etc/keep/": "",
    "usr/bin/tool": "#!/bin/sh\n",
    "var/lib/pkgs/a": "a",
    "var/lib/pkgs/b": "b",
    "var/lib/pkgs/sub/c": "c",
}


def _stack(s: Scratch) -> Stack:
    return Stack.of(s.lowers, s.upper)


def _diff(s: Scratch, skip: frozenset[str] = frozenset()) -> list[str]:
    return [f"{c.kind} /{c.path}" for c in upper_changes(_stack(s), skip).diff]


def _entries(s: Scratch) -> dict[str, Entry]:
    return {i.path: i for i in upper_changes(_stack(s)).items if isinstance(i, Entry)}


def test_added_changed_deleted_as_docker_lists_them(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.write("etc/motd", b"changed\n")
    s.write("hello.txt", b"hello\n")
    s.mkdir("opt")
    s.write("opt/new", b"n")
    s.rm("usr/bin/tool")
    assert _diff(s) == [
        "C /etc",
        "C /etc/motd",
        "A /hello.txt",
        "A /opt",
        "A /opt/new",
        "C /usr",
        "C /usr/bin",
        "D /usr/bin/tool",
    ]


def test_empty_upper_has_no_changes(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    found = upper_changes(_stack(s))
    assert not found and found.diff == ()


def test_directory_copied_up_for_nothing_is_not_a_change(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.write("etc/tmpfile", b"x")
    s.rm("etc/tmpfile")  # /etc now lives in the upper, with nothing changed in it
    assert (s.upper / "etc").is_dir()
    assert _diff(s) == []


def test_chmod_and_chown_of_a_directory_are_changes(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.chmod("etc/keep", 0o700)
    s.chown("var/lib", 1000, 1000)
    assert _diff(s) == ["C /etc", "C /etc/keep", "C /var", "C /var/lib"]
    items = _entries(s)
    assert items["var/lib"].meta.uid == 1000
    assert stat.S_IMODE(items["etc/keep"].meta.mode) == 0o700


def test_rm_rf_then_mkdir_is_an_opaque_directory(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.rm_rf("var/lib/pkgs")
    s.mkdir("var/lib/pkgs")
    s.write("var/lib/pkgs/b", b"new b")
    found = upper_changes(_stack(s))
    assert Opaque("var/lib/pkgs") in found.items
    diff = [f"{c.kind} /{c.path}" for c in found.diff]
    assert "D /var/lib/pkgs/a" in diff and "D /var/lib/pkgs/sub" in diff
    assert "C /var/lib/pkgs/b" in diff  # it was there before and is there again
    assert "D /var/lib/pkgs/b" not in diff
    # the marker comes right after its directory, before the entries
    names = [type(i).__name__ + ":" + i.path for i in found.items]
    at = names.index("Entry:var/lib/pkgs")
    assert names[at + 1] == "Opaque:var/lib/pkgs"


def test_whiteouts_come_before_their_siblings(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.rm("var/lib/pkgs/b")
    s.write("var/lib/pkgs/-first", b"x")  # sorts before ".wh.b" by bytes
    items = [i for i in upper_changes(_stack(s)).items if i.path.startswith("var/lib/pkgs/")]
    assert items == [Whiteout("var/lib/pkgs/b"), items[1]]
    assert isinstance(items[1], Entry) and items[1].path == "var/lib/pkgs/-first"


def test_owners_and_modes_come_from_the_unions_metadata(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.mkdir("home", 0o755)
    s.mkdir("home/app", 0o750, uid=1000, gid=1000)
    s.write("home/app/data", b"d", mode=0o640, uid=1000, gid=100)
    s.chmod("home/app/data", 0o4750)
    s.symlink("home/app/link", "data", uid=1000, gid=1000)
    items = _entries(s)
    data = items["home/app/data"]
    assert (data.meta.uid, data.meta.gid) == (1000, 100)
    assert data.meta.mode == stat.S_IFREG | 0o4750
    assert os.stat(s.upper / "home/app/data").st_uid == os.getuid()  # the disk's owner
    link = items["home/app/link"]
    assert (link.meta.uid, link.meta.gid, link.link) == (1000, 1000, "data")
    assert items["home/app"].meta.mode == stat.S_IFDIR | 0o750


def test_symlink_sidecars_and_temporaries_are_not_changes(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.mkdir("d")
    s.symlink("d/l", "/etc/passwd", uid=5, gid=5)
    assert any(p.name.startswith(LINK_META_PREFIX) for p in (s.upper / "d").iterdir())
    assert _diff(s) == ["A /d", "A /d/l"]


def test_hard_links_share_an_inode(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.write("a", b"same")
    s.link("a", "b")
    s.link("etc/motd", "motd-too")  # a lower file: copied up, then linked
    items = _entries(s)
    assert items["a"].inode is not None and items["a"].inode == items["b"].inode
    assert items["etc/motd"].inode == items["motd-too"].inode


def test_xattrs_security_capability_included(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    cap = bytes.fromhex("0100000200200000000000000000000000000000")
    s.setxattr("usr/bin/tool", "security.capability", cap)
    s.setxattr("usr/bin/tool", "user.note", b"hello")
    tool = _entries(s)["usr/bin/tool"]
    assert tool.meta.xattrs == {"security.capability": cap, "user.note": b"hello"}


def test_devices_are_what_the_override_says(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.mkdir("dev")
    s.mknod("dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    s.mknod("fifo", stat.S_IFIFO | 0o600)
    items = _entries(s)
    assert items["dev/null"].meta.mode == stat.S_IFCHR | 0o666
    assert items["dev/null"].meta.rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(items["fifo"].meta.mode) and items["fifo"].size == 0


def test_launcher_mount_points_are_left_out(tmp_path: Path) -> None:
    s = Scratch(tmp_path, {"bin/sh": "", "etc/passwd": ""})
    for d in ("proc", "sys", "dev", "data"):
        s.mkdir(d)
    s.write("etc/hosts", b"")  # the bind mount's target, empty
    s.write("etc/resolv.conf", b"")
    s.mkdir("srv")
    s.write("srv/hostname", b"")  # not a mount point: a change
    skip = frozenset({"proc", "sys", "dev", "etc/hosts", "etc/resolv.conf", "data"})
    assert _diff(s, skip) == ["A /srv", "A /srv/hostname"]
    # with content, a mount point path is the container's own file again
    s.write("etc/hosts", b"127.0.0.1 x\n")
    assert _diff(s, skip) == ["C /etc", "A /etc/hosts", "A /srv", "A /srv/hostname"]


def test_directory_added_only_for_mount_points_is_left_out(tmp_path: Path) -> None:
    s = Scratch(tmp_path, {"bin/sh": ""})
    s.mkdir("etc")
    s.write("etc/hosts", b"")
    assert _diff(s, frozenset({"etc/hosts"})) == []
    s.mkdir("empty")  # a mkdir of the container's own stays a change
    assert _diff(s, frozenset({"etc/hosts"})) == ["A /empty"]


def test_renamed_lower_directory(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    s.rename("var/lib/pkgs", "var/lib/moved")
    diff = _diff(s)
    assert "D /var/lib/pkgs" in diff
    assert {"A /var/lib/moved", "A /var/lib/moved/a", "A /var/lib/moved/sub/c"} <= set(diff)


def test_long_name_whiteout_is_a_deletion(tmp_path: Path) -> None:
    long = "n" * 253
    s = Scratch(tmp_path, {f"d/{long}": "x", "d/short": "y"})
    try:
        s.rm(f"d/{long}")
    except OSError as exc:
        unavailable(f"this kernel cannot make a 0/0 whiteout device unprivileged: {exc}")
    found = upper_changes(_stack(s))
    assert Whiteout(f"d/{long}") in found.items
    assert [f"{c.kind} /{c.path}" for c in found.diff] == ["C /d", f"D /d/{long}"]


def test_merged_entries_apply_whiteouts_and_metadata(tmp_path: Path) -> None:
    meta = {"usr/bin/tool": EntryMeta(uid=0, gid=0, mode=stat.S_IFREG | 0o4755)}
    s = Scratch(tmp_path, BASE, {"etc/.wh.motd": "", "etc/added": "z"}, metas=[meta, {}])
    s.write("new", b"n", uid=7, gid=8)
    s.rm("var/lib/pkgs/a")
    entries = {e.path: e for e in merged_entries(_stack(s))}
    assert "etc/motd" not in entries and "var/lib/pkgs/a" not in entries
    assert "etc/added" in entries and "var/lib/pkgs/sub/c" in entries
    assert entries["usr/bin/tool"].meta.mode == stat.S_IFREG | 0o4755
    assert (entries["new"].meta.uid, entries["new"].meta.gid) == (7, 8)
    paths = [e.path for e in merged_entries(_stack(s))]
    assert paths.index("etc") < paths.index("etc/added") < paths.index("etc/passwd")
    with entries["new"].open() as f:
        assert f.read() == b"n"


def test_merged_entries_below_a_path(tmp_path: Path) -> None:
    s = Scratch(tmp_path, BASE)
    stack = _stack(s)
    assert [e.path for e in merged_entries(stack, "var/lib/pkgs")] == [
        "var/lib/pkgs/a",
        "var/lib/pkgs/b",
        "var/lib/pkgs/sub",
        "var/lib/pkgs/sub/c",
    ]
    assert list(merged_entries(stack, "etc/passwd")) == []
    assert stack.lookup("usr/bin/tool") is not None
    assert stack.lookup("etc/passwd/x") is None


@pytest.mark.parametrize("depth", [1500])
def test_deep_upper_is_walked_without_recursion(tmp_path: Path, depth: int) -> None:
    s = Scratch(tmp_path, {"bin/sh": ""})
    ino = s.ino("")
    for _ in range(depth):
        ino = s.u.mkdir(ino, "d", 0o755, 0, 0).ino
    fh, _ = s.u.create(ino, "leaf", 0o644, os.O_WRONLY, 0, 0)
    s.u.release(fh)
    try:
        found = upper_changes(_stack(s))
        assert len(found.diff) == depth + 1
        assert found.diff[-1].path.endswith("/leaf")
    finally:
        remove_tree(s.upper)  # pytest's own cleanup recurses once per level
