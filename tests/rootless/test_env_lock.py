"""rootless.env.lock.parse_sections: the listing script's output -> rsbox.lock's
`packages` (the e2e tests see dpkg and pip from real images; npm, rpm and apk here)."""

from __future__ import annotations

import json

import pytest

from rootless.env.lock import _MARK, parse_sections
from rootless.errors import RsboxError


def _section(kind: str, body: str, status: int = 0) -> str:
    return f"{_MARK}{kind}\n{body}{_MARK}status {status}\n"


def test_each_kind_is_sorted_and_npm_is_a_name_to_version_map() -> None:
    npm = {
        "name": "lib",
        "dependencies": {"typescript": {"version": "5.4.5"}, "npm": {"version": "9.2.0"}},
    }
    text = (
        _section("rpm", "zlib=1.2.13-1\nbash=5.2-1\n")
        + _section("apk", "musl-1.2.4-r2\nbusybox-1.36.1-r5\n")
        + _section("npm", json.dumps(npm, indent=2) + "\n")
    )
    assert parse_sections(text) == {
        "rpm": ["bash=5.2-1", "zlib=1.2.13-1"],
        "apk": ["busybox-1.36.1-r5", "musl-1.2.4-r2"],
        "npm": {"npm": "9.2.0", "typescript": "5.4.5"},
    }
    assert parse_sections("") == {}


def test_a_failed_listing_is_an_error_not_an_empty_list() -> None:
    with pytest.raises(RsboxError, match=r"listing the pip packages .* failed \(status 1\)"):
        parse_sections(_section("dpkg", "a=1\n") + _section("pip", "", status=1))
