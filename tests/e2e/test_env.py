"""Per-project environments end to end, as both CI users: `rsbox env init`, `env build`
from rsbox.toml (busybox for the steps that need no package manager, the suite's Debian
base for an apt step), rsbox.lock, the project's one container (`env up/down/status`) and
`rsbox shell` into it at the host path of the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rootless.env.trust import trust
from tests.e2e.conftest import Rsbox, one_line_error
from tests.e2e.test_workloads import ENV_PACKAGES, debian_tarball


def _project(rsbox: Rsbox, tmp: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    """A trusted project (tests/e2e/test_env_trust.py: what an untrusted one does)."""
    root = tmp / f"proj-{os.urandom(3).hex()}"
    root.mkdir()
    (root / "rsbox.toml").write_text(textwrap.dedent(toml).lstrip())
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _trust(rsbox, root)
    return root


def _trust(rsbox: Rsbox, root: Path) -> None:
    """What `rsbox env trust` records, written by its own function: an edit of rsbox.toml
    revokes trust, so the tests that edit it trust it again (without a CLI start)."""
    trust(str(rsbox.root), str(root / "rsbox.toml"))


# The CLI runs in the project's directory: the source tree the suite runs from must stay
# first on its path (`python -m rootless` would otherwise find the installed package).
SOURCE = str(Path(__file__).resolve().parents[2])


def _in(
    rsbox: Rsbox, cwd: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        rsbox.argv(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": SOURCE},
    )


def _ok(rsbox: Rsbox, cwd: Path, *args: str, timeout: float = 300) -> str:
    res = _in(rsbox, cwd, *args, timeout=timeout)
    assert res.returncode == 0, f"{args} -> {res.returncode}\n{res.stdout[-3000:]}{res.stderr}"
    return res.stdout


def _steps_run(out: str) -> int:
    return sum(1 for line in out.splitlines() if line.startswith("--> ") and len(line) == 16)


def test_init_writes_a_config_that_builds_and_refuses_to_overwrite(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = tmp_path / "My Thesis"
    root.mkdir()
    assert "wrote" in _ok(rsbox, root, "env", "init", "--base", busybox)
    text = (root / "rsbox.toml").read_text()
    assert 'name = "my-thesis"' in text and f'base = "{busybox}"' in text
    again = _in(rsbox, root, "env", "init")
    assert again.returncode == 125
    assert again.stderr.startswith("rsbox: error: ") and "exists" in again.stderr
    assert (root / "rsbox.toml").read_text() == text
    assert "localhost/rsbox-env-my-thesis:latest" in _ok(rsbox, root, "env", "build")


def test_a_bad_key_fails_in_one_line_naming_key_and_line(rsbox: Rsbox, tmp_path: Path) -> None:
    root = _project(rsbox, tmp_path, '[env]\nbase = "busybox"\n[run]\nnetwrok = "host"\n')
    sub = root / "src"
    sub.mkdir()
    res = _in(rsbox, sub, "env", "build")
    assert res.returncode == 125
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert f"{root / 'rsbox.toml'}:4: [run] netwrok: unknown key" in res.stderr
    outside = _in(rsbox, tmp_path, "env", "status")
    assert outside.returncode == 125 and "hint: run `rsbox env init`" in outside.stderr


def test_build_steps_are_cached_layers_and_the_lock_records_the_base(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _project(
        rsbox,
        tmp_path,
        f"""
        [env]
        base = "{busybox}"
        [build]
        run = ["echo one > /one", "echo two > /two"]
        """,
    )
    first = _ok(rsbox, root, "env", "build")
    assert _steps_run(first) == 2, first
    again = _ok(rsbox, root, "env", "build")
    assert _steps_run(again) == 0, again
    lock = json.loads((root / "rsbox.lock").read_text())
    base_id = json.loads(_ok(rsbox, root, "image", "inspect", busybox))[0]["Id"]
    assert lock["base"]["ref"] == busybox and lock["base"]["id"] == f"sha256:{base_id}"
    assert again.split()[-1] == lock["image"]
    # an edit of the second step reruns it alone; --no-cache reruns both
    toml = (root / "rsbox.toml").read_text().replace("echo two", "echo TWO")
    (root / "rsbox.toml").write_text(toml)
    _trust(rsbox, root)
    assert _steps_run(_ok(rsbox, root, "env", "build")) == 1
    assert _steps_run(_ok(rsbox, root, "env", "build", "--no-cache")) == 2
    assert _ok(rsbox, root, "shell", "cat", "/one", "/two") == "one\nTWO\n"
    _ok(rsbox, root, "env", "down")


def test_shell_runs_in_the_working_directory_at_its_host_path(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _project(
        rsbox,
        tmp_path,
        f"""
        [env]
        base = "{busybox}"
        [run]
        env = {{ GREETING = "from rsbox.toml" }}
        """,
    )
    sub = root / "src" / "pkg"
    sub.mkdir(parents=True)
    not_built = _in(rsbox, root, "shell", "true")
    assert not_built.returncode == 125 and "hint: rsbox env build" in not_built.stderr
    _ok(rsbox, root, "env", "build")
    assert "rsbox-env-" in _ok(rsbox, root, "env", "status") and "absent" in _ok(
        rsbox, root, "env", "status"
    )
    out = _ok(rsbox, sub, "shell", "sh", "-c", 'pwd; echo "$GREETING"; echo made > here.txt')
    assert out == f"{sub}\nfrom rsbox.toml\n"
    assert (sub / "here.txt").read_text() == "made\n"  # the project is bound read-write
    assert "running" in _ok(rsbox, root, "env", "status")
    # arguments and the exit status pass through; `--` ends rsbox's own arguments
    res = _in(rsbox, sub, "shell", "--", "sh", "-c", 'printf "%s|" "$@"; exit 7', "-", "a b", "$x")
    assert (res.returncode, res.stdout) == (7, "a b|$x|")
    missing = _in(rsbox, sub, "shell", "no-such-tool")
    assert missing.returncode == 127
    assert "removed" in _ok(rsbox, root, "env", "down")
    assert "absent" in _ok(rsbox, root, "env", "status")
    assert "absent" in _ok(rsbox, root, "env", "down")


def test_concurrent_first_entries_start_one_container(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _project(rsbox, tmp_path, f'[env]\nbase = "{busybox}"\n')
    _ok(rsbox, root, "env", "build")
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda _: _in(rsbox, root, "env", "up"), range(3)))
    assert [o.returncode for o in outs] == [0, 0, 0], [o.stderr for o in outs]
    said = sorted(o.stdout.split()[-1] for o in outs)
    assert said == ["created", "running", "running"], said
    names = _ok(rsbox, root, "ps", "-a", "--format", "{{.Names}}").split()
    assert names.count(f"rsbox-env-{root.name}") == 1
    _ok(rsbox, root, "env", "down")


@pytest.fixture(scope="module")
def debian(rsbox: Rsbox) -> str:
    if rsbox("image", "inspect", "debian-env-base").returncode != 0:  # once per store
        rsbox(
            "import", str(debian_tarball(ENV_PACKAGES)), "debian-env-base", check=True, timeout=600
        )
    return "debian-env-base"


def test_debian_apt_venv_and_pinned_pypi_package(rsbox: Rsbox, debian: str, tmp_path: Path) -> None:
    root = _project(
        rsbox,
        tmp_path,
        f"""
        [env]
        base = "{debian}"
        [build]
        apt = ["jq"]
        run = ["python3 -m venv /opt/venv"]
        pip = {{ python = "/opt/venv/bin/python", requirements = "requirements.txt" }}
        [run]
        env = {{ PATH = "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin" }}
        """,
        {"requirements.txt": "six==1.16.0\n"},
    )
    # the apt list is test_env_build's: those layers are built once for both modules
    first = _ok(rsbox, root, "env", "build", timeout=1200)
    assert _steps_run(first) == 4, first  # apt, run, COPY requirements, pip
    probe = """echo '{"a": [1, 2]}' | jq -c .a; python -c 'import six; print(six.__version__)'"""
    out = _ok(rsbox, root, "shell", "sh", "-c", probe)
    assert out == "[1,2]\n1.16.0\n"
    # you inside, with your login shell, which this image has (busybox's lacks it: /bin/sh)
    import pwd

    me = pwd.getpwuid(os.getuid())
    shell = me.pw_shell if me.pw_shell in ("/bin/bash", "/bin/sh", "/bin/dash") else "/bin/sh"
    entry = f"{me.pw_name}:x:{me.pw_uid}:{me.pw_gid}:{me.pw_name}:{me.pw_dir}:{shell}\n"
    assert _ok(rsbox, root, "shell", "sh", "-c", 'getent passwd "$(id -un)"') == entry
    # the requirements file is an input of the cache and of the change check
    (root / "requirements.txt").write_text("six==1.15.0\n")
    stale = _in(rsbox, root, "shell", "true")
    assert stale.returncode == 125 and "changed since" in stale.stderr
    assert _steps_run(_ok(rsbox, root, "env", "build", timeout=900)) == 2
    out = _ok(rsbox, root, "shell", "python", "-c", "import six; print(six.__version__)")
    assert out == "1.15.0\n"
    # env lock: the [build] pip python's freeze and the apt packages, in rsbox.lock
    _ok(rsbox, root, "env", "lock")
    packages = json.loads((root / "rsbox.lock").read_text())["packages"]
    assert "six==1.15.0" in packages["pip"]
    assert any(p.startswith("jq=") for p in packages["dpkg"])
    _ok(rsbox, root, "env", "down")


def test_shims_run_the_tools_from_a_plain_host_shell_anywhere(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _project(rsbox, tmp_path, f'[env]\nbase = "{busybox}"\n[expose]\nbins = ["sh", "cat"]\n')
    _ok(rsbox, root, "env", "build")
    (root / ".rsbox" / "bin").mkdir(parents=True)
    (root / ".rsbox" / "bin" / "mine").write_text("#!/bin/sh\necho not rsbox's\n")
    written = _ok(rsbox, root, "env", "shims").split()
    assert written == [str(root / ".rsbox" / "bin" / t) for t in ("sh", "cat")]
    env = {**os.environ, "PYTHONPATH": SOURCE}

    def host_shell(script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", script], cwd=tmp_path, env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    bin_ = root / ".rsbox" / "bin"
    res = host_shell(f"""{bin_}/sh -c 'printf "%s|" "$@"; pwd; exit 3' - 'a b' '$x' 'new
