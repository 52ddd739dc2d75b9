"""Pure parts of the registry client: references, challenges, platforms, credentials."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.registry.auth import (
    Credentials,
    find_credentials,
    remove_credentials,
    rsbox_auth_file,
    store_credentials,
)
from rootless.registry.client import TransportOptions, parse_challenge
from rootless.registry.pull import Platform
from rootless.registry.reference import is_loopback, parse_reference


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("ghcr.io/o/r:1", "ghcr.io", "o/r", "1", None),
        ("localhost:5000/x", "localhost:5000", "x", "latest", None),
        ("localhost/x:y", "localhost", "x", "y", None),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
        ("127.0.0.1:1/a/b@sha256:" + "a" * 64, "127.0.0.1:1", "a/b", None, "sha256:" + "a" * 64),
    ],
)
def test_reference_parsing_follows_docker(
    text: str, registry: str, repo: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)


def test_docker_hub_api_endpoint() -> None:
    assert parse_reference("alpine").endpoint == "registry-1.docker.io"
    assert parse_reference("quay.io/a/b").endpoint == "quay.io"


@pytest.mark.parametrize("bad", ["UPPER/case", "a@sha256:123", "x:tag with space", ""])
def test_bad_references_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_reference(bad)
    assert info.value.hint


def test_loopback_registries_may_use_plain_http() -> None:
    assert (
        is_loopback("localhost:5000")
        and is_loopback("127.0.0.1:8080")
        and is_loopback("[::1]:5000")
    )
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")
    opts = TransportOptions()
    assert opts.plain_http_allowed("127.0.0.1:5000")
    assert not opts.plain_http_allowed("quay.io")
    assert TransportOptions(insecure=frozenset({"quay.io"})).plain_http_allowed("quay.io")
    assert TransportOptions(tls_verify=False).plain_http_allowed("quay.io")


def test_bearer_challenge_parsing() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
    scheme, params = parse_challenge(header)
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_platform_matching() -> None:
    amd64 = Platform.parse("linux/amd64")
    assert amd64.matches({"os": "linux", "architecture": "amd64"})
    assert not amd64.matches({"os": "linux", "architecture": "arm64"})
    arm64 = Platform.parse("linux/arm64")
    assert arm64.matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    armv7 = Platform.parse("linux/arm/v7")
    assert armv7.matches({"os": "linux", "architecture": "arm", "variant": "v7"})
    assert not armv7.matches({"os": "linux", "architecture": "arm", "variant": "v6"})


def _auth_file(path: Path, registry: str, user: str, pw: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{pw}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry: {"auth": token}}}))


def test_credentials_come_from_docker_and_podman_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert find_credentials("quay.io") is None
    _auth_file(
        tmp_path / "home" / ".docker" / "config.json", "https://index.docker.io/v1/", "d", "p1"
    )
    _auth_file(tmp_path / "run" / "containers" / "auth.json", "quay.io", "q", "p2")
    assert find_credentials("docker.io") == Credentials("d", "p1")
    assert find_credentials("quay.io") == Credentials("q", "p2")
    # rsbox's own file wins, and is private
    path = store_credentials("quay.io", Credentials("mine", "p3"))
    assert path == rsbox_auth_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert find_credentials("quay.io") == Credentials("mine", "p3")
    assert remove_credentials("quay.io")
    assert not remove_credentials("quay.io")
    assert find_credentials("quay.io") == Credentials("q", "p2")


def test_a_killed_pull_leaves_nothing_after_the_next_command(tmp_path: Path) -> None:
    from rootless.store import Store

    with Store.open(tmp_path / "root") as store:
        live, fd = store.locked_tmpdir("pull-")
        dead, fd2 = store.locked_tmpdir("pull-")
        os.close(fd2)  # what the kernel does when the pulling process dies
        (dead / "blob").write_bytes(b"half a blob")
        other = store.mkdtemp("import-")  # young and unmarked: may be in use, kept
    with Store.open(tmp_path / "root") as store:
        left = set(store.tmp.iterdir())
    assert live in left and other in left and dead not in left
    os.close(fd)
