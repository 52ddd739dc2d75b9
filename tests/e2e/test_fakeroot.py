"""True ownership without subordinate ids (`--security-opt seccomp=fakeroot` under a
single-id map): what the container sets is kept and committed as a full map would.

Each test runs under `--userns single`, which both CI users have (rsbox-single has nothing
else); rsbox-ci also runs the same script under its full map with the default profile and
real chown, and the committed layers' tar headers must be the same. Both users also check
the headers against the values the script means, so a test run by the user without a
range compares with what the user with one must produce.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox
from tests.e2e.test_workloads import debian_tarball
from tests.images import archive_layers, layer_headers

SCRIPT = r"""
set -e
useradd -u 1000 -m bob
groupadd -g 2000 staff2
mkdir /x && chown bob:bob /x
install -o 1000 -g 1000 -m 4755 /etc/hostname /y
cp /etc/hostname /s && chmod 6755 /s && chown 1000 /s
mkdir -p /opt/a/b && touch /opt/a/b/f && ln -s f /opt/a/b/l
chown -R 1000:2000 /opt && chown -h 1001:1001 /opt/a/b/l
python3 - <<'PY'
import io, tarfile
with tarfile.open("/tmp/t.tar", "w") as t:
    for name, kind, mode in (("src", tarfile.DIRTYPE, 0o755), ("src/d", tarfile.DIRTYPE, 0o750),
                             ("src/d/h", tarfile.REGTYPE, 0o640)):
        m = tarfile.TarInfo(name)
        m.type, m.mode, m.uid, m.gid, m.size = kind, mode, 1001, 1002, 3 * (kind == tarfile.REGTYPE)
        t.addfile(m, io.BytesIO(b"hi\n") if m.size else None)
