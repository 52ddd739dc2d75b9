"""rootless.launch.caps: names, Docker's add/drop/ALL/privileged rules, masks, and apply()
for real in a user namespace (tests.rootless.caps_child, one process per case: the
kernel state it leaves cannot be undone)."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import policies
from rootless.errors import HostError, UsageError
from rootless.launch import caps
from rootless.launch.caps import DEFAULT_CAPS, capability_set, mask, parse_cap
from tests.fs.test_mount import has_subid_range
from tests.shared import unavailable

REPO = Path(__file__).resolve().parents[2]
DOCKER_DEFAULT_MASK = 0xA80425FB  # CapEff of `docker run` as root, on any kernel
ALL40 = (1 << 41) - 1  # CAP_CHOWN..CAP_CHECKPOINT_RESTORE


def test_table_is_the_kernels_numbering() -> None:
    assert caps.NUMBERS["CAP_CHOWN"] == 0
    assert caps.NUMBERS["CAP_SETPCAP"] == 8
    assert caps.NUMBERS["CAP_SYS_ADMIN"] == 21
    assert caps.NUMBERS["CAP_AUDIT_READ"] == 37
    assert caps.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.LAST_KNOWN == 40
    assert all(caps.NAMES[n] == name for name, n in caps.NUMBERS.items())


def test_default_set_is_dockers_and_the_seccomp_sides() -> None:
    assert mask(DEFAULT_CAPS) == DOCKER_DEFAULT_MASK
    assert DEFAULT_CAPS == policies.DEFAULT_CAPS  # policies cannot import rootless


@pytest.mark.parametrize("text", ["chown", "CHOWN", "CAP_CHOWN", "cap_chown", "Cap_Chown"])
def test_parse_accepts_what_docker_accepts(text: str) -> None:
    assert parse_cap(text) == "CAP_CHOWN"


def test_parse_all_and_unknown() -> None:
    assert parse_cap("all") == "ALL"
    assert parse_cap("ALL") == "ALL"
    for bad in ["CAP_ALL", "", "cap_", "chowns", "NET ADMIN"]:
        with pytest.raises(UsageError, match="unknown capability") as info:
            parse_cap(bad)
        assert info.value.hint and "capabilities(7)" in info.value.hint


def test_no_flags_is_the_default_set() -> None:
    assert capability_set(last_cap=40) == DEFAULT_CAPS


def test_add_and_drop_change_the_default_set() -> None:
    got = capability_set(["net_admin", "SYS_PTRACE"], ["CAP_CHOWN", "kill"], last_cap=40)
    assert got == DEFAULT_CAPS - {"CAP_CHOWN", "CAP_KILL"} | {"CAP_NET_ADMIN", "CAP_SYS_PTRACE"}


def test_a_cap_both_added_and_dropped_is_kept_as_in_moby() -> None:
    # moby removes the drops from the default set, then appends the adds.
    assert "CAP_NET_ADMIN" in capability_set(["NET_ADMIN"], ["NET_ADMIN"], last_cap=40)
    assert "CAP_CHOWN" in capability_set(["CHOWN"], ["CHOWN"], last_cap=40)
    assert capability_set(["CHOWN"], ["ALL", "CHOWN"], last_cap=40) == {"CAP_CHOWN"}


def test_add_all_is_everything_but_the_drops() -> None:
    assert capability_set(["ALL"], last_cap=40) == frozenset(caps.NAMES)
    got = capability_set(["all"], ["sys_admin"], last_cap=40)
    assert got == frozenset(caps.NAMES) - {"CAP_SYS_ADMIN"}
    # ALL among the drops names no cap to remove: add ALL wins (moby checks it first).
    assert capability_set(["ALL"], ["ALL"], last_cap=40) == frozenset(caps.NAMES)


def test_drop_all_keeps_only_the_adds() -> None:
    assert capability_set([], ["ALL"], last_cap=40) == frozenset()
    assert capability_set(["NET_BIND_SERVICE"], ["ALL"], last_cap=40) == {"CAP_NET_BIND_SERVICE"}


def test_privileged_is_every_cap_of_the_kernel_whatever_the_flags() -> None:
    assert capability_set(privileged=True, last_cap=40) == frozenset(caps.NAMES)
    got = capability_set(["NET_ADMIN"], ["ALL"], privileged=True, last_cap=37)
    assert got == frozenset(caps.NAMES[:38])
    assert mask(capability_set(privileged=True, last_cap=37)) == (1 << 38) - 1


def test_names_are_checked_even_when_privileged() -> None:
    with pytest.raises(UsageError, match="'SYS_ADMN'"):
        capability_set(["SYS_ADMN"], privileged=True, last_cap=40)


def test_a_cap_the_kernel_lacks_is_refused_as_moby_does() -> None:
    with pytest.raises(HostError, match="CAP_CHECKPOINT_RESTORE is not supported"):
        capability_set(["CHECKPOINT_RESTORE"], last_cap=39)
    with pytest.raises(HostError, match="CAP_BPF"):
        capability_set([], ["BPF"], last_cap=37)
    # ALL means "all this kernel has".
    assert capability_set(["ALL"], last_cap=37) == frozenset(caps.NAMES[:38])
    assert capability_set(last_cap=37) == DEFAULT_CAPS  # every default cap is old


def test_masks_and_numbers() -> None:
    assert mask([]) == 0
    assert mask(["CAP_CHOWN"]) == 1
    assert mask(["CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]) == 1 << 21 | 1 << 40
    assert mask(caps.NAMES) == ALL40
    assert caps.to_numbers(["CAP_KILL", "CAP_SETUID"]) == {5, 7}
    assert caps.from_mask(DOCKER_DEFAULT_MASK) == DEFAULT_CAPS
    assert caps.from_mask(ALL40 | 1 << 41) == frozenset(caps.NAMES)
    with pytest.raises(ValueError, match="'chown'"):
        mask(["chown"])  # only canonical names: they come from capability_set


def test_last_cap_is_the_kernels() -> None:
    want = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert caps.last_cap() == want
    assert want >= 37  # CAP_AUDIT_READ, Linux 3.16: every kernel rsbox supports


# --- apply() for real --------------------------------------------------------------------

UNSHARE = ["unshare", "--user", "--map-root-user", "--uts"]


@cache
def _userns_missing(full_map: bool) -> str | None:
    if shutil.which("unshare") is None:
        return "util-linux unshare is not installed"
    argv = [*UNSHARE, *(["--map-auto"] if full_map else []), "true"]
    probe = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        what = "user namespaces with a subordinate id range" if full_map else "user namespaces"
        return f"{what} unusable: {probe.stderr.strip()}"
    return None


def run_apply(names: frozenset[str], *extra: str, full_map: bool = False) -> dict[str, Any]:
    why = _userns_missing(full_map)
    if why is not None:
        unavailable(why)
    argv = [*UNSHARE, *(["--map-auto"] if full_map else []), "--"]
    argv += [sys.executable, "-m", "tests.rootless.caps_child", ",".join(sorted(names)), *extra]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def sets(inh: int, prm: int, eff: int, bnd: int, amb: int) -> dict[str, int]:
    return {"CapInh": inh, "CapPrm": prm, "CapEff": eff, "CapBnd": bnd, "CapAmb": amb}


def _caps_only(status: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in status.items() if k != "uid"}


@pytest.mark.userns
def test_apply_gives_dockers_sets_and_refuses_what_is_left_out() -> None:
    got = run_apply(DEFAULT_CAPS)
    m = DOCKER_DEFAULT_MASK
    assert got["sethostname_before"] == 0  # root of the userns owns the new uts ns
    assert _caps_only(got["self"]) == sets(inh=0, prm=m, eff=m, bnd=m, amb=0)
    assert got["sethostname_after"] == errno.EPERM  # CAP_SYS_ADMIN is not in the set
    # What the command gets at execve as root: the bounding set again, nothing more.
    assert _caps_only(got["exec"]) == sets(inh=0, prm=m, eff=m, bnd=m, amb=0)


@pytest.mark.userns
def test_apply_with_sys_admin_still_allows_sethostname() -> None:
    # The control for the EPERM above: the same call, with the cap in the set.
    names = DEFAULT_CAPS | {"CAP_SYS_ADMIN"}
    got = run_apply(names)
    assert got["sethostname_after"] == 0
    assert got["exec"]["CapEff"] == mask(names) == DOCKER_DEFAULT_MASK | 1 << 21


@pytest.mark.userns
def test_apply_of_the_empty_set_leaves_root_powerless() -> None:
    got = run_apply(frozenset())
    assert _caps_only(got["self"]) == sets(0, 0, 0, 0, 0)
    assert _caps_only(got["exec"]) == sets(0, 0, 0, 0, 0)
    assert got["sethostname_after"] == errno.EPERM


@pytest.mark.userns
def test_switch_between_the_two_parts_works_without_setuid_in_the_set() -> None:
    # `--cap-drop SETUID --cap-drop SETGID -u 1000`, which Docker runs: limit_bounding
    # leaves the effective set whole, so the switch still may; set_current then sets none.
    if not has_subid_range():
        pytest.skip("needs uid 1000 in the namespace; this user has no /etc/subuid range")
    names = DEFAULT_CAPS - {"CAP_SETUID", "CAP_SETGID"}
    m = mask(names)
    got = run_apply(names, "--switch", "1000", full_map=True)
    # A non-root process holds nothing, as under Docker; the bounding set stays.
    assert got["self"] == {**sets(inh=0, prm=0, eff=0, bnd=m, amb=0), "uid": 1000}
    assert got["exec"] == got["self"]
    late = run_apply(names, "--late-switch", "1000", full_map=True)
    assert late["late_switch"] == errno.EPERM  # why apply() is not for a caller that switches


@pytest.mark.userns
def test_root_switch_keeps_the_set() -> None:
    # -u 0 through the same path: set_current gives root the container's set.
    got = run_apply(DEFAULT_CAPS, "--switch", "0")
    m = DOCKER_DEFAULT_MASK
    assert got["self"] == {**sets(inh=0, prm=m, eff=m, bnd=m, amb=0), "uid": 0}
    assert got["exec"] == got["self"]
