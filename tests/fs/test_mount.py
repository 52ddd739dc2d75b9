"""fs.server on a real FUSE mount, as an unprivileged user.

Each test starts `unshare --user --map-root-user --mount` around tests.fs.harness, which
mounts the union, forks the shell script below into the mountpoint and serves until it
exits. `--map-auto` adds the user's subordinate range (newuidmap), giving the full
0-65535 map of `rsbox run`; without it only id 0 exists (rsbox's single-id map).

In CI (CI=true) missing user namespaces or /dev/fuse fail these tests; locally they skip.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from fs.meta import EntryMeta
from fs.union import OPAQUE_MARKER, read_override
from tests.fs.layers import Tree, make_layer

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"


@cache
def _unavailable(full_map: bool) -> str | None:
    """Why a FUSE mount in a user namespace cannot work here, or None."""
    if shutil.which("unshare") is None:
        return "util-linux unshare is not installed"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is missing or not read-writable (distributions ship it 0666)"
    probe = subprocess.run(
        [*_unshare(full_map), "true"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        what = "user namespaces with a subordinate id range (newuidmap, /etc/subuid)"
        return f"{what if full_map else 'user namespaces'} unusable: {probe.stderr.strip()}"
    return None


def _unshare(full_map: bool) -> list[str]:
    return [
        "unshare",
        "--user",
        "--map-root-user",
        *(["--map-auto"] if full_map else []),
        "--mount",
        "--",
    ]


@cache
def has_subid_range() -> bool:
    """Whether /etc/subuid gives this user a range (CI runs the suite once without)."""
    import pwd

    me = {pwd.getpwuid(os.getuid()).pw_name, str(os.getuid())}
    try:
        lines = Path("/etc/subuid").read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(line.split(":", 1)[0] in me for line in lines if ":" in line)


def _require(full_map: bool) -> None:
    if full_map and not has_subid_range():
        # Not a missing tool: this user is the single-id configuration by design.
        pytest.skip("needs the full id map; this user has no /etc/subuid range")
    why = _unavailable(full_map)
    if why is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)


def run_in_mount(
    tmp_path: Path,
    lowers: list[Path],
    script: str,
    *,
    full_map: bool = True,
    max_nodes: int | None = None,
    flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Mount lowers + tmp_path/upper, run `sh -euc script` in the mountpoint (`flags`: more
    of tests.fs.harness's options)."""
    _require(full_map)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = [sys.executable, "-m", "tests.fs.harness", "--upper", str(tmp_path / "upper")]
    for lower in lowers:
        args += ["--lower", str(lower)]
    if not full_map:
        args.append("--single-id")
    if max_nodes is not None:
        args += ["--max-nodes", str(max_nodes)]
    args += [*flags, str(mnt), "--", "sh", "-euxc", script]
    proc = subprocess.run(
        [*_unshare(full_map), *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _layers(
    tmp_path: Path, *trees: Tree, metas: list[dict[str, EntryMeta]] | None = None
) -> list[Path]:
    return [
        make_layer(tmp_path / f"l{i}", t, (metas or [{}] * len(trees))[i])
        for i, t in enumerate(trees)
    ]


def test_mount_reads_lower_and_hides_whiteouts(tmp_path: Path) -> None:
    lowers = _layers(
        tmp_path,
        {"etc/a": "hello", "etc/b": "b", "d/x": ""},
        {"etc/.wh.b": "", f"d/{OPAQUE_MARKER}": "", "d/y": ""},
    )
    run_in_mount(
        tmp_path,
        lowers,
        """
        test "$(cat etc/a)" = hello
        test ! -e etc/b
        test "$(ls -a etc | tr '\\n' ' ')" = ". .. a "
        test "$(ls d)" = y
    """,
    )


def test_mount_writes_land_in_upper_never_in_lower(tmp_path: Path) -> None:
    lowers = _layers(tmp_path, {"etc/a": "hello\n"})
    run_in_mount(
        tmp_path,
        lowers,
        """
        ino=$(stat -c %i etc/a)
        echo more >> etc/a
        echo new > etc/c
        test "$(cat etc/a)" = "$(printf 'hello\\nmore')"
        test "$(stat -c %i etc/a)" = "$ino"
    """,
    )
    assert (tmp_path / "l0/fs/etc/a").read_text() == "hello\n"
    assert not (tmp_path / "l0/fs/etc/c").exists()
    assert (tmp_path / "upper/etc/a").read_text() == "hello\nmore\n"
    assert (tmp_path / "upper/etc/c").read_text() == "new\n"


def test_mount_mkdir_rmdir_rename_symlink(tmp_path: Path) -> None:
    lowers = _layers(tmp_path, {"d/sub/f": "F", "etc/a": ""})
    run_in_mount(
        tmp_path,
        lowers,
        """
        mkdir x && rmdir x && test ! -e x
        ! rmdir etc 2>err && grep -q 'not empty' err && rm err
        mv d d2
        test "$(cat d2/sub/f)" = F && test ! -e d
        ln -s d2/sub/f s
        test "$(readlink s)" = d2/sub/f && test "$(cat s)" = F
        rm -rf d2 etc
        test -z "$(ls -A)" || test "$(ls -A)" = s
        mkdir etc
        test -z "$(ls -A etc)"
        ! touch .wh.evil 2>/dev/null
    """,
    )
    assert (tmp_path / "l0/fs/d/sub/f").read_text() == "F"
    assert (tmp_path / "upper/.wh.d").is_file()
    assert (tmp_path / "upper/etc" / OPAQUE_MARKER).is_file()
    assert not (tmp_path / "upper/.wh.etc").exists()


def test_mount_chmod_truncate_utime(tmp_path: Path) -> None:
    lowers = _layers(tmp_path, {"bin/tool": "0123456789"})
    run_in_mount(
        tmp_path,
        lowers,
        """
        truncate -s 3 bin/tool
        test "$(stat -c %s bin/tool)" = 3
        chmod 4711 bin/tool
        test "$(stat -c %a bin/tool)" = 4711
        touch -d @1000000000 bin/tool
        test "$(stat -c %Y bin/tool)" = 1000000000
        chown 1000:1000 bin/tool
        test "$(stat -c %u:%g bin/tool)" = 1000:1000
    """,
    )
    ov = read_override(tmp_path / "upper/bin/tool")
    assert ov is not None
    assert (ov.uid, ov.gid) == (1000, 1000)
    assert stat.S_IMODE(ov.mode) in (0o4711, 0o711)  # chown may clear setuid (kernel's call)
    assert (tmp_path / "l0/fs/bin/tool").read_text() == "0123456789"


def test_mount_shows_meta_ownership_modes_and_devices(tmp_path: Path) -> None:
    meta = {
        "home/u": EntryMeta(uid=1000, gid=1000, mode=stat.S_IFDIR | 0o750),
        "usr/bin/passwd": EntryMeta(uid=0, gid=0, mode=stat.S_IFREG | 0o4755),
        "dev/null": EntryMeta(uid=0, gid=0, mode=stat.S_IFCHR | 0o666, rdev=os.makedev(1, 3)),
    }
    lowers = _layers(tmp_path, {"home/u/": "", "usr/bin/passwd": "", "dev/null": ""}, metas=[meta])
    run_in_mount(
        tmp_path,
        lowers,
        """
        ls -ln home | grep -q '^drwxr-x--- .* 1000 1000 .* u$'
        test "$(stat -c %A usr/bin/passwd)" = -rwsr-xr-x
        test "$(stat -c '%F %t,%T' dev/null)" = "character special file 1,3"
    """,
    )


def test_mount_new_files_belong_to_the_caller_and_permissions_apply(tmp_path: Path) -> None:
    meta = {"tmp": EntryMeta(uid=0, gid=0, mode=stat.S_IFDIR | 0o1777)}
    lowers = _layers(tmp_path, {"tmp/": "", "etc/shadow": "secret"}, metas=[meta])
    run_in_mount(
        tmp_path,
        lowers,
        """
        as_user() { setpriv --reuid=1000 --regid=1000 --clear-groups -- "$@"; }
        as_user sh -c 'echo mine > tmp/mine'
        test "$(stat -c %u:%g tmp/mine)" = 1000:1000
        ! as_user sh -c 'echo x >> etc/shadow' 2>/dev/null
    """,
    )
    ov = read_override(tmp_path / "upper/tmp/mine")
    assert ov is not None and (ov.uid, ov.gid) == (1000, 1000)
    assert not (tmp_path / "upper/etc/shadow").exists()


def test_mount_single_id_map_shows_unmapped_ids_as_root(tmp_path: Path) -> None:
    meta = {"home/u": EntryMeta(uid=1000, gid=1000, mode=stat.S_IFDIR | 0o755)}
    lowers = _layers(tmp_path, {"home/u/f": "x"}, metas=[meta])
    run_in_mount(
        tmp_path,
        lowers,
        """
        test "$(stat -c %u:%g home/u)" = 0:0
        echo y > home/u/f
    """,
        full_map=False,
    )
    ov = read_override(tmp_path / "upper/home/u")
    assert ov is not None and (ov.uid, ov.gid) == (1000, 1000)  # the truth is kept


def test_mount_fifo_and_deleted_open_file(tmp_path: Path) -> None:
    lowers = _layers(tmp_path, {"tmp/": ""})
    run_in_mount(
        tmp_path,
        lowers,
        """
        mkfifo tmp/p
        test -p tmp/p
        (echo through > tmp/p &) ; test "$(cat tmp/p)" = through
        exec 3<>tmp/scratch; echo data >&3; rm tmp/scratch
        test "$(stat -L -c %s /proc/self/fd/3)" = 5
    """,
    )


def test_cli_mounts_serves_and_unmounts_on_sigterm(tmp_path: Path) -> None:
    _require(False)
    make_layer(tmp_path / "l0", {"hello": "world"})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"""
        {sys.executable} -m fs {mnt} --lower {tmp_path / "l0"} --upper {tmp_path / "up"} &
        pid=$!
        for i in $(seq 100); do grep -q ' {mnt} fuse.rsbox ' /proc/self/mounts && break; sleep 0.1; done
        test "$(cat {mnt}/hello)" = world
        kill -TERM $pid
        wait $pid
        ! grep -q ' {mnt} ' /proc/self/mounts
    """
    proc = subprocess.run(
        [*_unshare(False), "sh", "-euxc", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"


_WORKLOAD = """
    for f in $(find . -name '*.txt' | LC_ALL=C sort | head -40); do sed -i 's/a/A/g' "$f"; done
    mv d0 moved && mv d1/s1 d2/s1b && rm -rf d3 && mkdir d3 && echo again > d3/x
    mkdir -p new/a/b && echo hi > new/a/b/f && ln -s ../moved new/link
    tar cf - d2 | (mkdir untar && cd untar && tar xf -)
    cp -a d4 copied && chmod -R go-w copied && rm -rf d4/s0
    for i in $(seq 30); do echo $i > new/f$i; mv new/f$i new/g$i; done
    rm -f new/g1 new/g7 && touch -d @1234567890 moved/s0/f0.txt
"""


def _snapshot(root: Path) -> list[str]:
    out = []
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(root)
        if stat.S_ISDIR(st.st_mode):
            out.append(f"{rel} d {stat.S_IMODE(st.st_mode):o}")
        elif stat.S_ISLNK(st.st_mode):
            out.append(f"{rel} l {os.readlink(p)}")
        else:
            # times differ between the two runs, except the one set explicitly
            mtime = st.st_mtime_ns if str(rel) == "moved/s0/f0.txt" else ""
            out.append(f"{rel} f {stat.S_IMODE(st.st_mode):o} {mtime} {p.read_bytes()!r}")
    return out


def test_mount_behaves_like_a_plain_directory(tmp_path: Path) -> None:
    """The same shell workload on a plain copy of the merged tree and on the mount."""
    tree0 = {
        f"d{i}/s{j}/f{k}.txt": f"data {i} {j} {k}\n"
        for i in range(5)
        for j in range(3)
        for k in range(4)
    }
    tree1 = {f"d{i}/s{j}/g.txt": "layer one\n" for i in range(5) for j in range(3)}
    lowers = _layers(tmp_path, tree0, tree1)
    ref = tmp_path / "ref"
    shutil.copytree(lowers[0] / "fs", ref, symlinks=True)
    shutil.copytree(lowers[1] / "fs", ref, symlinks=True, dirs_exist_ok=True)
    subprocess.run(["sh", "-euc", _WORKLOAD], cwd=ref, check=True, timeout=60)
    snap = tmp_path / "snap"
    run_in_mount(
        tmp_path,
        lowers,
        _WORKLOAD
        + f"""
        cp -a . {snap}
    """,
    )
    assert _snapshot(snap) == _snapshot(ref)


def test_harness_reports_a_failing_check(tmp_path: Path) -> None:
    """The mount tests are not vacuous: a failing command fails the harness."""
    lowers = _layers(tmp_path, {"f": ""})
    with pytest.raises(AssertionError, match="rc=3"):
        run_in_mount(tmp_path, lowers, "test -e f && exit 3")


def test_mount_failure_is_an_oserror(tmp_path: Path) -> None:
    from fs import server
    from fs.union import UnionSpec

    with pytest.raises(OSError):
        server.mount(UnionSpec((), tmp_path / "upper"), tmp_path / "missing")


def _inodes_at_end(proc: subprocess.CompletedProcess[str]) -> int:
    line = next(x for x in proc.stderr.splitlines() if x.endswith("inodes at the end"))
    return int(line.split()[1])


def test_inode_table_stays_near_its_cap_on_a_big_walk(tmp_path: Path) -> None:
    """Past max_nodes the server asks the kernel to drop its oldest entries and frees
    them on FORGET: a walk of 3000 files with a cap of 300 ends near the cap, with every
    file read correctly, and the same walk uncapped ends holding every file."""
    tree: Tree = {f"d{i // 100}/f{i}": f"{i}\n" for i in range(3000)}
    lowers = _layers(tmp_path, tree)
    walk = """
        test "$(find . -type f | wc -l)" = 3000
        test "$(cat d*/f* | sort -n | tail -n 1)" = 2999
        test "$(cat d7/f742)" = 742
    """
    for run in ("capped", "uncapped"):
        (tmp_path / run).mkdir()
    capped = run_in_mount(tmp_path / "capped", lowers, walk, full_map=False, max_nodes=300)
    assert _inodes_at_end(capped) <= 2 * 300
    uncapped = run_in_mount(tmp_path / "uncapped", lowers, walk, full_map=False)
    assert _inodes_at_end(uncapped) >= 3000


_BUSY_WHILE_COPYING = r"""
import os, subprocess, sys
# Two writers open the big lower file at once (one copy-up; both appends land), while
# this process keeps using the rest of the filesystem.
writers = [
    subprocess.Popen([sys.executable, "-c", f"open('big', 'ab').write(b'<{tag}>')"])
    for tag in "AB"
]
done = 0
while any(w.poll() is None for w in writers) or done < 100:
    os.stat(f"etc/f{done % 50}")
    os.listdir("etc")
    with open(f"tmp/n{done}", "w") as f:
        f.write("x")
    done += 1
assert [w.wait() for w in writers] == [0, 0]
print(done, "requests while copying", file=sys.stderr)
"""


def test_copy_up_of_a_big_file_lets_other_requests_through(tmp_path: Path) -> None:
    """A 256 MiB file copied up on a worker thread (fs.server): the copy completes with
    the right bytes, two writers racing on it make one copy and both writes land, and
    other requests are answered meanwhile (how long they wait: tests/bench_fs.py)."""
    import hashlib

    tree = {f"etc/f{i}": str(i) for i in range(50)}
    tree["tmp/"] = ""
    layer = make_layer(tmp_path / "l0", tree)
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(layer / "fs/big", "wb") as f:
        for i in range(256):
            chunk = i.to_bytes(4, "big") + block[4:]
            f.write(chunk)
            digest.update(chunk)
    (tmp_path / "busy.py").write_text(_BUSY_WHILE_COPYING)
    run_in_mount(tmp_path, [layer], f"{sys.executable} {tmp_path / 'busy.py'}", full_map=False)
    size = 256 << 20
    with open(tmp_path / "upper/big", "rb") as f:
        copied = hashlib.sha256()
        for _ in range(256):
            copied.update(f.read(1 << 20))
        tail = f.read()
    assert copied.hexdigest() == digest.hexdigest()
    assert tail in (b"<A><B>", b"<B><A>")
    assert (layer / "fs/big").stat().st_size == size
    assert not list((tmp_path / "upper").glob(".wh..wh..rsbox-tmp.*"))
