"""The lean entry into a project's running environment (rootless.env.enter), end to end
as both CI users: shims called from a plain host shell and `rsbox shell` join the warm
container without the full CLI, pass arguments, streams, exit codes and signals through
exactly, let only the allowlisted host variables in, and fall back to the full CLI on
every miss (stopped, config edited, untrusted), which then enters all the same.

Which path ran is read from the entering process's command line while the tool runs:
the lean entry is the shim's own interpreter (or `rsbox shell`); the full CLI ends in
`rsbox exec`."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox
from tests.e2e.test_env import SOURCE

WAIT = 'echo ready; read x; echo "got $x"'  # a tool that waits while we look at its caller
# A caller that ignores INT and QUIT, as every job a script starts with `&` does (and a
# test run started that way): the tool must still get the Ctrl-C the shim forwards.
IGNORING = ["sh", "-c", 'trap "" INT QUIT; exec "$0" "$@"']


class Project:
    def __init__(self, rsbox: Rsbox, root: Path) -> None:
        self.rsbox, self.root = rsbox, root
        self.bin = root / ".rsbox" / "bin"
        self.env = {**os.environ, "PYTHONPATH": SOURCE}

    def cli(self, *args: str, cwd: Path | None = None) -> str:
        res = subprocess.run(self.rsbox.argv(*args), cwd=cwd or self.root, env=self.env,
                             capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        assert res.returncode == 0, f"{args}: {res.stderr}"
        return res.stdout

    def run(
        self, argv: list[str], stdin: bytes = b"", cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        return subprocess.run(argv, input=stdin, cwd=cwd or self.root.parent,
                              env=env or self.env, capture_output=True, timeout=120)  # fmt: skip

    def path_taken(self, argv: list[str]) -> str:
        """ "lean" or "full": how `argv` (ending in sh -c WAIT) entered, read from its
        process's command line while the tool waits on its stdin."""
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                cwd=self.root, env=self.env)  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline() == b"ready\n"
            words = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            out, _ = proc.communicate(b"it\n", timeout=60)
        finally:
            proc.kill()
            proc.wait()
        assert (proc.returncode, out) == (0, b"got it\n")
        ours = words[: words.index(WAIT.encode())]
        return "full" if b"exec" in ours else "lean"


