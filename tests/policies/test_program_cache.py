from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import policies
from policies import DEFAULT_CAPS
from policies.errors import PolicyError
from policies.program_cache import program_for
from tests.policies.bpf_eval import Call, run
from tests.shared import DOCKER_SECCOMP, unavailable

ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
NR = {"chroot": 161, "mount": 165, "sethostname": 170, "clone3": 435}  # x86_64
x86_64_only = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 numbers")


def test_hit_equals_a_fresh_compile(tmp_path: Path) -> None:
    first = program_for("default", tmp_path)
    assert first == policies.compile_profile(policies.load_builtin("default"))
    assert len(list(tmp_path.glob("*.prog"))) == 1
    assert program_for("default", tmp_path) == first


def test_cached_entry_is_what_is_served(tmp_path: Path) -> None:
    program_for("default", tmp_path)
    (entry,) = tmp_path.glob("*.prog")
    entry.write_bytes(b"\0" * 16)  # proves the second call reads the cache
    assert program_for("default", tmp_path) == b"\0" * 16


def test_unconfined_and_allow_all_mean_no_filter(tmp_path: Path) -> None:
    assert program_for("unconfined", tmp_path) is None
    allow = tmp_path / "allow.json"
    allow.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    assert program_for(str(allow), tmp_path / "c") is None
    assert program_for(str(allow), tmp_path / "c") is None  # from the cache marker


def test_a_changed_file_is_a_new_entry(tmp_path: Path) -> None:
    prof = tmp_path / "p.json"
    prof.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    a = program_for(str(prof), tmp_path / "c")
    prof.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["add_key"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    b = program_for(str(prof), tmp_path / "c")
    assert a and b and a != b


def test_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_NOPE"}')
    with pytest.raises(PolicyError, match="defaultAction"):
        program_for(str(bad), tmp_path)
    with pytest.raises(FileNotFoundError):
        program_for(str(tmp_path / "missing.json"), tmp_path)


def _verdicts(program: bytes | None) -> dict[str, int]:
    assert program is not None
    return {name: run(program, Call(nr)) for name, nr in NR.items()}


@x86_64_only
def test_dockers_cap_rules_follow_the_caps_passed(tmp_path: Path) -> None:
    if not DOCKER_SECCOMP.exists():
        unavailable(f"{DOCKER_SECCOMP} is missing (set RSBOX_SHARED)")
    docker = str(DOCKER_SECCOMP)
    default = _verdicts(program_for(docker, tmp_path, caps=DEFAULT_CAPS))
    assert default == {"chroot": ALLOW, "mount": EPERM, "sethostname": EPERM, "clone3": ENOSYS}
    # --cap-add SYS_ADMIN: Docker's `includes.caps` rule allows mount and sethostname, and
    # its `excludes.caps` rule no longer sends clone3 to ENOSYS.
    admin = _verdicts(program_for(docker, tmp_path, caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}))
    assert admin == {"chroot": ALLOW, "mount": ALLOW, "sethostname": ALLOW, "clone3": ALLOW}
    # --cap-drop ALL: chroot needs CAP_SYS_CHROOT.
    assert _verdicts(program_for(docker, tmp_path, caps=frozenset()))["chroot"] == EPERM
    assert len(list(tmp_path.glob("*.prog"))) == 3


@x86_64_only
def test_builtin_default_allows_chroot_only_with_sys_chroot(tmp_path: Path) -> None:
    assert _verdicts(program_for("default", tmp_path))["chroot"] == ALLOW
    no_chroot = DEFAULT_CAPS - {"CAP_SYS_CHROOT"}
    assert _verdicts(program_for("default", tmp_path, caps=no_chroot))["chroot"] == EPERM


def test_cache_entries_are_per_cap_set(tmp_path: Path) -> None:
    admin = DEFAULT_CAPS | {"CAP_SYS_ADMIN"}
    implicit = program_for("default", tmp_path)
    assert program_for("default", tmp_path, caps=DEFAULT_CAPS) == implicit
    program_for("default", tmp_path, caps=admin)
    assert len(list(tmp_path.glob("*.prog"))) == 3  # None, the default set, + SYS_ADMIN
    for entry in tmp_path.glob("*.prog"):
        entry.write_bytes(b"\0" * 8)
    assert program_for("default", tmp_path, caps=admin) == b"\0" * 8  # served from its entry
