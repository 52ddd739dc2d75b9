"""`-v`, `--mount`, `--tmpfs` parsing (rootless.mountspec) and the volume filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.filters import VolumeFilter
from rootless.mountspec import parse_mount_flag, parse_tmpfs_flag, tmpfs_mount_args
from rootless.runspec import Volume


def test_mount_forms_as_docker_reads_them() -> None:
    assert parse_mount_flag("type=bind,src=/srv,dst=/d,readonly") == Volume(
        Path("/srv"), "/d", True
    )
    assert parse_mount_flag("source=cache,target=/c,ro=false") == Volume(
        Path(""), "/c", False, "volume", "cache"
    )
    anon = parse_mount_flag("type=volume,destination=/x,volume-nocopy")
    assert (anon.anonymous, anon.options) == (True, "nocopy")
    tmpfs = parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=64MiB,tmpfs-mode=1770")
    assert tmpfs.options == "noexec,nosuid,nodev,size=64m,mode=1770"
    # Docker's CSV: a quoted field may hold a comma.
    assert parse_mount_flag('type=bind,"src=/a,b",dst=/d').source == Path("/a,b")


@pytest.mark.parametrize(
    "text",
    [
        "type=nfs,dst=/x",
        "type=bind,dst=/x",
        "type=bind,src=rel,dst=/x",
        "type=tmpfs,src=/a,dst=/x",
        "type=volume,dst=/x,tmpfs-size=1m",
        "src=v",
        "src=v,dst=rel",
        "src=v,dst=/x,readonly=maybe",
        "src=v,dst=/x,bind-propagation=shared",
    ],
)
def test_bad_mounts_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_mount_flag(text)


def test_tmpfs_options_replace_dockers_defaults() -> None:
    v = parse_tmpfs_flag("/run:exec,size=10k,uid=1000,ro")
    assert v.options == "nosuid,nodev,exec,size=10k,uid=1000,ro" and v.readonly
    flags, data = tmpfs_mount_args(v.options)
    from rootless import syscalls as sc

    assert flags == sc.MS_NOSUID | sc.MS_NODEV | sc.MS_RDONLY and data == "size=10k,uid=1000"
    for bad in ("rel", "/t:size=big", "/t:nosuch", "/t:mode=999"):
        with pytest.raises(UsageError):
            parse_tmpfs_flag(bad)


def test_volume_filters() -> None:
    f = VolumeFilter.parse(["label=a", "label!=b=2", "name=ros", "dangling=true"])
    assert f.matches("rosemary", {"a": "1", "b": "1"}, in_use=False)
    assert not f.matches("rosemary", {"a": "1", "b": "2"}, in_use=False)
    assert not f.matches("rosemary", {"a": "1"}, in_use=True)
    assert not f.matches("tyler", {"a": "1"}, in_use=False)
    assert not VolumeFilter.parse(["driver=nfs"]).matches("x", {}, in_use=False)
    for bad in (["dangling=maybe"], ["colour=red"], ["label"]):
        with pytest.raises(UsageError):
            VolumeFilter.parse(bad)
