"""policies.fakeroot: `fakeroot` with the owner families notified, in one filter."""

from __future__ import annotations

from pathlib import Path

import policies
from policies import fakeroot
from policies._default_profile import build
from policies.profile import Action


def test_notified_names_leave_every_other_rule_and_get_one_notify_rule() -> None:
    doc = fakeroot.owner_profile_dict()
    rules = doc["syscalls"]
    notify = [r for r in rules if r["action"] == "SCMP_ACT_NOTIFY"]
    assert len(notify) == 1 and set(notify[0]["names"]) == set(fakeroot.NOTIFIED)
    others = {n for r in rules if r is not notify[0] for n in r["names"]}
    assert not others & set(fakeroot.NOTIFIED)
    # Everything else is plain fakeroot's (capset and device mknod stay "no effect").
    plain = {n for r in build("fakeroot")["syscalls"] for n in r["names"]}
    assert others == plain - set(fakeroot.NOTIFIED)
    profile = policies.from_json_dict(doc)
    host = policies.Host.current()
    verdicts = {n: r.action for r in profile.effective_rules(host) for n in r.names}
    assert verdicts["setresuid"] is Action.NOTIFY and verdicts["statx"] is Action.NOTIFY
    assert verdicts["capset"] is Action.ERRNO and verdicts["read"] is Action.ALLOW


def test_the_program_compiles_and_names_the_native_syscalls(tmp_path: Path) -> None:
    program = fakeroot.owner_program(tmp_path, policies.DEFAULT_CAPS)
    assert program and len(program) % 8 == 0
    assert fakeroot.owner_program(tmp_path, policies.DEFAULT_CAPS) == program  # cached
    names = set(fakeroot.notified_numbers().values())
    assert {"fchown", "fchownat", "setresuid", "getgroups", "newfstatat", "statx"} <= names
