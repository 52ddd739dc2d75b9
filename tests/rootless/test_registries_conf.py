"""containers-registries.conf(5) as rsbox reads it: files, merging, rewrites, mirrors,
short names (rootless.registry.conf). Pure: no registry, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from rootless.errors import ConfigError
from rootless.registry import RegistryError
from rootless.registry.conf import RegistriesConf, conf_files, merge
from rootless.registry.reference import parse_reference


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sources(conf: RegistriesConf, ref: str) -> list[tuple[str, bool, bool]]:
    return [(str(s.ref), s.insecure, s.mirror) for s in conf.sources(parse_reference(ref))]


MAN_PAGE_EXAMPLE = """
unqualified-search-registries = ["example.com"]

[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"

[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true

[[registry]]
location = "registry.com"

[[registry.mirror]]
location = "mirror.registry.com"
"""


def test_man_page_example_mirrors_then_rewritten_location(tmp_path: Path) -> None:
    conf = merge([write(tmp_path / "r.conf", MAN_PAGE_EXAMPLE)])
    assert sources(conf, "example.com/foo/image:latest") == [
        ("example-mirror-0.local/mirror-for-foo/image:latest", False, True),
        ("example-mirror-1.local/mirrors/foo/image:latest", True, True),
        ("internal-registry-for-example.com/bar/image:latest", False, False),
    ]
    # a mirror belongs to its own table only
    assert sources(conf, "registry.com/image:latest") == [
        ("mirror.registry.com/image:latest", False, True),
        ("registry.com/image:latest", False, False),
    ]
    # no table: the name as it is; "example.com/foobar" does not match "example.com/foo"
    assert sources(conf, "example.com/foobar:1") == [("example.com/foobar:1", False, False)]


def test_longest_prefix_wins_and_wildcards_match_subdomains(tmp_path: Path) -> None:
    conf = merge(
        [
            write(
                tmp_path / "r.conf",
                """
[[registry]]
prefix = "quay.io"
location = "quay.io"
blocked = true
[[registry]]
prefix = "quay.io/ok/image"
location = "mirror.local/ok-image"
[[registry]]
prefix = "*.example.com"
insecure = true
""",
            )
        ]
    )
    assert sources(conf, "quay.io/ok/image:v1") == [("mirror.local/ok-image:v1", False, False)]
    with pytest.raises(
        RegistryError, match=r"quay.io/other/image:v1 is blocked .*prefix 'quay.io'"
    ):
        conf.sources(parse_reference("quay.io/other/image:v1"))
    # the wildcard: any depth of subdomain, no rewrite, its settings apply
    assert sources(conf, "a.b.example.com/x:1") == [("a.b.example.com/x:1", True, False)]
    assert sources(conf, "example.com/x:1") == [("example.com/x:1", False, False)]
    assert sources(conf, "notexample.com/x:1") == [("notexample.com/x:1", False, False)]


def test_pull_from_mirror_and_mirror_by_digest_only(tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    conf = merge(
        [
            write(
                tmp_path / "r.conf",
                """
[[registry]]
location = "one.io"
[[registry.mirror]]
location = "digests.local"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.local"
pull-from-mirror = "tag-only"
[[registry]]
location = "two.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.local"
""",
            )
        ]
    )
    assert [s[0] for s in sources(conf, "one.io/x:1")] == ["tags.local/x:1", "one.io/x:1"]
    assert [s[0] for s in sources(conf, f"one.io/x@{digest}")] == [
        f"digests.local/x@{digest}",
        f"one.io/x@{digest}",
    ]
    assert [s[0] for s in sources(conf, "two.io/x:1")] == ["two.io/x:1"]
    assert [s[0] for s in sources(conf, f"two.io/x@{digest}")] == [
        f"m.local/x@{digest}",
        f"two.io/x@{digest}",
    ]


def test_short_names_aliases_and_search_order(tmp_path: Path) -> None:
    conf = merge(
        [
            write(
                tmp_path / "main.conf",
                """
unqualified-search-registries = ["first.io", "docker.io"]
short-name-mode = "permissive"
[aliases]
"myapp" = "quay.io/team/app"
"gone" = "quay.io/team/gone"
""",
            ),
            write(tmp_path / "d/10.conf", '[aliases]\n"gone" = ""\n'),
        ]
    )
    [alias] = conf.candidates("myapp:2")
    assert str(alias.name) == "quay.io/team/app:2"
    digest = "sha256:" + "b" * 64
    assert str(conf.candidates(f"myapp@{digest}")[0].name) == f"quay.io/team/app@{digest}"
    # an erased alias falls back to the search registries, in order (docker.io: library/)
    assert [str(c.name) for c in conf.candidates("gone", tty=False)] == [
        "first.io/gone:latest",
        "docker.io/library/gone:latest",
    ]
    # a fully qualified name is never searched
    assert [str(c.name) for c in conf.candidates("other.io/gone")] == ["other.io/gone:latest"]


def test_enforcing_mode_refuses_several_registries_without_a_terminal(tmp_path: Path) -> None:
    two = 'unqualified-search-registries = ["a.io", "b.io"]\nshort-name-mode = "enforcing"\n'
    conf = merge([write(tmp_path / "r.conf", two)])
    with pytest.raises(RegistryError, match=r"enforcing .* no terminal"):
        conf.candidates("app", tty=False)
    # the control: one registry is no ambiguity; disabled mode tries them all
    one = merge([write(tmp_path / "one.conf", two.replace(', "b.io"', ""))])
    assert [str(c.name) for c in one.candidates("app", tty=False)] == ["a.io/app:latest"]
    off = merge([write(tmp_path / "off.conf", two.replace("enforcing", "disabled"))])
    assert len(off.candidates("app", tty=False)) == 2


def test_no_search_registry_means_docker_hub(tmp_path: Path) -> None:
    conf = merge([])
    assert [str(c.name) for c in conf.candidates("alpine")] == ["docker.io/library/alpine:latest"]


def test_drop_ins_override_and_merge_by_prefix(tmp_path: Path) -> None:
    main = write(
        tmp_path / "main.conf",
        'unqualified-search-registries = ["a.io"]\n'
        '[[registry]]\nlocation = "a.io"\ninsecure = true\n'
        '[[registry]]\nlocation = "b.io"\n',
    )
    drop = write(
        tmp_path / "d/50-mine.conf",
        'unqualified-search-registries = []\n[[registry]]\nlocation = "a.io"\nblocked = true\n',
    )
    conf = merge([main, drop])
    assert conf.search == ()
    assert {e.prefix: (e.insecure, e.blocked) for e in conf.registries} == {
        "a.io": (False, True),
        "b.io": (False, False),
    }


def test_version_1_format(tmp_path: Path) -> None:
    conf = merge(
        [
            write(
                tmp_path / "v1.conf",
                "[registries.search]\nregistries = ['r1.io', 'r2.io']\n"
                "[registries.insecure]\nregistries = ['r3.io']\n"
                "[registries.block]\nregistries = ['bad.io']\n",
            )
        ]
    )
    assert conf.search == ("r1.io", "r2.io")
    assert sources(conf, "r3.io/x:1") == [("r3.io/x:1", True, False)]
    with pytest.raises(RegistryError, match="blocked"):
        conf.sources(parse_reference("bad.io/x:1"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short-name-mode = 'strict'\n", "short-name-mode: 'strict' is not one of"),
        ("unqualified-search-registries = 'a.io'\n", "unqualified-search-registries: expected"),
        ("unqualified-search-registries = ['a.io/ns']\n", "is not host[:port]"),
        ("[[registry]]\nprefix = 'a.io'\n", "registry[0].location: empty for prefix"),
        ("[[registry]]\nprefix = 'a.*.io'\nlocation='x.io'\n", "registry[0].prefix"),
        ("[[registry]]\nlocation = 'a.io'\ninsecure = 'yes'\n", "registry[0].insecure: expected"),
        (
            "[[registry]]\nlocation='a.io'\n[[registry]]\nlocation='a.io'\n",
            "'a.io' is defined more than once",
        ),
        (
            "[[registry]]\nlocation='a.io'\nmirror-by-digest-only=true\n"
            "[[registry.mirror]]\nlocation='m.io'\npull-from-mirror='all'\n",
            "registry[0].mirror[0].pull-from-mirror: not allowed",
        ),
        ("[aliases]\n'quay.io/x' = 'quay.io/x'\n", "aliases.quay.io/x: an alias is a short name"),
        ("[aliases]\n'x' = 'x:1'\n", "aliases.x: 'x:1' must be a full name"),
        ("[[registry]\n", "not valid TOML"),
    ],
)
def test_bad_files_fail_in_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path / "bad.conf", text)
    with pytest.raises(ConfigError) as err:
        merge([path])
    line = err.value.line()
    assert "\n" not in line and str(path) in line and message in line, line


def test_which_files_are_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    user = tmp_path / "cfg/containers/registries.conf"
    user_drop = write(tmp_path / "cfg/containers/registries.conf.d/1.conf", "")
    write(tmp_path / "cfg/containers/registries.conf.d/ignored.txt", "")
    files = conf_files(env)
    # no user file: the system file and both drop-in directories (system first)
    assert files[-1] == user_drop
    assert all(str(f).startswith("/etc/containers/") for f in files[:-1])
    write(user, "")
    assert conf_files(env) == [user, user_drop]  # the user's file: only the user's drop-ins
    explicit = write(tmp_path / "explicit.conf", "")
    files = conf_files({**env, "CONTAINERS_REGISTRIES_CONF": str(explicit)})
    assert files[0] == explicit and user not in files and files[-1] == user_drop
    cache = write(home / ".cache/containers/short-name-aliases.conf", "")
    assert conf_files(env)[-1] == cache  # Podman's recorded aliases come last, and win
