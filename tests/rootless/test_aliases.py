"""rootless.aliases: Docker's management forms are the plain verbs."""

from __future__ import annotations

import pytest

from rootless.aliases import expand
from rootless.commands import build_parser


@pytest.mark.parametrize(
    ("argv", "plain"),
    [
        (["container", "ls", "-a"], ["ps", "-a"]),
        (["container", "list"], ["ps"]),
        (
            ["--root", "/s", "container", "run", "--rm", "bb", "ls"],
            ["--root", "/s", "run", "--rm", "bb", "ls"],
        ),
        (["container", "rm", "-f", "x"], ["rm", "-f", "x"]),
        (["container", "inspect", "x"], ["inspect", "x"]),
        (["container", "rename", "a", "b"], ["rename", "a", "b"]),
        (["image", "ls"], ["images"]),
        (["image", "rm", "bb"], ["rmi", "bb"]),
        (["image", "pull", "alpine"], ["pull", "alpine"]),
        # real subcommands of the groups stay as they are
        (["image", "inspect", "bb"], ["image", "inspect", "bb"]),
        (["image", "prune", "-a"], ["image", "prune", "-a"]),
        (["container", "prune"], ["container", "prune"]),
        # a verb's own argument that happens to be a group name is left alone
        (["run", "container", "ls"], ["run", "container", "ls"]),
        (["container"], ["container"]),
    ],
)
def test_expand(argv: list[str], plain: list[str]) -> None:
    assert expand(argv) == plain


def test_every_alias_target_is_a_verb_and_the_groups_parse() -> None:
    from rootless.aliases import GROUPS

    parser = build_parser()
    for verbs in GROUPS.values():
        for target in set(verbs.values()):
            parser.parse_args([target, *_args(target)])
    for argv in (["container", "prune", "-f"], ["image", "prune", "-a"], ["system", "df", "-v"]):
        parser.parse_args(argv)
    assert parser.parse_args(["system", "info"]).handler is parser.parse_args(["info"]).handler


def _args(verb: str) -> list[str]:
    """Enough arguments for each verb to parse."""
    return {
        "ps": [],
        "images": [],
        "run": ["bb"],
        "exec": ["c", "true"],
        "rename": ["a", "b"],
        "stats": [],
        "tag": ["a", "b"],
        "push": ["a"],
        "load": ["-i", "f"],
        "save": ["-o", "f", "a"],
        "import": ["a", "b"],
        "logs": ["c"],
        "port": ["c"],
        "top": ["c"],
    }.get(verb, ["x"])
