"""The warm helper (rootless.launch.warm) and another user, for real (run as root: see
conftest). `rsbox-ci`'s helper drops a connection from anyone else without a word, and
`rsbox-ci`'s CLI hands nothing to a socket that another user listens on. root is the
other user here (it can reach into the 0700 directory; anyone else is stopped there
already). Each has its control: the owner, on the same socket, is answered and served.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

USER = "rsbox-ci"
TOP = Path(__file__).resolve().parents[2]

# Sends a well-formed request with the helper turned off in it: the owner is answered
# "no off"; prints what came back ("" at EOF, "closed" if the helper hung up first).
ASK = """
import os, socket, sys
from rootless.launch import warm
os.environ[warm.ENV_KNOB] = "0"
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    socket.send_fds(s, [warm._request(warm.context(), ["run"])], [0, 1, 2, 0])
    print(s.recv(64).decode().strip())
except OSError:
    print("closed")
"""
# A `run` with a bad flag: served, the warm P0 exits 125 (a usage error) and so do we.
CONNECT = """
from rootless.launch import warm
code = warm.delegate(["run", "--no-such-flag"])
print(code is None, warm.missed)
"""


def _as_user() -> tuple[Callable[[], None], dict[str, str]]:
    pw = pwd.getpwnam(USER)

    def drop() -> None:
        os.setgroups(os.getgrouplist(USER, pw.pw_gid))
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "PYTHONPATH": str(TOP)}
    return drop, env


@pytest.fixture()
def runtime() -> Iterator[tuple[Path, Callable[[], None], dict[str, str]]]:
    """A runtime directory of USER's, and how to run as USER with it."""
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        pytest.fail(f"no user {USER} (.ci/run makes it)")
    base = Path(tempfile.mkdtemp(prefix="rsbox-warm-peer.", dir="/tmp"))
    base.chmod(0o755)
    run = base / "run"
    run.mkdir(mode=0o700)
    os.chown(run, pw.pw_uid, pw.pw_gid)
    drop, env = _as_user()
    env["XDG_RUNTIME_DIR"] = str(run)
    try:
        yield run, drop, env
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _user_py(
    drop: Callable[[], None], env: dict[str, str], code: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        preexec_fn=drop,
        env=env,
        cwd=TOP,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=True,
    )


def _path(drop: Callable[[], None], env: dict[str, str]) -> str:
    code = "from rootless.launch import warm; print(warm.socket_path(warm.context()))"
    return _user_py(drop, env, code).stdout.strip()


def test_the_helper_drops_another_users_connection(
    runtime: tuple[Path, Callable[[], None], dict[str, str]],
) -> None:
    _, drop, env = runtime
    helper = subprocess.Popen(
        [sys.executable, "-m", "rootless.warm_helper"],
        preexec_fn=drop,
        env=env,
        cwd=TOP,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        path = _path(drop, env)
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
        assert _user_py(drop, env, ASK, path).stdout.strip() == "no off"  # CONTROL: owner
        # ... and served: the CLI's run is done by a warm P0 (the control of the next test)
        assert _user_py(drop, env, CONNECT).stdout.split() == ["False", "False"]
        # root, a uid other than the helper's: not a byte back, not an fd taken.
        got = subprocess.run(
            [sys.executable, "-c", ASK, path], cwd=TOP, capture_output=True, text=True
        )
        assert got.stdout.strip() in ("", "closed"), got
        assert helper.poll() is None  # and it still serves its owner
        assert _user_py(drop, env, ASK, path).stdout.strip() == "no off"
    finally:
        helper.send_signal(signal.SIGKILL)
        helper.wait()


def test_the_cli_gives_nothing_to_another_users_socket(
    runtime: tuple[Path, Callable[[], None], dict[str, str]],
) -> None:
    """root listens at USER's helper path (mode 0777, so USER may connect): USER's CLI
    sees the peer's uid, sends nothing and runs the command itself; root receives no byte
    and no fd."""
    _, drop, env = runtime
    path = _path(drop, env)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pw = pwd.getpwnam(USER)
    os.chown(os.path.dirname(path), pw.pw_uid, pw.pw_gid)
    os.chmod(os.path.dirname(path), 0o700)
    with socket.socket(socket.AF_UNIX) as fake:
        fake.bind(path)
        os.chmod(path, 0o777)
        fake.listen(1)
        fake.settimeout(30)
        res = _user_py(drop, env, CONNECT)
        assert res.stdout.split() == ["True", "True"], res  # refused: a miss
        conn, _ = fake.accept()  # its connection attempt, closed at once
        with conn:
            conn.settimeout(10)
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 16)
        assert (data, fds) == (b"", [])
