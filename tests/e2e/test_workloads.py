"""Real workloads inside `rsbox run` give the same result as on the host.

The image is a Debian rootfs with the tools (mmdebstrap --mode=unshare --variant=apt),
built once and cached under ~/.cache/rsbox-tests keyed by the package list, then
`rsbox import`ed. Each workload runs the same script in the container and on the host
(on the same inputs) and compares what comes out.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import IN_CI, Rsbox
from tests.fs.test_mount import has_subid_range

PACKAGES = ("git", "gcc", "libc6-dev", "make", "python3", "sqlite3", "tar")
SUITE = "bookworm"
# The package lists stay in the image (~55 MB), without translations (as in Docker's
# Debian images, apt.conf.d/docker-no-languages): the suite's `apt-get update` runs
# (seven for a user with a subordinate range: build, env, fakeroot, here) then fetch the
# three InRelease files (~250 kB) instead of ~16 MB of lists, while the archive is as the
# image saw it.
MMDEBSTRAP_OPTIONS = ("--skip=cleanup/apt/lists", '--aptopt=Acquire::Languages "none"')


# The environments' base (tests/e2e/test_env*.py): node, npm and a venv-capable python
# from Debian's archive in the rootfs itself. Installed by a [build] apt step they cost
# 300-550 s per CI user (372 packages, ~20k files unpacked through the union); mmdebstrap
# unpacks them natively once per CI run, and the env tests' own apt step installs jq.
ENV_PACKAGES = ("ca-certificates", "nodejs", "npm", "python3-venv")


def debian_tarball(extra: tuple[str, ...] = ()) -> Path:
    """The cached rootfs tarball of PACKAGES (and `extra`), built on first use."""
    packages = sorted({*PACKAGES, *extra})
    key = hashlib.sha256(f"{SUITE} {packages} {MMDEBSTRAP_OPTIONS}".encode()).hexdigest()[:12]
    if not extra:  # the key the cache has always had for the plain image
        key = hashlib.sha256(
            f"{SUITE} {sorted(PACKAGES)} {MMDEBSTRAP_OPTIONS}".encode()
        ).hexdigest()[:12]
    # RSBOX_TEST_CACHE: a directory shared by CI's two users, so that the one without a
    # subordinate range runs these workloads on the image the other one built.
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rsbox-tests"
    cache = Path(os.environ.get("RSBOX_TEST_CACHE") or default_cache)
    out = cache / f"debian-{SUITE}-{key}.tar"
    if out.exists():
        return out
    if not has_subid_range():
        # Not a missing tool: the single-id CI user has no range by design, and
        # mmdebstrap --mode=unshare needs one to build the multi-owner Debian rootfs.
        pytest.skip("building the image needs a subordinate id range; this user has none")
    if shutil.which("mmdebstrap") is None:
        if IN_CI:
            pytest.fail("CI=true and mmdebstrap is not installed (setup.sh PACKAGES)")
        pytest.skip("mmdebstrap is not installed")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp{os.getpid()}-{out.name}")
    proc = subprocess.run(
        [
            "mmdebstrap",
            "--mode=unshare",
            "--variant=apt",
            *MMDEBSTRAP_OPTIONS,
            f"--include={','.join(packages)}",
            SUITE,
            str(tmp),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"mmdebstrap failed: {proc.stderr[-2000:]}")
    os.replace(tmp, out)
    return out


@pytest.fixture(scope="module")
def debian(rsbox: Rsbox) -> str:
    rsbox("import", str(debian_tarball()), "debian-tools", check=True, timeout=600)
    return "debian-tools"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs shared by host and container: a git repo and a small C project."""
    w = tmp_path_factory.mktemp("inputs")
    w.chmod(0o755)
    repo = w / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(20):
        (repo / f"f{i}.txt").write_text(f"line {i}\n" * (i + 1))
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    src = w / "cproj"
    src.mkdir()
    for i in range(8):
        (src / f"m{i}.c").write_text(f"int f{i}(int x) {{ return x + {i}; }}\n")
    decls = "".join(f"int f{i}(int);" for i in range(8))
    calls = "+".join(f"f{i}(1)" for i in range(8))
    (src / "main.c").write_text(
        f'#include <stdio.h>\n{decls}\nint main(void) {{ printf("%d\\n", {calls}); return 0; }}\n'
    )
    (src / "Makefile").write_text(
        "SRC := $(sort $(wildcard *.c))\nprog: $(SRC:.c=.o)\n\t$(CC) -o $@ $^\n"
        "%.o: %.c\n\t$(CC) -O1 -c -o $@ $<\n"
    )
    with tarfile.open(w / "cproj.tar", "w") as t:
        t.add(src, arcname="cproj")
    pytree = w / "pytree"
    for i in range(30):
        (pytree / f"pkg{i % 3}").mkdir(parents=True, exist_ok=True)
        (pytree / f"pkg{i % 3}" / f"mod{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n")
    for p in w.rglob("*"):
        p.chmod(p.stat().st_mode | 0o755 if p.is_dir() else p.stat().st_mode | 0o644)
    return w


