from __future__ import annotations

import os
from pathlib import Path

from rootless.launch.mountplan import Mount, Symlink, mount_plan, secure_join
from rootless.runspec import Volume


def test_symlink_to_absolute_path_stays_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/home/victim", root / "etc" / "resolv.conf")
    assert secure_join(str(root), "/etc/resolv.conf") == str(root / "home" / "victim")


def test_dotdot_stops_at_root(tmp_path: Path) -> None:
    os.symlink("../../../../outside", tmp_path / "up")
    assert secure_join(str(tmp_path), "/up/x") == str(tmp_path / "outside" / "x")
    assert secure_join(str(tmp_path), "/../../a") == str(tmp_path / "a")


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    try:
        secure_join(str(tmp_path), "/a/x")
    except OSError as exc:
        assert exc.errno == 40
    else:
        raise AssertionError("ELOOP expected")


def test_plan_order_proc_first_volumes_after_etc_masks_last(tmp_path: Path) -> None:
    steps = mount_plan(
        etc_files={"hosts": tmp_path / "hosts"},
        volumes=(Volume(tmp_path, "/data", True),),
        full_idmap=False,
    )
    targets = [s.target for s in steps]
    assert targets[0] == "/proc"
    assert targets.index("/etc/hosts") < targets.index("/data") < targets.index("/proc/kcore")
    data = next(s for s in steps if isinstance(s, Mount) and s.target == "/data")
    assert data.readonly and data.create == "dir"
    pts = next(s for s in steps if isinstance(s, Mount) and s.target == "/dev/pts")
    assert pts.data is not None and "gid=5" not in pts.data
    assert any(isinstance(s, Symlink) and s.target == "/dev/ptmx" for s in steps)


def test_full_map_gives_devpts_the_tty_group(tmp_path: Path) -> None:
    steps = mount_plan(etc_files={}, volumes=(), full_idmap=True)
    pts = next(s for s in steps if isinstance(s, Mount) and s.target == "/dev/pts")
    assert pts.data is not None and "gid=5" in pts.data


def test_mounts_go_parents_first_copy_up_before_its_volume_tmpfs_as_asked(tmp_path: Path) -> None:
    from rootless import syscalls as sc
    from rootless.launch.mountplan import CopyUp
    from rootless.mountspec import parse_tmpfs_flag

    vols = (
        Volume(tmp_path, "/a/b/c", kind="volume", name="deep", copy_up=True),
        parse_tmpfs_flag("/a:size=1m,exec"),
        Volume(tmp_path, "/a/b"),
    )
    steps = [s for s in mount_plan(etc_files={}, volumes=vols, full_idmap=False)]
    mine = [s for s in steps if s.target.startswith("/a")]
    assert [(type(s).__name__, s.target) for s in mine] == [
        ("Mount", "/a"),
        ("Mount", "/a/b"),
        ("CopyUp", "/a/b/c"),
        ("Mount", "/a/b/c"),
    ]
    tmpfs = mine[0]
    assert isinstance(tmpfs, Mount) and tmpfs.fstype == "tmpfs"
    assert tmpfs.flags == sc.MS_NOSUID | sc.MS_NODEV and tmpfs.data == "size=1m"
    assert isinstance(mine[2], CopyUp) and mine[2].dest == str(tmp_path)
