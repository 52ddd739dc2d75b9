"""Volumes through the real CLI: named and anonymous volumes, `volume create|ls|inspect|
rm|prune`, `run -v/--mount/--tmpfs`, `rm -v`, and what `system df`/`system prune
--volumes` make of them.

Expected outputs follow Docker's documentation (docker/cli docs/reference/commandline:
volume_ls.md, volume_inspect.md, volume_prune.md, volume_rm.md, system_prune.md), with
this run's values in place of the example's. Each test that counts or prunes volumes has
a store of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.idmap import host_idmap
from tests.e2e.conftest import Rsbox, du, one_line_error, table
from tests.images import TarBuilder, make_busybox_rootfs, write_oci_layout

APP = {"uid": 1000, "gid": 1000, "uname": "app", "gname": "app"}


def _seeded_store(base: Path) -> Rsbox:
    """A store with `bb` (busybox) and `seeded`: busybox plus /data (app:app 0750) holding
    seed (app:app 0640), a symlink, a hard link and sub/deep (root, 0700), and the image
    config's `Volumes: {"/data": {}}` (a Containerfile's VOLUME /data)."""
    rs = Rsbox(base / "store")
    rootfs = make_busybox_rootfs(base / "bb")
    rs("import", str(rootfs), "bb", check=True)
    layer = (
        TarBuilder()
        .add_tree(rootfs)
        .dir("data", 0o750, **APP)
        .file("data/seed", b"seed\n", 0o640, **APP)
        .symlink("data/link", "seed")
        .hardlink("data/hard", "data/seed", **APP)
        .dir("data/sub", 0o700)
        .file("data/sub/deep", b"deep\n", 0o600)
        .bytes()
    )
    layout, tag = write_oci_layout(
        base / "layout", [(layer, True)], config_extra={"Volumes": {"/data": {}}}
    )
    rs("import", f"oci:{layout}:{tag}", "seeded", check=True)
    return rs


def _empty(rs: Rsbox) -> None:
    """Remove every container and volume: under the full map a volume holds files of
    the user's subordinate ids, which only rsbox (from a user namespace) can remove."""
    ids = rs("ps", "-aq", "--no-trunc", check=True).stdout.split()
    if ids:
        rs("rm", "-f", *ids, check=True)
    rs("volume", "prune", "-af", check=True)
    assert _volumes(rs) == set()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsbox]:
    rs = _seeded_store(tmp_path_factory.mktemp("volumes"))
    yield rs
    _empty(rs)


@pytest.fixture()
def fresh(tmp_path: Path) -> Iterator[Rsbox]:
    rs = _seeded_store(tmp_path)
    yield rs
    _empty(rs)


