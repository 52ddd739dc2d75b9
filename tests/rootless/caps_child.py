"""Test helper: `python -m tests.rootless.caps_child CAPS [--switch UID | --late-switch UID]`.

Run as root of a fresh user + uts namespace (`unshare --user --map-root-user --uts`), it
calls `rootless.launch.caps.apply` with CAPS (comma-separated canonical names, may be
empty) for real, which cannot be undone: hence a process of its own. It prints one JSON
object: sethostname's errno before and after apply (0 = allowed), its own capability sets
after apply, and those of a program it execs afterwards (`cat /proc/self/status`), which
is what the container's command would get.

`--switch UID` switches to UID:UID (the launcher's `-u`) in become.py's order instead:
limit_bounding, the switch, set_current (nothing for a non-root UID). `--late-switch UID`
tries the same switch after apply() and reports its errno.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from rootless import syscalls
from rootless.launch import caps

FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def status_caps(text: str) -> dict[str, int]:
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            found[key] = int(value.strip(), 16)
        elif key == "Uid":
            found["uid"] = int(value.split()[0])
    return found


def attempt(call: Callable[[], None]) -> int:
    try:
        call()
    except OSError as exc:
        return exc.errno or -1
    return 0


def switch_to(uid: int) -> Callable[[], None]:
    def switch() -> None:
        if uid != 0:  # a single-id map denies setgroups; root keeps its groups anyway
            os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    return switch


def main(argv: list[str]) -> None:
    names = frozenset(n for n in argv[1].split(",") if n)
    mode, uid = (argv[2], int(argv[3])) if len(argv) > 3 else ("", 0)
    out: dict[str, object] = {
        "sethostname_before": attempt(lambda: syscalls.sethostname("before")),
    }
    if mode == "--switch":
        caps.limit_bounding(names)
        switch_to(uid)()
        caps.set_current(names if uid == 0 else frozenset())
    else:
        caps.apply(names)
    if mode == "--late-switch":
        out["late_switch"] = attempt(switch_to(uid))
    with open("/proc/self/status") as f:
        out["self"] = status_caps(f.read())
    out["sethostname_after"] = attempt(lambda: syscalls.sethostname("after"))
    shown = subprocess.run(
        ["cat", "/proc/self/status"], capture_output=True, text=True, check=True
    ).stdout
    out["exec"] = status_caps(shown)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