PY
mkdir /t && tar -xpf /tmp/t.tar -C /t && rm /tmp/t.tar
su bob -c 'mkdir /home/bob/made && touch /home/bob/made/f && ln -s made /home/bob/ln'
runuser -u bob -g staff2 -- touch /x/by-runuser
cp -a /opt/a /opt/copy
cd /home/bob && touch rel && chown 1001:1001 ./rel && cd /
stat -c '%n %U:%G %a' /x /y /s /opt/a/b/f /t/src/d/h /home/bob/made /x/by-runuser
stat -L -c '%n %U:%G' /opt/a/b/l; find /opt/a/b/l -printf '%p %u:%g\n'
"""
# What the container itself sees: the same under both maps.
SEEN = (
    "/x bob:bob 755\n/y bob:bob 4755\n/s bob:root 755\n/opt/a/b/f bob:staff2 644\n"
    "/t/src/d/h UNKNOWN:UNKNOWN 640\n/home/bob/made bob:bob 755\n/x/by-runuser bob:staff2 644\n"
    "/opt/a/b/l bob:staff2\n/opt/a/b/l 1001:1001\n"
)

# What the script means: (uid, gid, mode) of the entries it makes, as any full map shows.
EXPECTED = {
    "x": (1000, 1000, 0o755),
    "y": (1000, 1000, 0o4755),
    "s": (1000, 0, 0o755),  # chown drops setuid and (group-executable) setgid
    "opt": (1000, 2000, 0o755),
    "opt/a/b/f": (1000, 2000, 0o644),
    "opt/a/b/l": (1001, 1001, 0o777),
    "t/src": (1001, 1002, 0o755),
    "t/src/d": (1001, 1002, 0o750),
    "t/src/d/h": (1001, 1002, 0o640),
    "home/bob": (1000, 1000, 0o755),
    "home/bob/made": (1000, 1000, 0o755),
    "home/bob/made/f": (1000, 1000, 0o644),
    "home/bob/ln": (1000, 1000, 0o777),
    "x/by-runuser": (1000, 2000, 0o644),
    "home/bob/rel": (1001, 1001, 0o644),  # a path relative to the caller's cwd
    "opt/copy/b/f": (1000, 2000, 0o644),  # cp -a copies the owner it sees
    "opt/copy/b/l": (1001, 1001, 0o777),
}
# Written by useradd/su with times or random content that differ from run to run; their
# headers are compared all the same (only mtimes and sizes are left out).
FAKEROOT = ("--userns", "single", "--security-opt", "seccomp=fakeroot")


@pytest.fixture(scope="module")
def debian(rsbox: Rsbox) -> str:
    rsbox("import", str(debian_tarball()), "debian-owners", check=True, timeout=600)
    return "debian-owners"


def _top_layer(rsbox: Rsbox, container: str, tmp_path: Path) -> dict[str, tarfile.TarInfo]:
    """The layer `rsbox commit` makes of `container`, read from `rsbox save`."""
    image = f"localhost/owners-{os.urandom(4).hex()}"
    rsbox("commit", container, image, check=True, timeout=300)
    out = tmp_path / f"{image.rsplit('/', 1)[1]}.tar"
    rsbox("save", "-o", str(out), image, check=True, timeout=300)
    rsbox("rmi", image, check=True)
    return archive_layers(out)[-1]


def _run_and_commit(
    rsbox: Rsbox, image: str, opts: tuple[str, ...], script: str, tmp_path: Path
) -> tuple[str, dict[str, tarfile.TarInfo]]:
    """(the script's output, the committed layer)."""
    name = f"owners-{os.urandom(4).hex()}"
    res = rsbox.run("--name", name, *opts, image, "sh", "-c", script, timeout=600)
    try:
        assert res.returncode == 0, res.stderr
        return res.stdout, _top_layer(rsbox, name, tmp_path)
    finally:
        rsbox("rm", "-f", name)


def _check_expected(members: dict[str, tarfile.TarInfo]) -> None:
    got = {n: (members[n].uid, members[n].gid, members[n].mode) for n in EXPECTED if n in members}
    assert got == EXPECTED


def test_chown_set_ids_and_new_files_are_committed_as_under_a_full_map(
    rsbox: Rsbox, debian: str, full_map: bool, tmp_path: Path
) -> None:
    seen, single = _run_and_commit(rsbox, debian, FAKEROOT, SCRIPT, tmp_path)
    assert seen == SEEN
    _check_expected(single)
    if full_map:  # the user with a range: the same script, real ids, real chown
        seen, full = _run_and_commit(rsbox, debian, ("--userns", "auto"), SCRIPT, tmp_path)
        assert seen == SEEN
        _check_expected(full)
        assert layer_headers(single) == layer_headers(full)


def test_without_fakeroot_a_single_id_map_refuses_chown(rsbox: Rsbox, debian: str) -> None:
    probe = "touch /f && chown 1000 /f"
    res = rsbox.run("--rm", "--userns", "single", debian, "sh", "-c", probe)
    assert res.returncode == 1 and "Invalid argument" in res.stderr, res.stderr
    res = rsbox.run("--rm", *FAKEROOT, debian, "sh", "-c", probe)
    assert res.returncode == 0, res.stderr


def test_off_the_union_a_chown_succeeds_without_effect(rsbox: Rsbox, debian: str) -> None:
    # /dev/shm is a tmpfs of the container, not the union: nothing can keep an owner there
    # that the single-id map cannot show, so it is plain `fakeroot`'s "no effect"; the same
    # chown on the union is kept.
    probe = (
        "touch /dev/shm/f /f && chown 1000 /dev/shm/f /f && stat -c %u /dev/shm/f /f"
        " && chown 1000 /no/such/file"
    )
    res = rsbox.run("--rm", *FAKEROOT, debian, "sh", "-c", probe)
    assert res.stdout == "0\n1000\n"
    assert res.returncode == 1 and "No such file or directory" in res.stderr, res.stderr


# apt's own check of its privilege drop (apt-pkg/contrib/fileutl.cc DropPrivileges), and
# the rules it relies on, probed the way a program sees them.
SET_IDS = r"""
import os
print(os.getresuid(), os.getresgid(), os.getgroups())
os.setgroups([42, 5])
print(os.getgroups())
os.setresgid(42, 42, 42)
os.setreuid(42, 42)
print(os.getresuid(), os.getresgid(), os.getuid(), os.geteuid(), os.getgid(), os.getegid())
for call in (lambda: os.setuid(0), lambda: os.seteuid(0), lambda: os.setgroups([0])):
    try:
        call()
        print("allowed")
    except OSError as e:
        print(e.strerror)
print(end="", flush=True)
if os.fork() == 0:
    print("child", os.getresuid(), flush=True)
    os._exit(0)
os.wait()
open("/tmp/mine", "w").close()
os.mkdir("/tmp/mydir")
"""
SET_IDS_OUT = (
    "(0, 0, 0) (0, 0, 0) []\n[5, 42]\n(42, 42, 42) (42, 42, 42) 42 42 42 42\n"
    "Operation not permitted\nOperation not permitted\nOperation not permitted\n"
    "child (42, 42, 42)\n"
)


def test_dropped_ids_stick_and_own_new_files(
    rsbox: Rsbox, debian: str, full_map: bool, tmp_path: Path
) -> None:
    script = f"python3 -c '{SET_IDS}' > /tmp/out && cat /tmp/out"
    runs = [FAKEROOT] + ([("--userns", "auto")] if full_map else [])
    for opts in runs:
        name = f"owners-{os.urandom(4).hex()}"
        res = rsbox.run("--name", name, *opts, debian, "sh", "-c", script)
        try:
            assert (res.returncode, res.stdout) == (0, SET_IDS_OUT), res.stderr
            layer = _top_layer(rsbox, name, tmp_path)
        finally:
            rsbox("rm", "-f", name)
        assert (layer["tmp/mine"].uid, layer["tmp/mine"].gid) == (42, 42)
        assert (layer["tmp/mydir"].uid, layer["tmp/mydir"].gid) == (42, 42)


def test_apt_installs_a_package_and_keeps_its_owners(
    rsbox: Rsbox, debian: str, full_map: bool, tmp_path: Path
) -> None:
    # `at` ships /var/spool/cron/atjobs as daemon:daemon 1770: dpkg chowns what it
    # unpacks, after apt itself dropped to _apt to download (and checked that it did).
    script = (
        "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends at"
        " >/dev/null && stat -c '%U:%G %a' /var/spool/cron/atjobs /usr/bin/at"
    )
    seen, layer = _run_and_commit(rsbox, debian, FAKEROOT, script, tmp_path)
    assert seen == "daemon:daemon 1770\ndaemon:daemon 6755\n"
    for path in ("var/spool/cron/atjobs", "var/spool/cron/atspool"):
        m = layer[path]
        assert (m.uid, m.gid, m.mode) == (1, 1, 0o1770), path
    at = layer["usr/bin/at"]
    assert (at.uid, at.gid, at.mode) == (1, 1, 0o6755)  # dpkg's chown, then its chmod
    if full_map:  # apt and dpkg with real ids: the same layer headers
        seen, full = _run_and_commit(rsbox, debian, ("--userns", "auto"), script, tmp_path)
        assert seen == "daemon:daemon 1770\ndaemon:daemon 6755\n"
        assert layer_headers(layer) == layer_headers(full)


def test_a_user_other_than_root_is_taken_on_without_capabilities(
    rsbox: Rsbox, debian: str
) -> None:
    """`-u` (an image's USER) under fakeroot on a single-id map goes through the emulated
    set*id calls (rootless.launch.become): the process sees its ids and, as in Docker,
    holds no capability. Controls: root keeps Docker's set; without fakeroot the same
    map refuses the user in one line."""
    probe = "id -u; id -g; grep CapEff /proc/self/status"
    res = rsbox.run("--rm", *FAKEROOT, "-u", "1000:1000", debian, "sh", "-c", probe, timeout=120)
    assert (res.returncode, res.stdout) == (0, "1000\n1000\nCapEff:\t0000000000000000\n"), res
    res = rsbox.run("--rm", *FAKEROOT, debian, "sh", "-c", probe, timeout=120)
    assert (res.returncode, res.stdout) == (0, "0\n0\nCapEff:\t00000000a80425fb\n"), res
    res = rsbox.run("--rm", "--userns", "single", "-u", "1000", debian, "id", timeout=120)
    assert res.returncode == 125 and "not mapped in a single-id user namespace" in res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
