"""rsbox-overlayfs: fuse-overlayfs's command line (and mount(8)'s), overlayfs whiteouts,
and Podman using it as its overlay `mount_program`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fs.overlayfs_cli import UsageError, parse
from tests.fs import conformance
from tests.fs.test_mount import IN_CI, REPO, _require, _unshare, has_subid_range
from tests.images import make_busybox_rootfs
from tests.podman import private_runtime
from tests.shared import unavailable

CLI = shutil.which("rsbox-overlayfs") or str(Path(sys.executable).parent / "rsbox-overlayfs")


def test_parse_fuse_overlayfs_command_line(tmp_path: Path) -> None:
    o = parse(
        [
            "-o",
            f"lowerdir={tmp_path}/top:{tmp_path}/bottom,upperdir=u,workdir=w",
            "-o",
            "fsync=0,noacl,squash_to_uid=7,uidmapping=0:0:65536",
            str(tmp_path / "m"),
        ]
    )
    assert o.lowers == [tmp_path / "bottom", tmp_path / "top"]  # UnionSpec: bottom first
    assert o.upper == Path("u").resolve() and o.squash_uid == 7 and o.squash_gid is None
    assert not o.foreground
    with pytest.raises(UsageError, match="identity"):
        parse(["-o", "lowerdir=a,uidmapping=0:1000:1", "m"])
    with pytest.raises(UsageError, match="unknown mount option"):
        parse(["-o", "lowerdir=a,bogus=1", "m"])
    with pytest.raises(UsageError, match="lowerdir"):
        parse(["m"])


def test_parse_kernel_cache_knob() -> None:
    from fs.kcache import Mode

    assert parse(["-o", "lowerdir=a", "m"]).kernel_cache is None  # the environment decides
    assert parse(["-o", "lowerdir=a,no_kernel_cache", "m"]).kernel_cache is Mode.OFF
    assert parse(["-o", "lowerdir=a,kernel_cache=opendir", "m"]).kernel_cache is Mode.OPENDIR
    with pytest.raises(UsageError, match="kernel_cache=x"):
        parse(["-o", "lowerdir=a,kernel_cache=x", "m"])


def test_parse_accepts_mount8s_source_argument(tmp_path: Path) -> None:
    """mount(8) -> mount.fuse3 runs `rsbox-overlayfs SOURCE MOUNTPOINT -o OPTS,dev,suid`:
    the source comes first and is ignored, as fuse-overlayfs does."""
    o = parse(
        [
            "overlay",
            str(tmp_path / "m"),
            "-o",
            f"rw,lowerdir={tmp_path}/l,upperdir={tmp_path}/u,workdir={tmp_path}/w,dev,suid",
        ]
    )
    assert o.mountpoint == tmp_path / "m" and o.lowers == [tmp_path / "l"]
    assert o.upper == tmp_path / "u"
    with pytest.raises(UsageError, match=r"\[SOURCE\] MOUNTPOINT"):
        parse(["a", "b", "c", "-o", "lowerdir=l"])


def test_mount8_across_two_tmpfs_passes_the_copy_up_checks(tmp_path: Path) -> None:
    """`mount -t fuse.rsbox-overlayfs SRC MNT -o lowerdir=...` in a user+mount namespace,
    the lower on one tmpfs and the upper on another (copy_file_range refuses EXDEV between
    them): the conformance suite's copy-up checks pass, the sparse file stays sparse in
    the upper, the lower is untouched, and umount ends the daemon.

    How mount(8) gets there (util-linux 2.38, fuse3 3.14): it runs /sbin/mount.fuse.TYPE
    when there is one, else /sbin/mount.fuse for any `fuse.*` type, passing `-t
    fuse.rsbox-overlayfs`; mount.fuse3 runs `/bin/sh -c 'rsbox-overlayfs SRC MNT -o
    OPTS,dev,suid'`. mount(8) drops PATH from its helpers' environment, so the shell looks
    in its default PATH: installed system-wide the command is there; here this namespace's
    own /usr/local/sbin (a tmpfs) gets a link to it."""
    _require(False)
    if not os.path.exists("/sbin/mount.fuse"):
        unavailable("/sbin/mount.fuse is missing (Debian package fuse3)")
    lower, fs2, mnt, out = tmp_path / "lower", tmp_path / "fs2", tmp_path / "m", tmp_path / "o"
    for d in (lower, fs2, mnt):
        d.mkdir()
    checks = " ".join(conformance.COPY_UP)
    sparse = "copy_up_keeps_holes/sparse"
    py = sys.executable
    script = f"""
        set -eu
        trap 'umount {mnt} 2> /dev/null || umount -l {mnt} 2> /dev/null || true' EXIT
        mount -t tmpfs lower {lower}
        mount -t tmpfs other {fs2}
        mkdir {fs2}/upper {fs2}/work
        {py} -m tests.fs.conformance --tree {lower} {checks}
        test "$(stat -c %d {lower})" != "$(stat -c %d {fs2}/upper)"
        mount -t tmpfs bin /usr/local/sbin
        ln -s {CLI} /usr/local/sbin/rsbox-overlayfs
        mount -t fuse.rsbox-overlayfs rsbox {mnt} \
            -o lowerdir={lower},upperdir={fs2}/upper,workdir={fs2}/work
        grep -q " {mnt} fuse.rsbox " /proc/self/mounts
        CONFORMANCE_ID=0 {py} -m tests.fs.conformance {mnt} {out} {checks}
        echo "upper: $(stat -c '%s %b' {fs2}/upper/{sparse} || true)"
        echo "lower: $(cat {lower}/truncate_lower_file_grow_and_shrink/e/z)"
        pid=$(pgrep -n -x rsbox-overlayfs)
        umount {mnt}
        for i in $(seq 100); do
            kill -0 "$pid" 2> /dev/null || exit 0
            sleep 0.1
        done
        echo "rsbox-overlayfs still running after umount" >&2
        exit 9
    """
    proc = subprocess.run(
        [*_unshare(False), "sh", "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert sorted(results) == sorted(conformance.COPY_UP)
    failed = {name: err for name, err in results.items() if err is not None}
    assert not failed, "\n".join(f"{name}:\n{err}" for name, err in failed.items())
    size, blocks = next(x for x in proc.stdout.splitlines() if x.startswith("upper:")).split()[1:]
    assert int(size) == 64 << 20 and int(blocks) < 2048  # the copy: < 1 MiB of 64 on disk
    assert "lower: z" in proc.stdout.splitlines()  # the lower file as it was


def test_overlay_whiteouts_and_daemon(tmp_path: Path) -> None:
    """0/0 character devices and user.overlay.opaque hide lower entries; the command
    returns once mounted, and the daemon serves until unmounted, then exits."""
    _require(False)
    a, b = tmp_path / "A", tmp_path / "B"
    (a / "d").mkdir(parents=True)
    (a / "o").mkdir()
    (b / "d").mkdir(parents=True)
    (b / "o").mkdir()
    (a / "d/keep").write_text("k")
    (a / "d/gone").write_text("g")
    (a / "o/hidden").write_text("h")
    (b / "o/shown").write_text("s")
    os.setxattr(b / "o", "user.overlay.opaque", b"y")
    for d in ("U", "W", "m"):
        (tmp_path / d).mkdir()
    script = f"""
        set -eu
        mknod {b}/d/gone c 0 0
        {CLI} -o lowerdir={b}:{a},upperdir={tmp_path}/U,workdir={tmp_path}/W {tmp_path}/m
        cd {tmp_path}/m
        test "$(ls d)" = keep
        test "$(ls o)" = shown
        echo new > d/new && test "$(cat d/new)" = new
        rm d/keep && test -z "$(ls d | grep keep || true)"
        pid=$(pgrep -n -x rsbox-overlayfs)  # the newest daemon: ours
        cd / && umount {tmp_path}/m
        for i in $(seq 100); do  # unmounted: the daemon exits by itself
            kill -0 "$pid" 2> /dev/null || exit 0
            sleep 0.1
        done
        echo "rsbox-overlayfs still running after umount" >&2
        exit 9
    """
    proc = subprocess.run(
        [*_unshare(False), "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "U/d/new").read_text() == "new\n"
    assert (tmp_path / "U/d/.wh.keep").exists()


def test_podman_runs_a_container_on_rsbox_overlayfs(tmp_path: Path) -> None:
    """The user's storage.conf (overlay driver, mount_program = rsbox-overlayfs)."""
    _require(True)
    if shutil.which("podman") is None:
        if IN_CI:
            pytest.fail("CI=true and podman is not installed (setup.sh PACKAGES)")
        pytest.skip("podman is not installed")
    assert has_subid_range()
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    shutil.copy(rootfs / "bin/busybox", rootfs / "bin/busybox-gone")  # deleted below
    with tarfile.open(tmp_path / "rootfs.tar", "w") as t:
        t.add(rootfs, arcname=".")
    conf = tmp_path / "config/containers"
    conf.mkdir(parents=True)
    (conf / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp_path}/graph"\n'
        f'runroot = "{tmp_path}/run"\n[storage.options.overlay]\nmount_program = "{CLI}"\n'
    )
    podman = [
        "podman",
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]
    config_home = str(tmp_path / "config")
    with private_runtime(tmp_path, XDG_CONFIG_HOME=config_home) as env:
        try:
            subprocess.run(
                [*podman, "import", str(tmp_path / "rootfs.tar"), "localhost/bb"],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            run = subprocess.run(
                [
                    *podman,
                    "run",
                    "--rm",
                    "localhost/bb",
                    "/bin/busybox",
                    "sh",
                    "-c",
                    "echo hello > /tmp/x && cat /tmp/x && grep ' / ' /proc/mounts",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            assert run.stdout.splitlines()[0] == "hello"
            assert "fuse.rsbox" in run.stdout  # the rootfs is served by rsbox-overlayfs
            # What a container changed (a deletion: a whiteout in our upper) becomes a layer
            # that containers/storage reads back: `podman commit` then run the new image.
            for args in (
                ["run", "--name", "c", "localhost/bb", "/bin/busybox", "sh", "-c",
                 "/bin/busybox rm /bin/busybox-gone && echo new > /newfile"],
                ["commit", "-q", "c", "localhost/bb2"],
            ):  # fmt: skip
                res = subprocess.run(
                    [*podman, *args], env=env, capture_output=True, text=True, timeout=120
                )
                assert res.returncode == 0, res.stderr
            after = subprocess.run(
                [*podman, "run", "--rm", "localhost/bb2", "/bin/busybox", "sh", "-c",
                 "cat /newfile; test ! -e /bin/busybox-gone && echo gone"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert after.stdout.split() == ["new", "gone"], after.stderr
        finally:
            subprocess.run([*podman, "system", "reset", "-f"], env=env, capture_output=True)
            subprocess.run(
                ["podman", "unshare", "rm", "-rf", str(tmp_path / "graph")],
                env=env,
                capture_output=True,
            )
