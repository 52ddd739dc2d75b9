"""rsbox.toml (rootless.env.config): every key typed, and every mistake one line naming
the key and the line it is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from rootless.env.config import (
    EnvConfig,
    HostPath,
    Pip,
    find_project,
    key_line,
    parse_config,
)
from rootless.errors import ConfigError

FULL = """\
[env]
name = "thesis"
base = "docker.io/library/debian:12"

[build]
apt = ["python3-venv", "jq"]
run = ["python3 -m venv /opt/venv"]
pip = { python = "/opt/venv/bin/python", requirements = "requirements.txt" }
npm = { global = ["typescript@5.4.5"] }

[run]
env = { PATH = "/opt/venv/bin:/usr/bin:/bin" }
home = "isolated"
share = ["/etc/gitconfig:ro"]
mounts = ["/data"]
network = "private"
ssh_agent = true
host_ca = false
on_create = "npm ci"
idle_stop = "30m"

[expose]
bins = ["python", "jq"]
"""


def test_every_key_is_parsed_into_typed_values(tmp_path: Path) -> None:
    assert parse_config(tmp_path, FULL) == EnvConfig(
        root=tmp_path,
        name="thesis",
        base="docker.io/library/debian:12",
        apt=("python3-venv", "jq"),
        run=("python3 -m venv /opt/venv",),
        pip=Pip("/opt/venv/bin/python", "requirements.txt"),
        npm_global=("typescript@5.4.5",),
        env={"PATH": "/opt/venv/bin:/usr/bin:/bin"},
        share=(HostPath(Path("/etc/gitconfig"), True),),
        mounts=(HostPath(Path("/data"), False),),
        network="private",
        ssh_agent=True,
        host_ca=False,
        on_create="npm ci",
        idle_stop=1800,
        bins=("python", "jq"),
    )


def test_defaults_name_from_the_directory_host_network_and_host_ca(tmp_path: Path) -> None:
    root = tmp_path / "My Project"
    cfg = parse_config(root, '[env]\nbase = "busybox"\n')
    assert (cfg.name, cfg.network, cfg.host_ca, cfg.home, cfg.idle_stop) == (
        "my-project",
        "host",
        True,
        "isolated",
        None,
    )
    assert cfg.image == "localhost/rsbox-env-my-project:latest"
    assert cfg.container == "rsbox-env-my-project"


def test_containerfile_instead_of_build_steps(tmp_path: Path) -> None:
    cfg = parse_config(tmp_path, '[env]\ncontainerfile = "Containerfile"\n')
    assert (cfg.base, cfg.containerfile) == (None, tmp_path / "Containerfile")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[env]\nbase = "b"\n\n[run]\nnetwrok = "host"\n', 5, "[run] netwrok: unknown key"),
        ('[env]\nbase = "b"\n[tools]\nx = 1\n', 3, "[tools]: unknown table"),
        ('[env]\nbase = "b"\n[run]\nidle_stop = "soon"\n', 4, "[run] idle_stop: invalid"),
        ('[env]\nbase = "b"\n[run]\nnetwork = "bridge"\n', 4, "[run] network: invalid"),
        ('[env]\nbase = "b"\n[run]\nhost_ca = "yes"\n', 4, "[run] host_ca: expected true"),
        ('[env]\nbase = "b"\n[build]\napt = "jq"\n', 4, "[build] apt: expected a list"),
        ('[env]\nbase = "b"\n[build]\n\nnpm = { globals = ["x"] }\n', 5, "[build] npm:"),
        ('[env]\nname = "Bad Name"\nbase = "b"\n', 2, "[env] name: invalid name"),
        ('[env]\nbase = "b"\n[run]\nmounts = ["data"]\n', 4, "[run] mounts: 'data' is not"),
        ('# no base\n[env]\nname = "x"\n', 2, "[env]: needs exactly one of base"),
        ('[env]\nbase = "b"\ncontainerfile = "C"\n', 3, "[env] containerfile: needs"),
    ],
)
def test_a_mistake_names_the_key_and_its_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path, text)
    assert info.value.exit_code == 125
    assert info.value.message.startswith(f"{tmp_path / 'rsbox.toml'}:{line}: ")
    assert words in info.value.message
    assert info.value.hint
    assert "\n" not in info.value.line()


def test_containerfile_with_build_steps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r":2: \[env\] containerfile: a containerfile and"):
        parse_config(tmp_path, '[env]\ncontainerfile = "C"\n[build]\napt = ["jq"]\n')


def test_a_toml_syntax_error_is_one_line_with_its_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 2"):
        parse_config(tmp_path, "[env]\nbase = \n")


def test_key_line_looks_only_inside_the_table() -> None:
    text = '[env]\nname = "a"\n[run]\n  name = 1\n'
    assert key_line(text, "run", "name") == 4
    assert key_line(text, "env", "name") == 2
    assert key_line(text, "expose") is None


def test_the_project_is_the_nearest_directory_with_rsbox_toml(tmp_path: Path) -> None:
    (tmp_path / "rsbox.toml").write_text('[env]\nbase = "b"\n')
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    assert find_project(deep) == tmp_path
    (deep / "rsbox.toml").write_text("")
    assert find_project(deep) == deep


def test_no_project_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_project(tmp_path)
    assert info.value.hint is not None and "rsbox env init" in info.value.hint