def _uniq(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{os.urandom(3).hex()}"


def _volumes(rs: Rsbox) -> set[str]:
    return set(rs("volume", "ls", "-q", check=True).stdout.split())


def _data(rs: Rsbox, name: str) -> Path:
    return rs.root / "volumes" / name / "_data"


# --- named volumes -------------------------------------------------------------------------


def test_named_volume_outlives_its_container_and_starts_as_the_image(
    seeded: Rsbox, userns: str
) -> None:
    vol, c1 = _uniq("vol"), _uniq("c")
    full = userns == "auto" and host_idmap("auto").full
    show = "stat -c '%u:%g %a %n' /data /data/seed /data/sub /data/sub/deep; cat /data/seed"
    first = seeded.run(
        "--userns", userns, "--network", "none", "--name", c1, "-v", f"{vol}:/data",
        "seeded", "sh", "-c", f"{show}; readlink /data/link; echo written > /data/new;"
        " [ $(stat -c %i /data/seed) = $(stat -c %i /data/hard) ] && echo linked",
        check=True,
    )  # fmt: skip
    # The container sees the image's owners and modes in the new volume. Under the
    # single map only root exists: the union shows app's files as root's, and so does
    # the copy.
    owner = "1000:1000" if full else "0:0"
    assert first.stdout.splitlines() == [
        f"{owner} 750 /data",
        f"{owner} 640 /data/seed",
        "0:0 700 /data/sub",
        "0:0 600 /data/sub/deep",
        "seed",
        "seed",
        "linked",
    ]
    assert vol in _volumes(seeded)
    seeded("rm", c1, check=True)
    assert vol in _volumes(seeded), "a named volume outlives its container"
    # On the host: under the full map the copy has the owners the container sees, so
    # /data is owned by the 1000th subordinate id (0750: closed to the user, as it would
    # be to another user); under the single map everything is the user's.
    data = _data(seeded, vol)
    if full:
        sub = host_idmap("auto").subuid
        assert sub is not None
        assert os.stat(data).st_uid == sub.start + 999
        with pytest.raises(PermissionError):
            os.listdir(data)
    else:
        assert os.stat(data / "new").st_uid == os.getuid()  # container root is the user
        assert os.stat(data / "seed").st_ino == os.stat(data / "hard").st_ino

    # The next container sees what the first one wrote; the image's files are copied
    # only into a new volume: a file deleted from it stays deleted.
    second = seeded.run(
        "--userns", userns, "--network", "none", "--rm", "-v", f"{vol}:/data", "seeded",
        "sh", "-c", "cat /data/new; rm /data/seed; ls /data",
        check=True,
    )  # fmt: skip
    assert second.stdout.split() == ["written", "hard", "link", "new", "sub"]
    third = seeded.run(
        "--userns", userns, "--network", "none", "--rm", "-v", f"{vol}:/data", "seeded",
        "ls", "/data",
        check=True,
    )  # fmt: skip
    assert third.stdout.split() == ["hard", "link", "new", "sub"]
    # Removal works whatever ids the container wrote with.
    assert seeded("volume", "rm", vol, check=True).stdout == f"{vol}\n"
    assert not (seeded.root / "volumes" / vol).exists()
    assert vol not in _volumes(seeded)


def test_volume_in_use_is_not_removed_and_rm_f_takes_the_container(seeded: Rsbox) -> None:
    vol, c1 = _uniq("vol"), _uniq("c")
    assert seeded("volume", "create", vol, check=True).stdout == f"{vol}\n"
    cid = seeded.run(
        "--network", "none", "--name", c1, "-v", f"{vol}:/data", "bb", "true", check=True
    )
    assert cid.returncode == 0
    full_id = seeded("inspect", "--format", "{{.Id}}", c1, check=True).stdout.strip()
    res = seeded("volume", "rm", vol)
    one_line_error(
        res, f"remove {vol}: volume is in use - [{full_id}]", "hint:", hint=False, alone=True
    )
    assert vol in _volumes(seeded)
    # The same removal is allowed once the container is gone.
    seeded("rm", c1, check=True)
    assert seeded("volume", "rm", vol, check=True).stdout == f"{vol}\n"
    # -f (Podman's rule): the containers that use it go first.
    seeded("volume", "create", vol, check=True)
    seeded.run("--network", "none", "--name", c1, "-v", f"{vol}:/d", "bb", "true", check=True)
    assert seeded("volume", "rm", "-f", vol, check=True).stdout == f"{vol}\n"
    assert seeded("inspect", c1).returncode == 125
    assert vol not in _volumes(seeded)


def test_anonymous_volumes_go_with_rm_v_and_run_rm_named_ones_stay(seeded: Rsbox) -> None:
    named, c1 = _uniq("keep"), _uniq("c")
    before = _volumes(seeded)
    seeded.run(
        "--network", "none", "--name", c1, "-v", "/anon", "-v", f"{named}:/named", "seeded",
        "sh", "-c", "cat /data/seed",
        check=True,
    )  # fmt: skip
    made = _volumes(seeded) - before
    assert named in made and len(made) == 3  # -v /anon, the image's /data, the named one
    anonymous = made - {named}
    assert all(re.fullmatch(r"[0-9a-f]{64}", a) for a in anonymous)
    ps = seeded(
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        f"name={c1}",
        "--format",
        "{{.LocalVolumes}} {{.Mounts}}",
    )
    count, mounts = ps.stdout.split()
    assert count == "3" and named in mounts.split(",")
    mounts_of = "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}};{{end}}"
    shown = seeded("inspect", "--format", mounts_of, c1, check=True).stdout
    assert f"volume {named} /named true;" in shown and " /anon true;" in shown
    seeded("rm", "-v", c1, check=True)
    assert _volumes(seeded) - before == {named}
    # run --rm: the image's VOLUME goes with the container (foreground and detached).
    seeded.run("--network", "none", "--rm", "seeded", "cat", "/data/seed", check=True)
    cid = seeded.run("--network", "none", "-d", "--rm", "seeded", "true", check=True)
    seeded("wait", cid.stdout.strip())
    for _ in range(50):
        if _volumes(seeded) - before == {named}:
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert _volumes(seeded) - before == {named}
    seeded("volume", "rm", named, check=True)


# --- ls and inspect ------------------------------------------------------------------------


def test_ls_and_inspect_print_dockers_shapes(tmp_path: Path) -> None:
    rs = Rsbox(tmp_path / "store")
    assert rs("volume", "create", "rosemary", check=True).stdout == "rosemary\n"
    rs("volume", "create", "tyler", "--label", "is-timelord=yes", check=True)
    rs("volume", "create", "daleks", "--label", "is-timelord=no", check=True)
    # volume_ls.md: the default table, sorted by name.
    assert rs("volume", "ls", check=True).stdout == table(
        ("DRIVER", "VOLUME NAME"), ("local", "daleks"), ("local", "rosemary"), ("local", "tyler")
    )
    assert rs("volume", "ls", "-q", check=True).stdout == "daleks\nrosemary\ntyler\n"
    assert rs("volume", "list", "-q", check=True).stdout == "daleks\nrosemary\ntyler\n"
    assert rs("volume", "ls", "--format", "{{.Name}}: {{.Driver}}", check=True).stdout == (
        "daleks: local\nrosemary: local\ntyler: local\n"
    )
    mount = str(rs.root / "volumes" / "rosemary" / "_data")
    lines = rs("volume", "ls", "--format", "json", check=True).stdout.splitlines()
    assert lines[1] == (
        '{"Driver":"local","Labels":"","Links":"N/A","Mountpoint":"' + mount + '",'
        '"Name":"rosemary","Scope":"local","Size":"N/A"}'
    )
    assert rs(
        "volume", "ls", "--format", 'table {{.Name}}\t{{.Label "is-timelord"}}', check=True
    ).stdout == table(("VOLUME NAME", "is timelord"), ("daleks", "no"), ("rosemary", ""), ("tyler", "yes"))  # fmt: skip
    # Filters (volume_ls.md): label alone, label=value, name (a part), dangling.
    ls = ("volume", "ls", "-q", "--filter")
    assert rs(*ls, "label=is-timelord", check=True).stdout == "daleks\ntyler\n"
    assert rs(*ls, "label=is-timelord=yes", check=True).stdout == "tyler\n"
    assert rs(*ls, "name=rose", check=True).stdout == "rosemary\n"
    assert rs(*ls, "dangling=true", check=True).stdout == "daleks\nrosemary\ntyler\n"
    assert rs(*ls, "dangling=false", check=True).stdout == ""
    # volume_inspect.md: a JSON array, four spaces of indent; --format once per volume.
    out = rs("volume", "inspect", "tyler", check=True).stdout
    doc = json.loads(out)
    assert list(doc[0]) == [
        "CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"
    ]  # fmt: skip
    assert doc[0]["Labels"] == {"is-timelord": "yes"} and doc[0]["Options"] == {}
    assert doc[0]["Mountpoint"] == str(rs.root / "volumes" / "tyler" / "_data")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc[0]["CreatedAt"])
    assert out.startswith('[\n    {\n        "CreatedAt": ')
    assert rs("volume", "inspect", "--format", "{{ .Mountpoint }}", "rosemary").stdout == (
        mount + "\n"
    )
    # An existing name is no error (Docker), and the volume keeps its labels.
    assert rs("volume", "create", "tyler", check=True).stdout == "tyler\n"
    assert rs(*ls, "label=is-timelord=yes", check=True).stdout == "tyler\n"
    # A name of Docker's random form when none is given.
    made = rs("volume", "create", check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", made)


# --- prune and df --------------------------------------------------------------------------


def test_prune_removes_exactly_the_unused_volumes(fresh: Rsbox) -> None:
    rs = fresh
    net = ("--network", "none")
    rs("volume", "create", "unused-named", check=True)
    rs("volume", "create", "kept-by-label", "--label", "keep=1", check=True)
    rs.run(*net, "--name", "user", "-v", "used-named:/u", "bb", "true", check=True)
    rs.run(*net, "--name", "gone", "seeded", "true", check=True)
    anon_gone = _volumes(rs) - {"unused-named", "kept-by-label", "used-named"}
    rs("rm", "gone", check=True)  # without -v: its anonymous volume stays, unused
    rs.run(*net, "--name", "holder", "seeded", "true", check=True)
    anon_used = _volumes(rs) - anon_gone - {"unused-named", "kept-by-label", "used-named"}
    assert len(anon_gone) == 1 and len(anon_used) == 1

    # df: four volumes' worth, two of them active, sizes from the store.
    rs.run(*net, "--rm", "-v", "unused-named:/x", "bb", "sh", "-c",
           "head -c 307200 /dev/zero > /x/f", check=True)  # fmt: skip
    df = rs("system", "df", "--format", "{{json .}}", check=True).stdout.splitlines()
    line = json.loads(df[2])
    assert line["Type"] == "Local Volumes"
    assert (line["TotalCount"], line["Active"]) == ("5", "2")
    size = float(line["Size"].rstrip("kMB")) * {"kB": 1e3, "MB": 1e6}[line["Size"][-2:]]
    assert abs(size - du(*(rs.root / "volumes").iterdir(), check=False)) <= 0.01 * size

    verbose = rs("system", "df", "-v", check=True).stdout
    assert re.search(r"\nused-named +1 +\S+\n", verbose), verbose
    assert re.search(r"\nunused-named +0 +3\d\d(\.\d+)?kB\n", verbose), verbose
    # volume_prune.md (Docker 23+): anonymous unused volumes only...
    res = rs("volume", "prune", "-f", check=True)
    (gone,) = anon_gone
    assert res.stdout.startswith(f"Deleted Volumes:\n{gone}\n\nTotal reclaimed space: ")
    assert _volumes(rs) == {"unused-named", "kept-by-label", "used-named", *anon_used}
    # ...-a every unused one, except what a filter keeps; nothing a container uses.
    res = rs("volume", "prune", "-af", "--filter", "label!=keep", check=True)
    assert res.stdout.startswith("Deleted Volumes:\nunused-named\n\nTotal reclaimed space: 3")
    assert _volumes(rs) == {"kept-by-label", "used-named", *anon_used}
    # Without -f a terminal is asked; no answer means no.
    asked = rs("volume", "prune", "-a", input="")
    assert asked.stdout == (
        "WARNING! This will remove all local volumes not used by at least one container.\n"
        "Are you sure you want to continue? [y/N] "
    )
    assert _volumes(rs) == {"kept-by-label", "used-named", *anon_used}
    # system prune --volumes: stopped containers first, then the anonymous volumes that
    # left unused (the holder's), never a named one.
    res = rs("system", "prune", "-f", "--volumes", check=True)
    (held,) = anon_used
    assert f"Deleted Volumes:\n{held}\n\n" in res.stdout
    assert _volumes(rs) == {"kept-by-label", "used-named"}
    assert rs("system", "prune", "--volumes", input="n\n").stdout.startswith(
        "WARNING! This will remove:\n  - all stopped containers\n"
        "  - all anonymous volumes not used by at least one container\n  - all dangling images\n"
    )


# --- --mount and --tmpfs -------------------------------------------------------------------


def test_mount_and_tmpfs_forms(seeded: Rsbox, tmp_path: Path, userns: str) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from the host\n")
    vol = _uniq("m")
    run = ("--userns", userns, "--network", "none", "--rm")
    seeded.run(
        *run, "--mount", f"type=volume,src={vol},dst=/m", "bb", "sh", "-c", "echo kept > /m/f",
        check=True,
    )  # fmt: skip
    assert seeded.run(*run, "--mount", f"source={vol},target=/n", "bb", "cat", "/n/f",
                      check=True).stdout == "kept\n"  # fmt: skip
    # A read-only bind refuses the write a writable one allows.
    ro = seeded.run(
        *run, "--mount", f"type=bind,src={host},dst=/b,readonly", "bb",
        "sh", "-c", "cat /b/in; echo x > /b/out",
    )  # fmt: skip
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    assert ro.stdout == "from the host\n" and not (host / "out").exists()
    seeded.run(*run, "--mount", f"type=bind,src={host},dst=/b", "bb", "sh", "-c",
               "echo x > /b/out", check=True)  # fmt: skip
    assert (host / "out").read_text() == "x\n"
    # -v with ro, and SELinux's z/Z accepted (no-ops here).
    ro = seeded.run(*run, "-v", f"{vol}:/v:ro,z", "bb", "sh", "-c", "echo y > /v/f")
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    seeded.run(*run, "-v", f"{vol}:/v:Z", "bb", "sh", "-c", "echo y > /v/f", check=True)
    # tmpfs: Docker's default flags, the asked size and mode.
    mounts = seeded.run(
        *run, "--tmpfs", "/t:size=2m,mode=1770", "--mount", "type=tmpfs,dst=/u,tmpfs-size=1m",
        "bb", "sh", "-c", "grep -E ' /(t|u) ' /proc/mounts; stat -c %a /t; touch /t/ok",
        check=True,
    ).stdout.splitlines()  # fmt: skip
    t = next(m for m in mounts if " /t " in m)
    u = next(m for m in mounts if " /u " in m)
    for m, size in ((t, "size=2048k"), (u, "size=1024k")):
        assert m.startswith("tmpfs ") and size in m
        assert {"rw", "nosuid", "nodev", "noexec"} <= set(m.split()[3].split(",")), m
    assert "mode=1770" in t and mounts[-1] == "1770"
    exe = seeded.run(*run, "--tmpfs", "/t:exec", "bb", "sh", "-c",
                     "cp /bin/busybox /t/true && /t/true", check=True)  # fmt: skip
    assert exe.returncode == 0
    noexec = seeded.run(
        *run, "--tmpfs", "/t", "bb", "sh", "-c", "cp /bin/busybox /t/true && /t/true"
    )
    assert noexec.returncode != 0
    seeded("volume", "rm", vol, check=True)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("run", "-v", "data:/d:bogus", "bb", "true"), ("invalid volume option 'bogus'",)),
        (("run", "-v", "a$b:/d", "bb", "true"), ("not a valid volume name",)),
        (("run", "-v", "data:rel", "bb", "true"), ("is not absolute",)),
        (("run", "--mount", "type=nfs,dst=/x", "bb", "true"), ("unsupported mount type",)),
        (("run", "--mount", "type=bind,dst=/x", "bb", "true"), ("needs src=",)),
        (("run", "--mount", "type=volume,src=v", "bb", "true"), ("has no destination",)),
        (("run", "--mount", "type=volume,dst=/x,color=red", "bb", "true"), ("invalid field",)),
        (("run", "--tmpfs", "/t:size=lots", "bb", "true"), ("invalid tmpfs size",)),
        (("run", "--tmpfs", "/t:suidish", "bb", "true"), ("invalid tmpfs option",)),
        (("run", "-v", "a1:/d", "-v", "b1:/d", "bb", "true"), ("duplicate mount point: /d",)),
        (("volume", "create", "x"), ("not a valid volume name",)),
        (("volume", "create", "-o", "type=tmpfs", "v1"), ("volume options are not supported",)),
        (("volume", "create", "-d", "nfs", "v1"), ("unknown volume driver",)),
        (("volume", "inspect", "nosuch"), ("no such volume: nosuch",)),
        (("volume", "rm", "nosuch"), ("no such volume: nosuch",)),
        (("volume", "ls", "--filter", "color=red"), ("invalid filter 'color'",)),
        (("volume", "ls", "--format", "{{.Colour}}"), ('no field "Colour"',)),
        (("volume", "prune", "-f", "--filter", "name=x"), ("invalid filter 'name'",)),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    rs = Rsbox(tmp_path / "store")
    rs("import", str(make_busybox_rootfs(tmp_path / "bb")), "bb", check=True)
    one_line_error(rs(*args), *words, hint=False, alone=True)
    assert _volumes(rs) == set(), "nothing is created by a refused command"