@pytest.fixture(scope="module")
def project(
    rsbox: Rsbox, busybox: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("enter") / "proj"
    root.mkdir()
    (root / "rsbox.toml").write_text(
        textwrap.dedent(f"""\
        [env]
        base = "{busybox}"
        [build]
        run = ["touch /bin/notexec"]
        [run]
        env = {{ GREETING = "from rsbox.toml" }}
        [expose]
        bins = ["sh", "cat", "env", "notexec", "nothere"]
        """)
    )
    p = Project(rsbox, root)
    p.cli("env", "trust")
    p.cli("env", "build")
    p.cli("env", "shims")
    p.cli("env", "up")
    yield p
    p.cli("env", "down")


def test_a_warm_shim_and_rsbox_shell_join_without_the_full_cli(project: Project) -> None:
    assert project.path_taken([str(project.bin / "sh"), "-c", WAIT]) == "lean"
    assert project.path_taken(project.rsbox.argv("shell", "sh", "-c", WAIT)) == "lean"
    # control: the same probe sees the full CLI when the container is not running
    project.cli("env", "down")
    assert project.path_taken([str(project.bin / "sh"), "-c", WAIT]) == "full"
    assert project.path_taken([str(project.bin / "sh"), "-c", WAIT]) == "lean"  # warm again


def test_arguments_streams_and_status_pass_through_exactly(project: Project) -> None:
    script = 'printf "[%s]" "$@"; echo; echo to-stderr >&2; pwd; echo "$GREETING"; exit 3'
    args = ["a b", "$x", "new\nline", "", "'q'", '"dq"', "*"]
    sub = project.root / "src"
    sub.mkdir(exist_ok=True)
    res = project.run([str(project.bin / "sh"), "-c", script, "-", *args], cwd=sub)
    expected = "".join(f"[{a}]" for a in args) + f"\n{sub}\nfrom rsbox.toml\n"
    assert (res.returncode, res.stdout.decode(), res.stderr) == (3, expected, b"to-stderr\n")
    # from outside the project a tool starts at its root
    out = project.run([str(project.bin / "sh"), "-c", "pwd"]).stdout
    assert out == f"{project.root}\n".encode()
    data = bytes(range(256)) * 64 + b"\0end"
    res = project.run([str(project.bin / "cat")], stdin=data)
    assert (res.returncode, res.stdout) == (0, data)


def test_not_executable_and_not_found_inside_are_126_and_127(project: Project) -> None:
    for tool, code, word in (
        ("notexec", 126, b"permission denied"),
        ("nothere", 127, b"not found"),
    ):
        res = project.run([str(project.bin / tool), "arg"])
        assert res.returncode == code, res
        assert res.stderr.startswith(b"rsbox: error: ") and word in res.stderr
        assert res.stderr.count(b"\n") == 1 and b"Traceback" not in res.stderr
    # control: an executable tool of the image runs through the same kind of shim
    assert project.run([str(project.bin / "sh"), "-c", "exit 0"]).returncode == 0


def _until_ready(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=cwd)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_ctrl_c_is_130_and_sigterm_reaches_the_tool(project: Project) -> None:
    shim = str(project.bin / "sh")
    for caller in ([], IGNORING):
        argv = [*caller, shim, "-c", "echo ready; exec sleep 100"]
        proc = _until_ready(argv, project.env, project.root)
        try:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
        finally:
            proc.kill()  # after a failure: nothing left behind
            proc.wait()
        assert proc.returncode == 130, caller
    trap = 'trap "echo got-term; exit 7" TERM; echo ready; sleep 100 >/dev/null 2>&1 & wait $!'
    proc = _until_ready([shim, "-c", trap], project.env, project.root)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (7, b"got-term\n")


def test_only_the_allowlisted_host_environment_crosses(project: Project) -> None:
    host = {
        **project.env,
        "TERM": "xterm-rsbox",
        "LANG": "C.UTF-8",
        "LC_TIME": "C",
        "RSBOX_TEST_SECRET": "host only",
        "DISPLAY": ":99",
        "SSH_AUTH_SOCK": "/nonexistent/agent",
    }
    for argv in ([str(project.bin / "env")], project.rsbox.argv("shell", "env")):
        res = project.run(argv, env=host, cwd=project.root)
        inside = dict(line.split("=", 1) for line in res.stdout.decode().splitlines())
        assert res.returncode == 0, res
        assert (inside["TERM"], inside["LANG"], inside["LC_TIME"]) == (
            "xterm-rsbox",
            "C.UTF-8",
            "C",
        )
        assert inside["GREETING"] == "from rsbox.toml"  # the container's own
        assert not {"RSBOX_TEST_SECRET", "DISPLAY", "SSH_AUTH_SOCK", "PYTHONPATH"} & set(inside)


def test_every_miss_falls_back_to_the_full_cli_which_enters(project: Project) -> None:
    shim = [str(project.bin / "sh"), "-c", WAIT]
    assert project.path_taken(shim) == "lean"
    # an edit of rsbox.toml: the full CLI recreates the container with it
    toml = project.root / "rsbox.toml"
    original = toml.read_text()
    toml.write_text(original.replace("from rsbox.toml", "edited"))
    try:
        project.cli("env", "trust")  # an edit revokes trust (test_env_trust.py)
        assert project.path_taken(shim) == "full"
        res = project.run([str(project.bin / "sh"), "-c", 'echo "$GREETING"'])
        assert res.stdout == b"edited\n"  # and the next entry is warm again, with the edit
        assert project.path_taken(shim) == "lean"
    finally:
        toml.write_text(original)
        project.cli("env", "trust")  # trusting the edit replaced the original's record
    assert project.path_taken(shim) == "full"
    # no record (a new store, a lost file): the full CLI writes it again
    from rootless.env.enter import record_path

    Path(record_path(str(project.rsbox.root), str(project.root))).unlink()
    assert project.path_taken(shim) == "full"
    assert project.path_taken(shim) == "lean"
    # untrusted: the lean entry misses and the full CLI refuses in one line; trusted
    # again, it joins; an edit revokes it (control: the same shim, lean before and after)
    project.cli("env", "untrust")
    try:
        res = project.run([str(project.bin / "sh"), "-c", "echo entered"])
        assert (res.returncode, res.stdout) == (125, b""), res
        assert b"is not trusted (hint: rsbox env trust)" in res.stderr
    finally:
        project.cli("env", "trust")
    assert project.path_taken(shim) == "lean"
    toml.write_text(original + "# an edit revokes the trust\n")
    try:
        res = project.run([str(project.bin / "sh"), "-c", "echo entered"])
        assert (res.returncode, res.stdout) == (125, b""), res
    finally:
        toml.write_text(original)
    assert project.path_taken(shim) == "lean"


def _read_until(fd: int, word: bytes, seconds: float = 30) -> bytes:
    """What the terminal showed until `word` (a deadline, not a measured time)."""
    import select
    import time

    seen, deadline = b"", time.monotonic() + seconds
    while word not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_on_a_terminal_a_login_shell_and_ctrl_c_is_130(project: Project) -> None:
    for argv, ready, typed, shown, code in (
        (project.rsbox.argv("shell"), b"$ ", b"echo $((6*7)); exit 5\n", b"42", 5),
        *(
            (
                [*caller, str(project.bin / "sh"), "-c", "echo ready; exec sleep 100"],
                b"ready",
                b"\x03",
                b"",
                130,
            )
            for caller in ([], IGNORING)
        ),
    ):
        master, slave = os.openpty()
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=project.env,
                                cwd=project.root, start_new_session=True)  # fmt: skip
        os.close(slave)
        try:
            assert ready in _read_until(master, ready)  # the prompt, or the tool's word
            os.write(master, typed)
            assert shown in (_read_until(master, shown) if shown else b"")
            assert proc.wait(timeout=30) == code
        finally:
            proc.kill()
            proc.wait()
            os.close(master)


def test_a_devcontainer_json_project_enters_lean_too(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    """devcontainer.json is found by the same walk up as rsbox.toml (from a subdirectory
    here), and its warm container is joined without the full CLI."""
    root = tmp_path / "dc"
    (root / ".devcontainer").mkdir(parents=True)
    (root / ".devcontainer" / "devcontainer.json").write_text(
        f'{{"image": "{busybox}", "containerEnv": {{"GREETING": "from devcontainer.json"}}}}'
    )
    sub = root / "src"
    sub.mkdir()
    p = Project(rsbox, root)
    p.cli("env", "trust", cwd=sub)
    p.cli("env", "build", cwd=sub)
    shell = [*rsbox.argv("shell", "sh", "-c", WAIT)]
    try:
        assert p.path_taken(shell) == "full"  # cold: the full CLI starts the container
        assert p.path_taken(shell) == "lean"
        out = p.run(rsbox.argv("shell", "sh", "-c", 'pwd; echo "$GREETING"'), cwd=sub)
        assert (out.returncode, out.stdout) == (0, f"{sub}\nfrom devcontainer.json\n".encode())
        p.cli("env", "down", cwd=sub)
        assert p.path_taken(shell) == "full"  # control: stopped, the same call misses
    finally:
        p.cli("env", "down", cwd=sub)
