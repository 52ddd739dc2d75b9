"""The lean entry's pure parts (rootless.env.enter) and what it imports, without a
container: the e2e behaviour is tests/e2e/test_env_enter.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rootless.env import enter
from rootless.launch.protocol import parse_error, report

SOURCE = str(Path(__file__).resolve().parents[2])


def test_the_lean_path_imports_no_heavy_module() -> None:
    """What a shim imports up to the fork, under `python -IS` as the shim runs; the same
    probe after the full CLI's config parser does import them, so that it can tell."""
    probe = """
import sys
sys.path.insert(0, sys.argv[1])
import rootless.env.enter, rootless.launch.exec, rootless.locations, rootless.running
rootless.env.enter.warm("/nonexistent", "/nonexistent")
rootless.launch.exec.sc.set_dumpable(True)  # the C half of rootless.syscalls, not ctypes
if sys.argv[2] == "full":
    import rootless.env.config, rootless.env.steps, fs.kcache
print(" ".join(sorted(sys.modules)))
"""
    heavy = {"json", "re", "hashlib", "typing", "dataclasses", "pathlib", "sqlite3", "tomllib", "enum"}
    heavy |= {"ctypes"}  # the FUSE server keeps it (fs.kcache, "full" below)

    def loaded(which: str) -> set[str]:
        argv = [sys.executable, "-IS", "-c", probe, SOURCE, which]
        return set(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split())

    lean = loaded("lean")
    assert lean & heavy == set()
    assert "rootless._syscalls" in lean
    assert loaded("full") & heavy == heavy - {"hashlib"}  # build_key imports it when called


@pytest.mark.parametrize(
    ("cwd", "inside"),
    [("/p/proj", "/p/proj"), ("/p/proj/src/a", "/p/proj/src/a"), ("/p/project2", "/p/proj"),
     ("/p", "/p/proj"), ("/elsewhere", "/p/proj")],
)  # fmt: skip
def test_the_working_directory_is_the_callers_inside_the_project(cwd: str, inside: str) -> None:
    assert enter.workdir("/p/proj", cwd) == inside


def test_only_the_allowlist_crosses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the test's own: under the C locale Python itself sets LC_CTYPE=C.UTF-8 in its
    # environment (PEP 538), which a login without LANG gives.
    for name in [n for n in os.environ if n.startswith("LC_")]:
        monkeypatch.delenv(name)
    for name, value in (("TERM", "xterm"), ("LANG", "C.UTF-8"), ("LC_ALL", "C"),
                        ("DISPLAY", ":0"), ("SECRET", "x"), ("SSH_AUTH_SOCK", "/s")):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert enter.passed_env("") == ["TERM=xterm", "LANG=C.UTF-8", "LC_ALL=C"]
    assert enter.passed_env("/run/agent")[-1] == "SSH_AUTH_SOCK=/run/agent"


def test_the_trust_key_is_path_newline_sha(tmp_path: Path) -> None:
    import hashlib

    from rootless.env.trust import record_path

    config = str(tmp_path / "rsbox.toml")
    Path(config).write_bytes(b"[env]\n")
    sha = hashlib.sha256(b"[env]\n").hexdigest()
    key = hashlib.sha256(f"{config}\n{sha}".encode()).hexdigest()
    assert record_path(str(tmp_path), config) == str(tmp_path / "env-trust" / key)
    assert not enter.trusted(str(tmp_path), config, sha)  # no record: untrusted
    (tmp_path / "env-trust").mkdir()
    assert not enter.trusted(str(tmp_path), config, sha)
    (tmp_path / "env-trust" / key).touch()
    assert enter.trusted(str(tmp_path), config, sha)


def test_a_missing_or_damaged_record_is_a_miss(tmp_path: Path) -> None:
    project = str(tmp_path / "proj")
    assert enter.warm(str(tmp_path), project) is None
    path = Path(enter.record_path(str(tmp_path), project))
    path.parent.mkdir()
    path.write_bytes(b"\x00garbage")
    assert enter.warm(str(tmp_path), project) is None


@pytest.mark.parametrize("message", ["plain", "ünïcödé ✓ \U0001f600" * 500, "x" * 10000])
def test_an_error_line_round_trips_without_imports(message: str) -> None:
    from rootless.errors import CommandNotFound

    r, w = os.pipe()
    try:
        assert report(w, CommandNotFound(message, hint="check")) == 127
        err = parse_error(os.read(r, 65536))
    finally:
        os.close(r)
        os.close(w)
    assert isinstance(err, CommandNotFound) and err.hint == "check"
    assert message.startswith(err.message) and err.message
    assert parse_error(b"") is None and parse_error(b"\n") is None