line'""")
    assert (res.returncode, res.stdout) == (3, f"a b|$x|new\nline|{root}\n"), res
    res = host_shell(f"{bin_}/cat", stdin="through stdin\n")
    assert (res.returncode, res.stdout) == (0, "through stdin\n"), res
    # a tool dropped from [expose] loses its shim; a file rsbox did not write stays
    toml = root / "rsbox.toml"
    toml.write_text(toml.read_text().replace('"sh", "cat"', '"cat"'))
    _ok(rsbox, root, "env", "shims")
    assert sorted(p.name for p in bin_.iterdir()) == ["cat", "mine"]
    _ok(rsbox, root, "env", "down")


def test_a_containerfile_project_with_a_mount_at_its_host_path(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("shared data\n")
    root = _project(
        rsbox,
        tmp_path,
        f"""
        [env]
        containerfile = "env/Containerfile"
        [run]
        mounts = ["{data}:ro"]
        """,
        {"env/Containerfile": f"FROM {busybox}\nCOPY note.txt /note.txt\n", "note.txt": "hi\n"},
    )
    _ok(rsbox, root, "env", "build")
    out = _in(rsbox, root, "shell", "sh", "-c", f"cat /note.txt {data}/in.txt; touch {data}/x")
    assert out.stdout == "hi\nshared data\n" and out.returncode == 1, out
    assert not (data / "x").exists()
    # the Containerfile's text is what the change check keys on
    cf = root / "env" / "Containerfile"
    cf.write_text(cf.read_text() + "ENV EDITED=1\n")
    assert "changed since" in _in(rsbox, root, "shell", "true").stderr
    _ok(rsbox, root, "env", "build")
    assert _ok(rsbox, root, "shell", "sh", "-c", "echo $EDITED") == "1\n"
    _ok(rsbox, root, "env", "down")


def test_home_is_the_environments_own_at_the_host_path_with_the_project_inside(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"  # the project lives under $HOME, as most do
    home.mkdir()
    (home / ".profile").write_text("host dotfile\n")
    (home / ".gitconfig").write_text("[user]\nname = shared\n")
    root = _project(
        rsbox,
        home,
        f"""
        [env]
        base = "{busybox}"
        [run]
        share = ["~/.gitconfig:ro"]
        """,
    )
    env = {**os.environ, "HOME": str(home)}

    def shell(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            rsbox.argv("shell", *cmd),
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env={**env, "PYTHONPATH": SOURCE},
        )

    subprocess.run(rsbox.argv("env", "build"), cwd=root, env={**env, "PYTHONPATH": SOURCE},
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    res = shell(
        "sh",
        "-c",
        'echo "$HOME"; pwd; cat ~/.gitconfig; ls -a ~ | grep -c profile; '
        "echo inside > ~/.made-inside; echo p > made.txt; echo x >> ~/.gitconfig",
    )
    lines = res.stdout.splitlines()
    assert lines[:5] == [str(home), str(root), "[user]", "name = shared", "0"], res
    assert "Read-only" in res.stderr or "read-only" in res.stderr  # share was :ro
    # nothing written to the home inside reached the host's home, and back
    assert not (home / ".made-inside").exists()
    assert (rsbox.root / "env-homes" / root.name / ".made-inside").read_text() == "inside\n"
    assert (home / ".gitconfig").read_text() == "[user]\nname = shared\n"
    # a file made in the project belongs to the user on the host
    made = root / "made.txt"
    assert (made.read_text(), made.stat().st_uid) == ("p\n", os.getuid())
    subprocess.run(rsbox.argv("env", "down"), cwd=root, env={**env, "PYTHONPATH": SOURCE},
                   check=True, capture_output=True, timeout=120)  # fmt: skip


def test_edits_take_effect_at_the_next_entry_and_on_create_runs_once(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _project(
        rsbox,
        tmp_path,
        f"""
        [env]
        base = "{busybox}"
        [build]
        run = ["echo v1 > /version"]
        [run]
        env = {{ MODE = "a" }}
        on_create = "echo created >> created.log"
        """,
    )
    _ok(rsbox, root, "env", "build")
    assert _ok(rsbox, root, "shell", "sh", "-c", 'cat /version; echo "$MODE"') == "v1\na\n"
    assert _ok(rsbox, root, "shell", "true") == ""
    made = root / "created.log"
    assert (made.read_text(), made.stat().st_uid) == ("created\n", os.getuid())
    # a [build] edit: entry refuses until the rebuild, then runs the new image
    toml = root / "rsbox.toml"
    toml.write_text(toml.read_text().replace("echo v1", "echo v2"))
    _trust(rsbox, root)
    stale = _in(rsbox, root, "shell", "cat", "/version")
    assert stale.returncode == 125
    assert "changed since the environment was built (hint: rsbox env build)" in stale.stderr
    assert "changed since" in _ok(rsbox, root, "env", "status")
    _ok(rsbox, root, "env", "build")
    assert "changed since" not in _ok(rsbox, root, "env", "status")
    assert _ok(rsbox, root, "shell", "cat", "/version") == "v2\n"
    # a [run] edit recreates the container (on_create again), never rebuilds
    toml.write_text(toml.read_text().replace('MODE = "a"', 'MODE = "b"'))
    _trust(rsbox, root)
    assert _ok(rsbox, root, "shell", "sh", "-c", 'echo "$MODE"') == "b\n"
    assert made.read_text() == "created\ncreated\ncreated\n"  # v1, v2, MODE=b
    assert _steps_run(_ok(rsbox, root, "env", "build")) == 0
    assert "running" in _ok(rsbox, root, "env", "up")
    _ok(rsbox, root, "env", "down")


def test_ssh_agent_socket_crosses_only_when_asked(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    import socket

    sock_path = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen()
    env = {**os.environ, "PYTHONPATH": SOURCE, "SSH_AUTH_SOCK": str(sock_path), "OTHER": "x"}
    probe = 'echo "${SSH_AUTH_SOCK:-none}"; echo "${OTHER:-none}"; test -S "$SSH_AUTH_SOCK" && echo socket'
    try:
        for asked, expected in (
            ("false", "none\nnone\n"),
            ("true", f"{sock_path}\nnone\nsocket\n"),
        ):
            root = _project(
                rsbox, tmp_path, f'[env]\nbase = "{busybox}"\n[run]\nssh_agent = {asked}\n'
            )
            for args in (("env", "build"), ("shell", "sh", "-c", probe), ("env", "down")):
                res = subprocess.run(rsbox.argv(*args), cwd=root, env=env, capture_output=True,
                                     text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
                if args[0] == "shell":
                    assert res.stdout == expected, res
                else:
                    assert res.returncode == 0, res.stderr
    finally:
        listener.close()


def test_two_projects_of_one_name_never_enter_each_others_image(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    name = f"app{os.urandom(3).hex()}"
    roots = []
    for side in ("a", "b"):
        root = tmp_path / side / name
        root.mkdir(parents=True)
        (root / "rsbox.toml").write_text(
            f'[env]\nbase = "{busybox}"\n[build]\nrun = ["echo {side} > /side"]\n'
        )
        _trust(rsbox, root)
        _ok(rsbox, root, "env", "build")
        roots.append(root)
    assert _ok(rsbox, roots[1], "shell", "cat", "/side") == "b\n"
    res = _in(rsbox, roots[0], "shell", "cat", "/side")
    assert res.returncode == 125 and "another project of that name" in res.stderr, res
    assert "own [env] name" in res.stderr
    _ok(rsbox, roots[1], "env", "down")


def _container_line(status: str) -> str:
    return next(line for line in status.splitlines(keepends=True) if line.startswith("container:"))


def _status_within(rsbox: Rsbox, root: Path, word: str, seconds: float) -> bool:
    """Polls `env status` until it says `word` (a deadline, not a measured time)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if f"{word}\n" in _container_line(_ok(rsbox, root, "env", "status")):
            return True
        time.sleep(0.5)
    return False


def test_idle_stop_stops_the_container_and_the_next_entry_starts_it(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _project(
        rsbox,
        tmp_path,
        f"""
        [env]
        base = "{busybox}"
        [run]
        idle_stop = "2s"
        on_create = "echo created >> created.log"
        [expose]
        bins = ["echo"]
        """,
    )
    _ok(rsbox, root, "env", "build")
    _ok(rsbox, root, "env", "shims")
    # an entry that lasts longer than idle_stop keeps it running
    assert _ok(rsbox, root, "shell", "sh", "-c", "sleep 4; echo done") == "done\n"
    assert _container_line(_ok(rsbox, root, "env", "status")).endswith(" running\n")
    assert _status_within(rsbox, root, "stopped", 60)
    # the next shim call, from a plain host process elsewhere, starts it again
    shim = subprocess.run(
        [str(root / ".rsbox" / "bin" / "echo"), "back"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": SOURCE},
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (shim.returncode, shim.stdout) == (0, "back\n"), shim.stderr
    assert _container_line(_ok(rsbox, root, "env", "status")).endswith(" running\n")
    assert (root / "created.log").read_text() == "created\n"  # started again, not recreated
    _ok(rsbox, root, "env", "down")


def test_you_inside_your_ids_name_home_and_directory_and_files_are_yours(
    rsbox: Rsbox, busybox: str, tmp_path: Path, full_map: bool
) -> None:
    """The environment runs --userns keep-id: entry, on_create and the shims are the
    caller inside; `env exec --root` is root there only with a subordinate range."""
    import pwd

    data = tmp_path / "data"  # a [run] mount, bound at its host path
    data.mkdir()
    root = _project(
        rsbox,
        tmp_path,
        f"""
        [env]
        base = "{busybox}"
        [run]
        mounts = ["{data}"]
        on_create = "mkdir made && echo c > made/on-create.txt && touch {data}/on-create"
        """,
    )
    _ok(rsbox, root, "env", "build")
    sub = root / "src"
    sub.mkdir()
    probe = 'id -u; id -un; id -g; echo "$HOME"; pwd; touch in-project'
    out = _ok(rsbox, sub, "env", "exec", "--", "sh", "-c", probe)
    me = pwd.getpwuid(os.getuid()).pw_name
    assert out.splitlines() == [
        str(os.getuid()), me, str(os.getgid()), os.environ["HOME"], str(sub)
    ]  # fmt: skip
    for made in (root / "made", root / "made" / "on-create.txt", data / "on-create",
                 sub / "in-project"):  # fmt: skip
        assert (made.stat().st_uid, made.stat().st_gid) == (os.getuid(), os.getgid()), made
    assert _in(rsbox, sub, "env", "exec", "--", "sh", "-c", "exit 7").returncode == 7
    as_root = _in(rsbox, sub, "env", "exec", "--root", "--", "id", "-u")
    if full_map:
        assert (as_root.returncode, as_root.stdout) == (0, "0\n"), as_root
    else:
        one_line_error(as_root, "--root needs a subordinate id range", "/etc/subuid", alone=True)
    _ok(rsbox, root, "env", "down")
