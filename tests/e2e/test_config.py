"""rsbox's config file through the real CLI: the defaults it sets are in force in the
container (network, seccomp, log rotation, pull policy, store root), flags override them,
a bad file is refused in one line, and `rsbox info` names the files it read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Rsbox


def cli(
    env: dict[str, str], *args: str, root: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = Rsbox(root).argv(*args) if root else [sys.executable, "-m", "rootless", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def with_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "RSBOX_ROOT"}
    return {**env, "RSBOX_CONFIG": str(path)}


def interfaces(res: subprocess.CompletedProcess[str]) -> list[str]:
    assert res.returncode == 0, res.stderr
    return [line.split(":")[0].strip() for line in res.stdout.splitlines()[2:]]


def test_run_defaults_come_from_the_file_and_flags_win(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    env = with_config(
        tmp_path,
        '[run]\nnetwork = "none"\nseccomp = "strict"\n'
        'log-opts = { max-size = "1m", max-file = 2 }\n',
    )
    root = rsbox.root
    # network = "none": only lo; --network host: the host's interfaces
    assert interfaces(cli(env, "run", "--rm", busybox, "cat", "/proc/net/dev", root=root)) == ["lo"]
    host = interfaces(
        cli(env, "run", "--rm", "--network", "host", busybox, "cat", "/proc/net/dev", root=root)
    )
    assert len(host) > 1 and "lo" in host
    # seccomp = "strict" refuses netlink sockets; the flag's default profile allows them
    strict = cli(env, "run", "--rm", busybox, "busybox", "ip", "link", root=root)
    assert strict.returncode != 0 and "lo" not in strict.stdout, strict
    allowed = cli(
        env, "run", "--rm", "--security-opt", "seccomp=default", busybox, "busybox", "ip", "link",
        root=root,
    )  # fmt: skip
    assert allowed.returncode == 0 and "lo" in allowed.stdout, allowed.stderr
    # log options: the file's, then the flag's (the last one wins)
    name = f"cfg-{os.getpid()}"
    res = cli(env, "run", "--name", name, "--log-opt", "max-file=5", busybox, "true", root=root)
    assert res.returncode == 0, res.stderr
    try:
        doc = json.loads(cli(env, "inspect", name, root=root).stdout)[0]
        assert doc["Config"]["Spec"]["log_opts"] == ["max-size=1m", "max-file=2", "max-file=5"]
    finally:
        cli(env, "rm", name, root=root)


def test_pull_policy_from_the_file(rsbox: Rsbox, tmp_path: Path) -> None:
    # nothing listens on port 1: "never" does not even try; the flag's "missing" does
    missing = "127.0.0.1:1/nothing/here:v1"
    env = with_config(tmp_path, '[run]\npull = "never"\n')
    never = cli(env, "run", "--rm", missing, "true", root=rsbox.root)
    assert never.returncode == 125 and "cannot connect" not in never.stderr, never.stderr
    tried = cli(env, "run", "--rm", "--pull", "missing", missing, "true", root=rsbox.root)
    assert tried.returncode == 125 and "cannot connect to 127.0.0.1:1" in tried.stderr, tried


def test_store_root_from_the_file_and_root_flag_wins(tmp_path: Path) -> None:
    env = with_config(tmp_path, f'[storage]\nroot = "{tmp_path / "configured"}"\n')
    assert cli(env, "images").returncode == 0
    assert (tmp_path / "configured/store.db").is_file()
    assert cli(env, "--root", str(tmp_path / "flag"), "images").returncode == 0
    assert (tmp_path / "flag/store.db").is_file()
    env["RSBOX_ROOT"] = str(tmp_path / "env")
    assert cli(env, "images").returncode == 0 and (tmp_path / "env/store.db").is_file()


def test_bad_file_fails_in_one_line_and_info_names_the_files(tmp_path: Path) -> None:
    env = with_config(tmp_path, '[storage]\nimage-store = ["/shared"]\n')
    env["CONTAINERS_REGISTRIES_CONF"] = str(tmp_path / "registries.conf")
    (tmp_path / "registries.conf").write_text('unqualified-search-registries = ["a.io"]\n')
    res = cli(env, "images")
    assert res.returncode == 125 and "Traceback" not in res.stderr, res.stderr
    [line] = res.stderr.splitlines()
    assert line.startswith(f"rsbox: error: {tmp_path / 'config.toml'}: storage.image-store: ")
    assert "unknown key" in line and "(hint: " in line
    # info still answers, and says why the file is unusable
    info = cli(env, "info")
    assert info.returncode == 0, info.stderr
    assert f"rsbox config: UNUSABLE {tmp_path / 'config.toml'}" in info.stdout
    assert f"registries.conf: {tmp_path / 'registries.conf'}" in info.stdout
    (tmp_path / "config.toml").write_text('[storage]\nimage-stores = ["/shared"]\n')
    info = cli(env, "info")
    assert f"rsbox config: {tmp_path / 'config.toml'}\n" in info.stdout, info.stdout
