""".devcontainer/devcontainer.json (rootless.env.devcontainer): VS Code's JSON with
comments parses, the subset rsbox runs becomes the EnvConfig rsbox.toml would give, and
every refusal is one line naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rootless.env.config import (
    DEVCONTAINER,
    EnvConfig,
    HostPath,
    default_name,
    find_project,
    load_config,
)
from rootless.env.devcontainer import parse_devcontainer, strip_jsonc
from rootless.errors import ConfigError

# As VS Code writes it: line and block comments, trailing commas, `//` inside strings.
VSCODE = """\
// For format details, see https://aka.ms/devcontainer.json.
{
	"name": "Python 3", /* a display name */
	"image": "mcr.microsoft.com/devcontainers/python:3.11", // pinned
	"containerEnv": { "URL": "http://example.org/a//b", "QUOTE": "say \\"//hi\\"", },
	"remoteEnv": { "URL": "https://override.example", "GONE": null, },
	/*
	"features": { "ghcr.io/devcontainers/features/node:1": {} },
	*/
	"mounts": [
		"source=${localEnv:RSBOX_TEST_DATA},target=/data,type=bind,consistency=cached,readonly",
		{ "source": "/srv/cache", "target": "/srv/cache", "type": "bind" },
	],
	"onCreateCommand": ["npm", "ci"],
	"postCreateCommand": { "a": "echo one", "b": ["touch", "x y"], },
	"postStartCommand": "echo started >> ${containerWorkspaceFolder}/log",
	"forwardPorts": [3000, "localhost:8080", 3000],
	"remoteUser": "vscode",
	"workspaceFolder": "/workspaces/${localWorkspaceFolderBasename}",
	"customizations": { "vscode": { "extensions": ["ms-python.python",], }, },
	"runArgs": ["--cap-add=SYS_PTRACE"],
}
"""


def test_strip_jsonc_keeps_strings_and_lines() -> None:
    text = '{\n "a": "x//y /* z */", // c\n /* b\n c */ "b": [1, 2, ],\n}'
    out = strip_jsonc(text)
    assert json.loads(out) == {"a": "x//y /* z */", "b": [1, 2]}
    assert out.count("\n") == text.count("\n")  # JSON errors keep the file's line numbers
    assert json.loads(strip_jsonc('["a,]", "\\\\", ]')) == ["a,]", "\\"]


def test_a_vscode_file_becomes_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSBOX_TEST_DATA", "/var/data")
    cfg = parse_devcontainer(tmp_path, VSCODE)
    assert cfg == EnvConfig(
        root=tmp_path,
        name=default_name(tmp_path),
        file=DEVCONTAINER,
        base="mcr.microsoft.com/devcontainers/python:3.11",
        env={"URL": "https://override.example", "QUOTE": 'say "//hi"'},
        mounts=(
            HostPath(Path("/var/data"), True, Path("/data")),
            HostPath(Path("/srv/cache"), False),
        ),
        on_create="(\nnpm ci\n) && (\necho one\n) && (\ntouch 'x y'\n)",
        on_start=f"echo started >> {tmp_path}/log",
        ports=(3000, 8080),
        network="private",
    )
    assert cfg.ignored == ("customizations", "name", "runArgs")
    assert cfg.path == tmp_path / ".devcontainer" / "devcontainer.json"


def test_build_dockerfile_is_relative_to_the_devcontainer_directory(tmp_path: Path) -> None:
    text = '{"build": {"dockerfile": "Dockerfile", "context": "..", "args": {"V": "1"}, "cacheFrom": "x"}}'
    cfg = parse_devcontainer(tmp_path, text)
    assert cfg.containerfile == tmp_path / ".devcontainer" / "Dockerfile"
    assert (cfg.context, cfg.build_args, cfg.base) == (tmp_path, {"V": "1"}, None)
    assert cfg.ignored == ("build.cacheFrom",)
    legacy = parse_devcontainer(tmp_path, '{"dockerFile": "Containerfile"}')
    assert legacy.containerfile == tmp_path / ".devcontainer" / "Containerfile"
    assert legacy.context == tmp_path / ".devcontainer"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"image": "debian", "features": {"node": {}}}', "features: rsbox does not run"),
        ('{"image": "debian", "mounts": ["source=v,target=/v,type=volume"]}', "only bind"),
        ('{"image": "debian", "mounts": ["target=/v,type=bind"]}', "needs a source"),
        ('{"image": "debian", "mounts": ["source=rel,target=/v"]}', "must be absolute"),
        ('{"image": "debian", "forwardPorts": ["db:5432"]}', "forwardPorts: cannot forward"),
        ('{"image": "debian", "forwardPorts": [70000]}', "is not a port"),
        ('{"image": "debian", "containerEnv": {"A": 1}}', "containerEnv: expected NAME"),
        ('{"image": "debian", "remoteEnv": {"P": "${containerEnv:PATH}:/x"}}', "not supported"),
        ('{"image": "debian", "postCreateCommand": 3}', "postCreateCommand: expected"),
        ('{"dockerComposeFile": "c.yml"}', "dockerComposeFile is not supported"),
        ('{"image": "a", "build": {"dockerfile": "D"}}', "image: image and build together"),
        ('{"image": "debian",\n  "x": }', "devcontainer.json:2: Expecting value"),
    ],
)
def test_refusals_name_the_file_and_the_key(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_devcontainer(tmp_path, text)
    line = err.value.line()
    assert line.startswith(f"rsbox: error: {tmp_path / DEVCONTAINER}") and "\n" not in line
    assert says in line and "(hint: " in line


def test_the_project_finder_reads_either_file_and_prefers_rsbox_toml(tmp_path: Path) -> None:
    (tmp_path / ".devcontainer").mkdir()
    (tmp_path / DEVCONTAINER).write_text('{"image": "debian:12", // c\n}')
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    assert find_project(deep) == tmp_path
    assert load_config(deep).base == "debian:12"
    (tmp_path / "rsbox.toml").write_text('[env]\nbase = "busybox"\n')
    assert load_config(deep).base == "busybox"
