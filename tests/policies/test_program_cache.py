from __future__ import annotations

import json
from pathlib import Path

import pytest

import policies
from policies.errors import PolicyError
from policies.program_cache import program_for


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
