"""`rsbox run --userns keep-id`, as both CI users: the caller's uid and gid are the same
ids inside (container U -> host U; the other ids from the subordinate range, or none
without one), the process runs as them with a generated /etc/passwd and /etc/group entry,
what it makes in a bind is the caller's on the host, and the image's files keep their
owners from the union's metadata. Controls: the default map still runs as root."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox, one_line_error

UID, GID = os.getuid(), os.getgid()
NAME = pwd.getpwuid(UID).pw_name
HOME = pwd.getpwuid(UID).pw_dir
GROUP = grp.getgrgid(GID).gr_name


def _out(rsbox: Rsbox, *args: str) -> str:
    res = rsbox(*args)
    assert res.returncode == 0, (args, res.returncode, res.stdout, res.stderr)
    return res.stdout


@pytest.fixture(scope="module")
def keep_id(rsbox: Rsbox, busybox: str) -> Iterator[str]:
    """One detached keep-id container for the probes that need no fresh one."""
    cid = _out(rsbox, "run", "-d", "--userns", "keep-id", busybox, "sleep", "600").strip()
    yield cid
    rsbox("rm", "-f", cid)


def test_you_are_your_own_ids_name_and_home_inside(rsbox: Rsbox, keep_id: str) -> None:
    out = _out(rsbox, "exec", keep_id, "sh", "-c", 'id -u; id -g; id -un; id -gn; echo "$HOME"')
    assert out.split() == [str(UID), str(GID), NAME, GROUP, HOME]
    passwd = _out(rsbox, "exec", keep_id, "cat", "/etc/passwd")
    # The image's entries stay; ours is added (the busybox image has no bash: /bin/sh).
    assert passwd.splitlines()[:2] == [
        "root:x:0:0:root:/root:/bin/sh",
        "app:x:1000:1000:app:/home/app:/bin/sh",
    ]
    shell = pwd.getpwuid(UID).pw_shell
    expected_shell = shell if shell in ("/bin/sh",) else "/bin/sh"
    assert passwd.splitlines()[-1] == f"{NAME}:x:{UID}:{GID}:{NAME}:{HOME}:{expected_shell}"
    assert _out(rsbox, "exec", keep_id, "grep", f"^{GROUP}:", "/etc/group") == f"{GROUP}:x:{GID}:\n"


def test_the_default_map_still_runs_as_root(rsbox: Rsbox, busybox: str) -> None:
    out = _out(rsbox, "run", "--rm", busybox, "sh", "-c", "id -u; cat /etc/passwd")
    assert out.splitlines()[0] == "0" and f"{NAME}:" not in out


def test_a_file_made_in_a_bind_is_yours_on_the_host(
    rsbox: Rsbox, busybox: str, tmp_path: Path, full_map: bool
) -> None:
    out = _out(
        rsbox,
        "run", "--rm", "--userns", "keep-id", "-v", f"{tmp_path}:/work", busybox,
        "sh", "-c", "mkdir /work/d && echo hi > /work/d/f && stat -c %u:%g /work/d/f",
    )  # fmt: skip
    assert out.strip() == f"{UID}:{GID}"
    for p in (tmp_path / "d", tmp_path / "d" / "f"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (UID, GID)
    if full_map:
        # Control: under the default full map a non-root user's file (in a directory open
        # to all) is a subordinate id's on the host, not yours: what keep-id solves.
        (tmp_path / "open").mkdir(mode=0o777)
        (tmp_path / "open").chmod(0o777)
        _out(rsbox, "run", "--rm", "-u", "1000:1000", "-v", f"{tmp_path / 'open'}:/work",
             busybox, "touch", "/work/other")  # fmt: skip
        assert (tmp_path / "open" / "other").stat().st_uid not in (UID, 0)


def test_the_images_files_keep_their_owners(rsbox: Rsbox, keep_id: str, full_map: bool) -> None:
    out = _out(rsbox, "exec", keep_id, "stat", "-c", "%u:%g", "/etc/lower.txt", "/bin", "/etc")
    # Root's files are root's under the full map (0 is a subordinate id there). The single
    # map has only your ids: the union shows the image's other owners as yours (not the
    # kernel's overflow id 65534, under which nothing could make a mount point in /etc or
    # /: rootless.idmap.IdMap.unmapped_as).
    owner = "0:0" if full_map else f"{UID}:{GID}"
    assert out.split() == [owner] * 3
    # Not a copy: the union shows the image's layer as it is; nothing went to the upper.
    made = _out(rsbox, "exec", keep_id, "sh", "-c", "touch /tmp/mine && stat -c %u:%g /tmp/mine")
    assert made.strip() == f"{UID}:{GID}"


def test_root_inside_needs_a_subordinate_range(
    rsbox: Rsbox, busybox: str, keep_id: str, full_map: bool
) -> None:
    run = rsbox("run", "--rm", "--userns", "keep-id", "-u", "0", busybox, "id", "-u")
    exe = rsbox("exec", "-u", "0", keep_id, "id", "-u")
    if full_map:
        assert run.returncode == 0 and run.stdout == "0\n", run.stderr
        assert exe.returncode == 0 and exe.stdout == "0\n", exe.stderr
    else:
        for res in (run, exe):
            one_line_error(res, "not mapped", f"{UID}:{GID}", "/etc/subuid")
    # The same probe as yourself is allowed either way.
    assert _out(rsbox, "exec", "-u", f"{UID}:{GID}", keep_id, "id", "-u") == f"{UID}\n"


def test_cp_into_a_keep_id_container_gives_roots_files_as_docker_does(
    rsbox: Rsbox, keep_id: str, tmp_path: Path, full_map: bool
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("copied\n")
    _out(rsbox, "cp", str(src), f"{keep_id}:/tmp/in.txt")
    out = _out(rsbox, "exec", keep_id, "sh", "-c", "cat /tmp/in.txt; stat -c %u:%g /tmp/in.txt")
    # root's under the full map; the single map has no root: the file stays yours
    assert out.splitlines() == ["copied", "0:0" if full_map else f"{UID}:{GID}"]
