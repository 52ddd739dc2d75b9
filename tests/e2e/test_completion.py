"""`rsbox completion bash|zsh|fish` driven in the real shells: an interactive bash calls
the completion function as it would on TAB (COMP_LINE/COMP_WORDS/COMP_CWORD), fish
answers `complete -C`, zsh parses its script; the names offered are those of a real
container and image of the store named by `--root` on the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import IN_CI, Rsbox


@pytest.fixture(scope="module")
def shell_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with an `rsbox` command (this source tree's) for the shells' PATH."""
    d = tmp_path_factory.mktemp("bin")
    (d / "rsbox").write_text(f'#!/bin/sh\nexec {sys.executable} -m rootless "$@"\n')
    (d / "rsbox").chmod(0o755)
    return d


@pytest.fixture(scope="module")
def container(rsbox: Rsbox, busybox: str) -> Iterator[str]:
    name = f"tabme-{os.getpid()}"
    rsbox.run("--name", name, busybox, "true", check=True)
    yield name
    rsbox("rm", name)


def script(rsbox: Rsbox, shell: str, tmp_path: Path) -> Path:
    path = tmp_path / f"rsbox.{shell}"
    path.write_text(rsbox("completion", shell, check=True).stdout)
    return path


def bash_complete(rsbox: Rsbox, shell_bin: Path, tmp_path: Path, line: str) -> list[str]:
    """What TAB at the end of ``line`` offers in an interactive bash."""
    words = line.split(" ")
    program = f"""
source {script(rsbox, "bash", tmp_path)}
complete -p rsbox >&2 || exit 3
fn=$(complete -p rsbox | sed -E 's/.*-F ([^ ]+) .*/\\1/')
COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"; [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
"$fn" rsbox "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{shell_bin}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    res = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i", "-c", program],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(words) > 1
    return [w for w in res.stdout.splitlines() if w]


def test_bash_completes_a_real_container_name(
    rsbox: Rsbox, container: str, shell_bin: Path, tmp_path: Path
) -> None:
    root = f"rsbox --root {rsbox.root}"
    for verb in ("logs", "rm", "container rm", "inspect", "start"):
        assert bash_complete(rsbox, shell_bin, tmp_path, f"{root} {verb} tabme-") == [container]
    # the control: image verbs do not offer containers, and an unknown prefix offers nothing
    assert bash_complete(rsbox, shell_bin, tmp_path, f"{root} rmi tabme-") == []
    assert bash_complete(rsbox, shell_bin, tmp_path, f"{root} logs nosuch-") == []
    # another store (--root on the line) does not have it
    other = f"rsbox --root {tmp_path / 'empty'} logs tabme-"
    assert bash_complete(rsbox, shell_bin, tmp_path, other) == []


def test_bash_completes_verbs_flags_and_image_references(
    rsbox: Rsbox, busybox: str, shell_bin: Path, tmp_path: Path
) -> None:
    root = f"rsbox --root {rsbox.root}"
    assert "run" in bash_complete(rsbox, shell_bin, tmp_path, "rsbox ru")
    assert bash_complete(rsbox, shell_bin, tmp_path, "rsbox container pru") == ["prune"]
    assert bash_complete(rsbox, shell_bin, tmp_path, f"{root} run --privi") == ["--privileged"]
    # bash splits words at ':': the reply is what follows the last one
    assert bash_complete(rsbox, shell_bin, tmp_path, f"{root} run localhost/busybox:la") == [
        "latest"
    ]
    assert "localhost/busybox:latest" in bash_complete(
        rsbox, shell_bin, tmp_path, f"{root} run loc"
    )
    # after the image comes the container's command line: no image names there
    assert "localhost/busybox:latest" not in bash_complete(
        rsbox, shell_bin, tmp_path, f"{root} run busybox loc"
    )


def _need(tool: str) -> None:
    if shutil.which(tool) is None and not Path(tool).is_file():
        if IN_CI:
            pytest.fail(f"{tool} is missing (./setup.sh packages)")
        pytest.skip(f"{tool} is missing")


def test_fish_completes_a_real_container_name(
    rsbox: Rsbox, container: str, shell_bin: Path, tmp_path: Path
) -> None:
    _need("fish")
    path = script(rsbox, "fish", tmp_path)
    env = {**os.environ, "PATH": f"{shell_bin}:{os.environ['PATH']}", "HOME": str(tmp_path)}

    def fish(line: str) -> list[str]:
        res = subprocess.run(
            ["fish", "--no-config", "-c", f"source {path}; complete -C {line!r}"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        return [w.split("\t")[0] for w in res.stdout.splitlines()]

    assert fish(f"rsbox --root {rsbox.root} logs tabme-") == [container]
    assert fish(f"rsbox --root {rsbox.root} rmi tabme-") == []
    assert "--privileged" in fish(f"rsbox --root {rsbox.root} run --privi")


def test_zsh_script_parses_and_defines_its_function(rsbox: Rsbox, tmp_path: Path) -> None:
    _need("zsh")
    path = script(rsbox, "zsh", tmp_path)
    res = subprocess.run(
        ["zsh", "-f", "-c", f"source {path} && whence -w _rsbox && print -r -- ${{_rsbox_flags[run]}}"],
        capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)}, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "_rsbox: function" in res.stdout and "--privileged" in res.stdout


def test_bash_completion_loads_the_script_where_setup_sh_puts_it(
    rsbox: Rsbox, container: str, shell_bin: Path, tmp_path: Path
) -> None:
    """setup.sh writes `rsbox completion bash` to
    $XDG_DATA_HOME/bash-completion/completions/rsbox; bash-completion's loader finds it
    there at the first TAB on `rsbox`."""
    _need("/usr/share/bash-completion/bash_completion")
    comp = tmp_path / "data/bash-completion/completions"
    comp.mkdir(parents=True)
    script(rsbox, "bash", tmp_path).rename(comp / "rsbox")
    program = f"""
source /usr/share/bash-completion/bash_completion
complete -p rsbox 2>/dev/null && exit 4    # not loaded before the first TAB
__load_completion rsbox || exit 5
COMP_LINE='rsbox --root {rsbox.root} logs tabme-'; COMP_POINT=${{#COMP_LINE}}
_rsbox_complete; printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {
        **os.environ,
        "PATH": f"{shell_bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    res = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i", "-c", program],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [container]
