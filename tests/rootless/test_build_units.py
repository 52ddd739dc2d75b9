"""The pure parts of `rsbox build`: COPY source matching, --chown/--chmod, the cache key
chain, the seccomp choice for RUN steps and the --host-ca binding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rootless.errors import BuildError, UsageError
from rootless.idmap import IdMap, SubRange
from rootless.images import build_cache
from rootless.images.build import HOST_CA_ENV, HOST_CA_TARGET, host_ca_binding, run_seccomp
from rootless.images.build_copy import Owner, match_sources, parse_chmod, parse_chown
from rootless.images.instructions import Copy

FILES = ("a.txt", "b.txt", "dir", "dir/c.txt", "dir/sub", "dir/sub/d.txt", "x.log")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("a.txt", ["a.txt"]),
        ("./a.txt", ["a.txt"]),
        ("/dir", ["dir"]),
        (".", [""]),
        ("*.txt", ["a.txt", "b.txt"]),
        ("dir/*", ["dir/c.txt", "dir/sub"]),
        ("?.txt", ["a.txt", "b.txt"]),
        ("[a].txt", ["a.txt"]),
        ("[^a].txt", ["b.txt"]),
        ("*/sub/*.txt", ["dir/sub/d.txt"]),
        ("missing", []),
        ("../a.txt", ["a.txt"]),  # `..` cannot leave the context
    ],
)
def test_match_sources_globs_within_one_component(pattern: str, expected: list[str]) -> None:
    assert match_sources(pattern, FILES) == expected


PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napps:x:1001:\nother:x:2000:\n"


def test_chown_user_alone_takes_the_same_number_as_group() -> None:
    # Docker's documented rule, not the passwd entry's primary group (1001)
    assert parse_chown("app", PASSWD, GROUP) == Owner(1000, 1000)
    assert parse_chown("1234", PASSWD, GROUP) == Owner(1234, 1234)


def test_chown_user_and_group_by_name_or_number() -> None:
    assert parse_chown("app:other", PASSWD, GROUP) == Owner(1000, 2000)
    assert parse_chown("5:6", PASSWD, GROUP) == Owner(5, 6)


def test_chown_unknown_name_is_refused() -> None:
    with pytest.raises(UsageError, match="nobody"):
        parse_chown("nobody", PASSWD, GROUP)


def _copy(chmod: str) -> Copy:
    return Copy(line=3, source=f"COPY --chmod={chmod} a b", sources=("a",), dest="b", chmod=chmod)


def test_chmod_octal_only() -> None:
    assert parse_chmod(_copy("0755"), "0755") == 0o755
    assert parse_chmod(_copy("640"), "640") == 0o640
    with pytest.raises(BuildError, match=r"line 3: COPY: invalid --chmod 'u\+x'"):
        parse_chmod(_copy("u+x"), "u+x")


def test_cache_chain_depends_on_parent_and_every_part() -> None:
    a = build_cache.chain("p", "RUN x", "env")
    assert a == build_cache.chain("p", "RUN x", "env")
    assert len({a, build_cache.chain("q", "RUN x", "env"), build_cache.chain("p", "RUN y", "env"),
                build_cache.chain("p", "RUN x", "env2"), build_cache.chain("p", "RUN x")}) == 5  # fmt: skip
    # parts are framed: moving a character between parts changes the key
    assert build_cache.chain("p", "ab", "c") != build_cache.chain("p", "a", "bc")


def test_run_steps_use_the_default_profile_with_a_full_map_and_fakeroot_without() -> None:
    full = IdMap(1000, 1000, SubRange(100000, 65536), SubRange(100000, 65536))
    single = IdMap(1000, 1000, None, None)
    assert run_seccomp(full) == "default"
    assert run_seccomp(single) == "fakeroot"


def test_host_ca_binding_only_when_asked() -> None:
    assert host_ca_binding(False) == ((), {})
    if not Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and the host has no CA bundle (install ca-certificates)")
        pytest.skip("this host has no CA bundle")
    binds, env = host_ca_binding(True)
    assert [(b.target, b.readonly) for b in binds] == [(HOST_CA_TARGET, True)]
    assert binds[0].source.is_file()
    assert env == dict.fromkeys(HOST_CA_ENV, HOST_CA_TARGET)
