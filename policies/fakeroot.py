"""`fakeroot` with true owners: the filter for a single-id user namespace.

The built-in `fakeroot` profile answers the chown and set*id families with "success, no
effect" in the filter itself. Under a single-id map rsbox does better: those calls, and the
get*id and stat families that must agree with them, are SCMP_ACT_NOTIFY, and the launcher's
P1 answers them (rootless/launch/fakeroot.py): it keeps each process's emulated credentials and
records chowns of files on the union in the union's metadata, so committed layers keep
the owners the container set.

One filter, not two stacked. With two filters the kernel runs both and keeps the action of
highest precedence (KILL > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW), so a NOTIFY
filter under the `fakeroot` profile would always lose to its ERRNO(0): the enforcing
profile has to change either way. Turning the notified names into one NOTIFY rule of the
same profile keeps every other verdict exactly `fakeroot`'s, costs one program run per
syscall instead of two, and leaves one place that decides. (A chain may hold one
listener only; this is it.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from policies import _arch

CHOWN = ("chown", "fchown", "lchown", "fchownat")
SET_IDS = [
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
]
GET_IDS = ["getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups"]
# So that the container sees the owners it set (`stat -c %U`, and programs that copy an
# owner: useradd's new /etc/shadow, cp -a, tar -c).
STAT = ("stat", "lstat", "fstat", "newfstatat", "statx")
NOTIFIED = (*CHOWN, *SET_IDS, *GET_IDS, *STAT)


def owner_profile_dict() -> dict[str, Any]:
    """`fakeroot`'s Docker-format profile with NOTIFIED as one SCMP_ACT_NOTIFY rule."""
    from policies._default_profile import build

    doc = copy.deepcopy(build("fakeroot"))
    rules = []
    for rule in doc["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in NOTIFIED]
        if rule["names"]:
            rules.append(rule)
    rules.append(
        {
            "names": list(NOTIFIED),
            "action": "SCMP_ACT_NOTIFY",
            "comment": "fakeroot under a single-id map: answered by rsbox (true owners)",
        }
    )
    doc["syscalls"] = rules
    return doc


def owner_program(cache_dir: Path, caps: frozenset[str]) -> bytes:
    """The BPF of `owner_profile_dict`, compiled for `caps` (cached in `cache_dir`)."""
    from policies.compiler import compile_cached
    from policies.profile import Host, from_json_dict

    program = compile_cached(from_json_dict(owner_profile_dict()), cache_dir, Host.current(caps))
    assert program is not None  # the profile's default action is ERRNO
    return program


def native_arch_token() -> int:
    """AUDIT_ARCH_* of the native ABI: the only one the filter notifies."""
    return _arch.SCMP_ARCH_TOKENS[_arch.native_scmp_arch()]


def notified_numbers() -> dict[int, str]:
    """Syscall number -> name for NOTIFIED on the native ABI (aarch64 has no chown)."""
    native = _arch.native_scmp_arch()
    out = {}
    for name in NOTIFIED:
        nr = _arch.syscall_number(native, name)
        if nr is not None:
            out[nr] = name
    return out
