"""`rsbox policy ...`, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import policies


def rsbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rootless", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_list_names_every_builtin() -> None:
    res = rsbox("policy", "list")
    assert res.returncode == 0, res.stderr
    assert [line.split()[0] for line in res.stdout.splitlines()] == policies.builtin_names()


def test_show_prints_a_profile_that_loads_back() -> None:
    res = rsbox("policy", "show", "fakeroot")
    assert res.returncode == 0, res.stderr
    assert policies.from_json_dict(json.loads(res.stdout)) == policies.load_builtin("fakeroot")
    bad = rsbox("policy", "show", "nope")
    assert bad.returncode == 125 and bad.stderr.startswith("rsbox: error: no built-in seccomp")


def test_check_says_what_is_allowed_and_denied(tmp_path: Path) -> None:
    prof = tmp_path / "p.json"
    prof.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                    {
                        "names": ["socket"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}],
                    },
                ],
            }
        )
    )
    res = rsbox("policy", "check", str(prof))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "valid" in out.splitlines()[0]
    assert "allow (2):\n  read getpid\n" in out
    assert "  mount                   EACCES\n" in out
    assert "  socket                  ALLOW if arg0 == 0x1; else EPERM\n" in out
    assert "  write                   EPERM\n" in out  # below the highest named: default
    assert "  mseal                   ENOSYS (newer than the profile)\n" in out


def test_check_names_the_json_path_of_a_mistake(tmp_path: Path) -> None:
    prof = tmp_path / "bad.json"
    prof.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}')
    res = rsbox("policy", "check", str(prof))
    assert res.returncode == 125
    assert res.stderr.splitlines() == [
        f"rsbox: error: seccomp profile {prof}: syscalls[0].action: missing"
        " (hint: check the profile)"
    ]


def test_export_bpf_writes_the_compiled_filter(tmp_path: Path) -> None:
    out = tmp_path / "default.bpf"
    res = rsbox("policy", "export-bpf", "default", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == policies.compile_profile(policies.load_builtin("default"))
    none = rsbox("policy", "export-bpf", "unconfined", "-o", str(tmp_path / "u.bpf"))
    assert none.returncode == 125 and not (tmp_path / "u.bpf").exists()
