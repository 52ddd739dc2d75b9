"""rootless.filters: Docker's `ps --filter` and `images --filter` keys."""

from __future__ import annotations

from typing import Any

import pytest

from rootless.errors import UsageError
from rootless.filters import ContainerFilter, ImageFilter, short_forms


def ctr(f: ContainerFilter, **kw: Any) -> bool:
    facts: dict[str, Any] = {
        "cid": "abc123" + "0" * 58,
        "name": "nostalgic_stallman",
        "status": "running",
        "exit_code": None,
        "labels": {"color": "blue"},
        "image_layers": ["l1", "l2"],
        "ancestors": [],
    }
    facts.update(kw)
    return f.matches(**facts)


def test_container_keys() -> None:
    assert ctr(ContainerFilter.parse(["name=nostalgic"]))  # a part of the name
    assert ctr(ContainerFilter.parse(["name=^/nostalgic_stallman$"]))  # Docker's /name
    assert not ctr(ContainerFilter.parse(["name=^stallman"]))
    assert ctr(ContainerFilter.parse(["label=color"]))
    assert ctr(ContainerFilter.parse(["label=color=blue"]))
    assert not ctr(ContainerFilter.parse(["label=color=red"]))
    assert ctr(ContainerFilter.parse(["id=abc1"])) and not ctr(ContainerFilter.parse(["id=bc"]))
    exited = ContainerFilter.parse(["status=exited", "exited=137"])
    assert exited.shows_stopped
    assert ctr(exited, status="exited", exit_code=137)
    assert not ctr(exited, status="exited", exit_code=0)
    assert not ctr(exited)


def test_same_key_or_different_keys_and() -> None:
    f = ContainerFilter.parse(["status=created", "status=running", "name=zzz"])
    assert not ctr(f)
    f = ContainerFilter.parse(["status=created", "status=running", "name=stall"])
    assert ctr(f) and ctr(f, status="created") and not ctr(f, status="exited")


def test_ancestor_is_the_image_or_one_built_on_it() -> None:
    f = ContainerFilter.parse(["ancestor=busybox"])
    assert ctr(f, ancestors=[["l1", "l2"]])  # the image itself
    assert ctr(f, ancestors=[["l1"]])  # its base
    assert not ctr(f, ancestors=[["l1", "l2", "l3"]])  # a child of it is not an ancestor
    assert not ctr(f, ancestors=[])  # an image not in the store matches nothing


@pytest.mark.parametrize("bad", ["status=sleeping", "nosuch=1", "name", "exited=x", "name=(", "=x"])
def test_bad_container_filters(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        ContainerFilter.parse([bad])
    assert "\n" not in info.value.line()


def test_image_keys() -> None:
    dangling = ImageFilter.parse(["dangling=true"])
    assert dangling.matches([], {}) and not dangling.matches(["localhost/a:1"], {})
    assert ImageFilter.parse(["dangling=false"]).matches(["localhost/a:1"], {})
    labelled = ImageFilter.parse(["label=com.example.version=1.0"])
    assert labelled.matches([], {"com.example.version": "1.0"})
    assert not labelled.matches([], {"com.example.version": "0.1"})


def test_reference_patterns_follow_docker_docs() -> None:
    """image_ls.md: `--filter=reference='busy*:*libc'` keeps uclibc and glibc, and a
    `*` does not cross a `/`."""
    names = [f"localhost/busybox:{t}" for t in ("latest", "uclibc", "musl", "glibc")]
    f = ImageFilter.parse(["reference=busy*:*libc"])
    assert f.names_shown(names) == ["localhost/busybox:uclibc", "localhost/busybox:glibc"]
    assert ImageFilter.parse(["reference=*:musl"]).names_shown(names) == names[2:3]
    assert ImageFilter.parse(["reference=localhost/busybox"]).names_shown(names) == names
    assert ImageFilter.parse(["reference=*"]).names_shown(["quay.io/a/b:1"]) == []
    assert not f.matches([], {})
    assert short_forms("docker.io/library/alpine:3") == [
        "docker.io/library/alpine:3",
        "docker.io/library/alpine",
        "alpine:3",
        "alpine",
    ]


@pytest.mark.parametrize("bad", ["dangling=maybe", "reference=[ab", "before=x"])
def test_bad_image_filters(bad: str) -> None:
    with pytest.raises(UsageError):
        ImageFilter.parse([bad])