SCRIPTS = {
    "git_clone_status": (
        "git clone -q /in/repo r && cd r && git status --porcelain=v1 --branch"
        " && git log --format=%s && git ls-files | wc -l"
    ),
    "untar_make": "tar xof /in/cproj.tar && make -s -C cproj && ./cproj/prog",
    "compileall": (
        "cp -r /in/pytree t && python3 -m compileall -q t"
        " && find t -name '*.pyc' | sort | sed 's/cpython-[0-9]*/X/'"
    ),
    "sqlite_wal": (
        "sqlite3 db.sqlite 'PRAGMA journal_mode=WAL;' "
        "'CREATE TABLE t(a INTEGER, b TEXT);' "
        "'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<5000) "
        "INSERT INTO t SELECT x, hex(x) FROM c;' "
        "'SELECT count(*), sum(a), max(b) FROM t;' 'PRAGMA integrity_check;'"
    ),
}


def _host(script: str, w: Path, tmp: Path) -> str:
    """The same script on the host: /in is the inputs dir (a sed of the paths)."""
    sh = script.replace("/in/", f"{w}/")
    return subprocess.run(
        ["sh", "-euc", sh], cwd=tmp, capture_output=True, text=True, check=True, timeout=300
    ).stdout


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_workload_matches_host(
    name: str, rsbox: Rsbox, debian: str, work: Path, tmp_path: Path
) -> None:
    script = SCRIPTS[name]
    inside = rsbox.run(
        "--rm",
        "-v",
        f"{work}:/in:ro",
        "-w",
        "/root",
        debian,
        "sh",
        "-euc",
        f"cd /tmp && {script}",
        timeout=600,
    )
    assert inside.returncode == 0, inside.stderr
    host = _host(script, work, tmp_path)
    assert inside.stdout == host


def test_tar_of_rootfs_is_byte_identical(rsbox: Rsbox, debian: str, tmp_path: Path) -> None:
    """tar c of the whole image inside the container = tar c of the same tree unpacked on
    the host, with the same tar options (numeric owners, sorted). The root directory's
    and /etc's own mtimes are set to 0 on both sides: the launcher creates mount points
    and /etc/hosts, resolv.conf, hostname in them."""
    if not has_subid_range():
        # The image's owners (root, man, mail, ...) only show in a full id map.
        pytest.skip("a byte-identical tar needs the full id map; this user has none")
    opts = "--numeric-owner --sort=name --one-file-system --exclude=./proc --exclude=./sys"
    opts += " --exclude=./dev --exclude=./tmp --exclude=./run --exclude=./etc/hosts"
    opts += " --exclude=./etc/resolv.conf --exclude=./etc/hostname"
    inside = subprocess.run(
        [
            *rsbox.argv(
                "run",
                "--rm",
                debian,
                "sh",
                "-c",
                f"cd / && touch -d @0 . etc && tar c {opts} . | tar tv --numeric-owner --full-time; tar c {opts} . | sha256sum",
            )
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert inside.returncode == 0, inside.stderr
    root = tmp_path / "root"
    root.mkdir()
    unpack = f"tar xf {debian_tarball()} --exclude=./dev -C {root} && cd {root} && touch -d @0 . etc && tar c {opts} . | tar tv --numeric-owner --full-time; tar c {opts} . | sha256sum"
    host = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--map-auto", "sh", "-c", unpack],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # the unpacked tree belongs to sub-ids: remove it from inside the namespace
    subprocess.run(["unshare", "--user", "--map-root-user", "--map-auto", "rm", "-rf", root])
    assert host.returncode == 0, host.stderr
    listing_in, listing_host = inside.stdout.splitlines(), host.stdout.splitlines()
    diff = [(a, b) for a, b in zip(listing_in, listing_host, strict=False) if a != b]
    assert not diff and len(listing_in) == len(listing_host), diff[:10]
    assert listing_in[-1] == listing_host[-1]  # sha256 of the archives


def test_apt_get_update_reaches_debians_archive_through_the_default_network(
    rsbox: Rsbox, debian: str
) -> None:
    """The default network (pasta) reaches out and resolves names: the one place this
    suite may send traffic off the machine is Debian's archive. (APT's sandbox user needs
    the full id map, which the single-id user lacks: that is issue 12's to fix.)"""
    res = rsbox.run(
        "--rm",
        debian,
        "apt-get",
        "-o",
        "APT::Sandbox::User=root",
        "-o",
        "Acquire::Retries=3",
        "update",
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Hit:" in res.stdout or "Get:" in res.stdout
    assert "Err:" not in res.stdout
