"""Compiler: rule expansion, arches, the ENOSYS prologue, and the on-disk cache.

Verdicts are checked by running the compiled program in a BPF interpreter (bpf_eval), so
none of this needs to install a filter.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

import policies
from policies import DEFAULT_CAPS, Host, compiler
from policies.profile import Arg, Op
from tests.policies.bpf_eval import AUDIT_ARCH_I386, X32_BIT, Call, run

ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
# x86_64 / i386 numbers
NR = {"read": 0, "write": 1, "getpid": 39, "mount": 165, "personality": 135, "mseal": 462}
NR32 = {"read": 3, "mount": 21, "getpid": 20}

HOST = Host(goarch="amd64", caps=DEFAULT_CAPS, kernel=(6, 18))

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 numbers")


def profile(
    *rules: dict[str, Any], default: str = "SCMP_ACT_ERRNO", **extra: Any
) -> policies.Profile:
    return policies.from_json_dict({"defaultAction": default, "syscalls": list(rules), **extra})


def compiled(p: policies.Profile) -> bytes:
    program = policies.compile_profile(p, HOST)
    assert program is not None
    assert len(program) % 8 == 0
    return program


def test_unconfined_compiles_to_no_filter(tmp_path: Path) -> None:
    assert policies.compile_profile(policies.load_builtin("unconfined")) is None
    assert policies.compile_cached(policies.load_builtin("unconfined"), tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_allow_default_with_a_deny_rule_still_filters() -> None:
    p = profile({"names": ["mount"], "action": "SCMP_ACT_ERRNO"}, default="SCMP_ACT_ALLOW")
    program = compiled(p)
    assert run(program, Call(NR["mount"])) == EPERM
    assert run(program, Call(NR["read"])) == ALLOW
    assert run(program, Call(999)) == ALLOW  # no ENOSYS prologue when the default allows


def test_rules_equal_to_the_default_are_skipped() -> None:
    # libseccomp would reject the second rule with EACCES.
    p = profile(
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    )
    program = compiled(p)
    assert run(program, Call(NR["write"])) == EPERM


def test_conditions_on_the_same_argument_become_separate_rules() -> None:
    a = Arg(0, 0, 0, Op.EQ)
    b = Arg(0, 8, 0, Op.EQ)
    c = Arg(1, 1, 0, Op.EQ)
    assert compiler.condition_sets([a, c]) == [(a, c)]
    assert compiler.condition_sets([a, b]) == [(a,), (b,)]
    assert compiler.condition_sets([]) == [()]
    p = profile(
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
            ],
        }
    )
    program = compiled(p)
    assert run(program, Call(NR["personality"], args=(0,))) == ALLOW
    assert run(program, Call(NR["personality"], args=(8,))) == ALLOW
    assert run(program, Call(NR["personality"], args=(4,))) == EPERM


@pytest.mark.parametrize(
    ("op", "value", "value_two", "arg", "allowed"),
    [
        ("SCMP_CMP_NE", 5, 0, 4, True),
        ("SCMP_CMP_NE", 5, 0, 5, False),
        ("SCMP_CMP_LT", 5, 0, 4, True),
        ("SCMP_CMP_LT", 5, 0, 5, False),
        ("SCMP_CMP_LE", 5, 0, 5, True),
        ("SCMP_CMP_LE", 5, 0, 6, False),
        ("SCMP_CMP_EQ", 2**40, 0, 2**40, True),
        ("SCMP_CMP_EQ", 2**40, 0, 0, False),
        ("SCMP_CMP_GE", 5, 0, 5, True),
        ("SCMP_CMP_GE", 5, 0, 4, False),
        ("SCMP_CMP_GT", 5, 0, 6, True),
        ("SCMP_CMP_GT", 5, 0, 5, False),
        ("SCMP_CMP_MASKED_EQ", 0xF0, 0x30, 0x3F, True),
        ("SCMP_CMP_MASKED_EQ", 0xF0, 0x30, 0x4F, False),
    ],
)
def test_every_operator_compiles_to_the_right_verdict(
    op: str, value: int, value_two: int, arg: int, allowed: bool
) -> None:
    p = profile(
        {
            "names": ["read"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op}],
        }
    )
    verdict = run(compiled(p), Call(NR["read"], args=(0, 0, arg)))
    assert verdict == (ALLOW if allowed else EPERM)


def test_target_arches() -> None:
    docker_like = profile(
        archMap=[{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}]
    )
    assert compiler.target_arches(docker_like) == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86")
    oci = profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"])
    assert compiler.target_arches(oci) == ("SCMP_ARCH_X86_64",)
    bare = profile()
    assert compiler.target_arches(bare) == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")


def test_companion_arches_get_rules_too() -> None:
    p = profile({"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"})
    program = compiled(p)
    assert run(program, Call(NR32["read"], arch=AUDIT_ARCH_I386)) == ALLOW
    assert run(program, Call(4, arch=AUDIT_ARCH_I386)) == EPERM  # write
    assert run(program, Call(X32_BIT | NR["read"])) == ALLOW


def test_syscalls_newer_than_the_profile_get_enosys() -> None:
    p = profile(
        {"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO"},  # known: EPERM
    )
    program = compiled(p)
    assert run(program, Call(NR["mount"])) == EPERM  # highest known: 165
    assert run(program, Call(NR["mount"] - 1)) == EPERM
    assert run(program, Call(NR["mount"] + 1)) == ENOSYS
    assert run(program, Call(NR32["mount"] + 1, arch=AUDIT_ARCH_I386)) == ENOSYS
    assert run(program, Call(X32_BIT | (NR["mount"] + 1))) == ENOSYS
    # x32's legacy block (512..) is not "newer".
    assert run(program, Call(X32_BIT | 520)) == EPERM


def test_syscalls_newer_than_libseccomp_are_compiled_by_number() -> None:
    p = profile({"names": ["read", "mseal"], "action": "SCMP_ACT_ALLOW"})
    program = compiled(p)
    assert run(program, Call(NR["mseal"])) == ALLOW
    assert run(program, Call(NR["mseal"], arch=AUDIT_ARCH_I386)) == ALLOW
    assert run(program, Call(X32_BIT | NR["mseal"])) == ALLOW
    assert run(program, Call(NR["mseal"] - 1)) == EPERM
    assert run(program, Call(NR["mseal"] + 1)) == ENOSYS


def test_default_errno_and_kill_actions() -> None:
    p = profile({"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"}, defaultErrnoRet=13)
    assert run(compiled(p), Call(NR["write"])) == 0x00050000 | 13
    k = profile(
        {"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"}, default="SCMP_ACT_KILL_PROCESS"
    )
    assert run(compiled(k), Call(NR["write"])) == 0x80000000


def test_docker_profile_compiles() -> None:
    from tests.policies.test_profile import DOCKER, PODMAN

    for path in (DOCKER, PODMAN):
        if path.exists():
            program = compiled(policies.load_file(path))
            assert run(program, Call(NR["read"])) == ALLOW
            assert run(program, Call(246)) != ALLOW  # kexec_load


def test_compile_cached_writes_once_and_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = policies.load_builtin("default")
    cache = tmp_path / "cache"
    first = policies.compile_cached(p, cache, HOST)
    entries = list(cache.iterdir())
    assert len(entries) == 1
    assert entries[0].name == compiler.cache_key(p, HOST) + ".bpf"
    assert entries[0].read_bytes() == first == policies.compile_profile(p, HOST)

    def boom(*_: object) -> bytes:
        raise AssertionError("recompiled despite a cache hit")

    monkeypatch.setattr(compiler, "compile_profile", boom)
    assert policies.compile_cached(p, cache, HOST) == first


def test_cache_key_depends_on_profile_and_host() -> None:
    p = policies.load_builtin("default")
    q = profile({"names": ["read"], "action": "SCMP_ACT_ALLOW"})
    admin = Host(goarch="amd64", caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}, kernel=(6, 18))
    keys = {compiler.cache_key(p, HOST), compiler.cache_key(q, HOST), compiler.cache_key(p, admin)}
    assert len(keys) == 3
    assert compiler.cache_key(p, HOST) == compiler.cache_key(policies.load_builtin("default"), HOST)


def test_corrupt_cache_entry_is_replaced(tmp_path: Path) -> None:
    p = policies.load_builtin("default")
    (tmp_path / f"{compiler.cache_key(p, HOST)}.bpf").write_bytes(b"garbage")
    program = policies.compile_cached(p, tmp_path, HOST)
    assert program == policies.compile_profile(p, HOST)
    assert [e.name for e in tmp_path.iterdir() if e.name.endswith(".tmp")] == []


def test_unwritable_cache_is_not_an_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    p = policies.load_builtin("default")
    assert policies.compile_cached(p, not_a_dir, HOST) == policies.compile_profile(p, HOST)
