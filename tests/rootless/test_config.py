"""rsbox's config file (rootless.config): which files, how they merge, what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from rootless.config import Settings, config_files, load_settings
from rootless.errors import ConfigError
from rootless.store import default_root

FULL = """
[storage]
root = "~/boxes"
image-stores = ["/shared/a", "/shared/b"]

[run]
network = "pasta:-T,5432"
pull = "never"
seccomp = "strict"
log-driver = "json-file"
log-opts = { max-size = "10m", max-file = 3 }
"""


def env_with(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return {"RSBOX_CONFIG": str(path), "HOME": str(tmp_path / "home")}


def test_every_setting_is_parsed_into_typed_values(tmp_path: Path) -> None:
    env = env_with(tmp_path, FULL)
    s = load_settings(env)
    assert s == Settings(
        root=Path("~/boxes").expanduser(),
        image_stores=(Path("/shared/a"), Path("/shared/b")),
        network="pasta:-T,5432",
        pull="never",
        seccomp="strict",
        log_opts=("max-size=10m", "max-file=3"),
    )
    assert s.files == (tmp_path / "config.toml",)


def test_no_file_is_rsbox_defaults(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "nothing"), "HOME": str(tmp_path)}
    assert load_settings(env) == Settings() and config_files(env) in (
        [],
        [Path("/etc/rsbox/config.toml")],
    )


def test_the_users_file_overrides_key_by_key(tmp_path: Path) -> None:
    user = tmp_path / "cfg/rsbox/config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[run]\npull = "always"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path)}
    assert config_files(env)[-1] == user
    assert load_settings(env).pull == "always"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage]\nroots = '/x'\n", "storage.roots: unknown key"),
        ("[runn]\n", "runn: unknown key"),
        ("[storage]\nroot = 'relative'\n", "storage.root: 'relative' is not an absolute path"),
        ("[storage]\nimage-stores = '/a'\n", "storage.image-stores: expected a list"),
        ("[run]\nnetwork = 'bridge'\n", "run.network: 'bridge' is not one of"),
        ("[run]\npull = 'sometimes'\n", "run.pull: 'sometimes' is not one of missing"),
        ("[run]\nlog-driver = 'journald'\n", "run.log-driver: 'journald' is not one of json-file"),
        ("[run]\nlog-opts = { max-file = 3 }\n", "run.log-opts: max-file needs max-size"),
        ("[run]\nlog-opts = { colour = 'red' }\n", "unsupported 'colour'"),
        ("[run]\npull = 3\n", "run.pull: expected a non-empty string"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_bad_files_fail_in_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    env = env_with(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    line = err.value.line()
    assert "\n" not in line and str(tmp_path / "config.toml") in line and message in line, line


def test_store_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = Settings(root=tmp_path / "from-config")
    monkeypatch.delenv("RSBOX_ROOT", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_root(Settings()) == tmp_path / "data/rsbox"
    assert default_root(configured) == tmp_path / "from-config"
    monkeypatch.setenv("RSBOX_ROOT", str(tmp_path / "env"))
    assert default_root(configured) == tmp_path / "env"
