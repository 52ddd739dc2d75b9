"""The warm helper (rootless.launch.warm, warmd, rootless.warm_helper): a `rsbox run`
without a terminal is done by a "warm P0", a child of a per-user helper that has
imported rsbox, in the CLI's stead; the CLI relays signals and the exit status.

What is observable without timing: whose child the warm P0 and its P1 are (the
helper's, not the CLI's), the helper's pid in `rsbox info`, their cgroups and fds against
the helper's, what the container and the caller see (the same as without the helper),
and the helper's lifetime (replaced when its socket is stale or its code changed, gone
after its idle time). Each test has its control: the same probe with the helper off or
missed.

Not tested here: a connection from another user. The socket's directory is 0700 and the
helper drops a connection whose SO_PEERCRED uid is not its own, but an unprivileged test
cannot connect as anyone else; tests/multiuser (run as root) does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.launch import warm
from rootless.running import children
from tests.e2e.conftest import Rsbox, processes_of

TIMEOUT = 60
OFF = {warm.ENV_KNOB: "0"}


def poll(probe: object, seconds: float = 30.0) -> object:
    """probe() until it returns something true (a bounded wait, not a timing)."""
    assert callable(probe)
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def fd_targets(pid: int) -> set[str]:
    """What `pid` holds open, by identity: sockets and pipes by inode, files by path
    (anonymous inodes, epoll and pidfds, all read alike: left out)."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("anon_inode:"):
            out.add(target)
    return out


def cgroups_of(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup by hierarchy id ("0": the cgroup v2 one)."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, _, rest = line.partition(":")
        out[hid] = rest.partition(":")[2]
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def helper(rsbox: Rsbox, busybox: str) -> int:
    """Our helper's pid: the first run without a terminal starts it (when none runs)."""
    path = warm.socket_path(warm.context())
    res = rsbox.run("--rm", "--network", "none", busybox, "true")
    assert res.returncode == 0, res.stderr
    pid = poll(lambda: warm.helper_pid(path))
    assert isinstance(pid, int), f"no helper at {path}"
    return pid


def held_run(rsbox: Rsbox, *args: str, **kw: object) -> subprocess.Popen[bytes]:
    """A foreground `rsbox run -i` that prints ready and waits for a line on stdin."""
    proc = subprocess.Popen(
        rsbox.argv("run", "--rm", "-i", *args, "sh", "-c", "echo ready; read x; echo done"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,  # type: ignore[call-overload]
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
    return proc


def release(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(b"\n", timeout=TIMEOUT)
    return proc.returncode, out, err


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")


def test_a_run_is_done_by_a_warm_p0_of_the_helper(
    rsbox: Rsbox, busybox: str, helper: int
) -> None:
    """The CLI forks nothing: the helper's child, the warm P0, forks P1; both are in the
    cgroups a P0 and P1 of the CLI's would be in, hold none of the helper's fds, and show
    the CLI's command line."""
    proc = held_run(rsbox, busybox)
    try:
        p0s = children(helper)
        assert len(p0s) == 1, p0s
        p0 = p0s[0]
        p1s = children(p0)
        assert len(p1s) == 1, p1s
        p1 = p1s[0]
        assert children(proc.pid) == []  # the CLI forked nothing
        # ps shows them as the CLI (warmd.retitle), the helper's own command line differs
        cli = cmdline(proc.pid)
        assert cmdline(p0) == cli and cmdline(p1) == cli
        assert cmdline(helper) != cli
        # The helper is in the CLI's cgroups (the socket is keyed by them), and so is the
        # warm P0; P1 is where a P1 of the CLI's would be: the CLI's cgroups, except in a
        # delegated cgroup v2 (CI's .ci/cgroup.sh), where P0 moves it to its container's
        # `server` leaf beside the CLI's, as ever (rootless.cgroups).
        cli_cg = cgroups_of(proc.pid)
        assert cgroups_of(helper) == cli_cg
        assert cgroups_of(p0) == cli_cg
        p1_cg = cgroups_of(p1)
        v2 = p1_cg.pop("0", ""), cli_cg.pop("0", "")
        assert p1_cg == cli_cg
        assert v2[0] == v2[1] or (
            v2[0].endswith("/server") and Path(v2[0]).parent.parent == Path(v2[1]).parent
        ), v2
        mine = fd_targets(helper)
        assert any(t.startswith("socket:") for t in mine)  # CONTROL: its listening socket
        assert fd_targets(p0) & mine == set()
        assert fd_targets(p1) & mine == set()
    finally:
        code, out, err = release(proc)
    assert (code, out) == (0, b"done\n"), err
    assert poll(lambda: children(helper) == [])


def test_with_the_helper_off_the_cli_forks_p1(rsbox: Rsbox, busybox: str, helper: int) -> None:
    """The control of the test above: RSBOX_WARM_HELPER=0, the helper forks nothing, the
    CLI forks its P1."""
    proc = held_run(rsbox, busybox, env=env(**OFF))
    try:
        assert children(helper) == []
        assert len(children(proc.pid)) == 1
    finally:
        code, out, err = release(proc)
    assert (code, out) == (0, b"done\n"), err


def test_the_config_file_turns_it_off(
    rsbox: Rsbox, busybox: str, helper: int, tmp_path: Path
) -> None:
    """`[run] warm-helper = false`: the helper refuses (it reads the caller's config), the
    CLI runs the command and forks P1; `rsbox info` says so."""
    config = tmp_path / "config.toml"
    config.write_text("[run]\nwarm-helper = false\n")
    proc = held_run(rsbox, busybox, env=env(RSBOX_CONFIG=str(config)))
    try:
        assert children(helper) == []
        assert len(children(proc.pid)) == 1
    finally:
        code, out, err = release(proc)
    assert (code, out) == (0, b"done\n"), err
    res = subprocess.run(
        rsbox.argv("info"), capture_output=True, text=True, env=env(RSBOX_CONFIG=str(config))
    )
    assert "warm helper: off ([run] warm-helper = false" in res.stdout, res.stdout


def test_info_names_the_helper(rsbox: Rsbox, helper: int) -> None:
    lines = []
    for extra in ({}, OFF):
        res = subprocess.run(rsbox.argv("info"), capture_output=True, text=True, env=env(**extra))
        lines.append([x for x in res.stdout.splitlines() if "warm helper:" in x])
    assert lines[0] and f"in use: pid {helper}," in lines[0][0], lines
    assert lines[1] and "off (RSBOX_WARM_HELPER=0)" in lines[1][0], lines


def test_the_container_sees_the_same_with_and_without(
    rsbox: Rsbox, busybox: str, helper: int
) -> None:
    """fds, environment, umask, rlimits and I/O priority: what the container sees is the
    same (the helper was started without ionice, this CLI runs under `ionice -c3`)."""
    script = "ls /proc/self/fd; env | grep -v ^HOSTNAME= | sort; umask; ulimit -n; ulimit -s"
    script += "; ionice"
    seen = []
    for extra in ({}, OFF):
        res = subprocess.run(
            [
                "bash",
                "-c",
                'umask 027; ulimit -n 512; exec ionice -c3 "$@"',
                "-",
                *rsbox.argv("run", "--rm", "-e", "X=1", busybox, "sh", "-c", script),
            ],
            capture_output=True,
            text=True,
            env=env(**extra),
            timeout=TIMEOUT,
        )
        assert res.returncode == 0, res.stderr
        seen.append(res.stdout)
    assert seen[0] == seen[1]
    assert seen[0].split()[:4] == ["0", "1", "2", "3"]  # 3: ls's own directory
    assert "X=1" in seen[0].split()
    assert seen[0].split()[-3] == "512"  # the CLI's limit, not the helper's
    assert seen[0].split()[-1] == "idle"  # the CLI's I/O class, not the helper's


def test_the_caller_sees_the_same_with_and_without(
    rsbox: Rsbox, busybox: str, helper: int, tmp_path: Path
) -> None:
    """What the CLI prints and returns, and what it reads from its cwd and stdin, are the
    same when a warm P0 did the work: the command's status and output, a bind mount
    relative to the cwd, an error line (125), a usage error."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("from the cwd\n")
    top = str(Path(warm.__file__).resolve().parents[2])  # the package of our helper
    script = "read x; cat /m/f; echo out $x; echo err >&2; exit 3"
    cases = [
        ("-i", "-v", "./d:/m", busybox, "sh", "-c", script),
        ("--memory", "lots", busybox, "true"),
        ("--no-such-flag", busybox, "true"),
    ]
    seen = []
    for on in (True, False):
        runs = []
        for case in cases:
            proc = subprocess.Popen(
                rsbox.argv("run", "--rm", *case),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env(PYTHONPATH=top) if on else env(**OFF, PYTHONPATH=top),
                cwd=tmp_path,
            )
            if case is cases[0]:  # CONTROL: whose child runs it while it reads stdin
                assert poll(lambda p=proc, on=on: children(helper) if on else children(p.pid))
                assert (children(helper) != []) == on
            out, err = proc.communicate("in\n", timeout=TIMEOUT)
            runs.append((proc.returncode, out, err))
        seen.append(runs)
    assert seen[0] == seen[1]
    assert seen[0][0] == (3, "from the cwd\nout in\n", "err\n")
    assert [code for code, _, _ in seen[0][1:]] == [125, 125]
    assert all(err.startswith("rsbox: error: ") for _, _, err in seen[0][1:]), seen[0]


def test_a_detached_run_prints_its_id_and_keeps_running(
    rsbox: Rsbox, busybox: str, helper: int
) -> None:
    """`run -d` by a warm P0: the id on the CLI's stdout, the container running after the
    warm P0 and the CLI have exited (its monitor is nobody's child of ours)."""
    res = subprocess.run(
        rsbox.argv("run", "-d", busybox, "sleep", "30"),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
    )
    assert res.returncode == 0, res.stderr
    cid = res.stdout.strip()
    try:
        assert len(cid) == 64, res.stdout
        assert children(helper) == []
        ps = rsbox("ps", "-q", "--no-trunc")
        assert cid in ps.stdout.split(), ps.stdout
    finally:
        rsbox("rm", "-f", cid)


def test_sigkill_of_the_cli_ends_the_container_and_its_p1(
    rsbox: Rsbox, busybox: str, helper: int, marker: str
) -> None:
    """The helper holds the CLI's connection: at its EOF it kills the warm P0, as a SIGKILL
    of the CLI killed its own P0; P1 dies with it (its parent-death signal) and P2's guard
    then ends the container."""
    proc = subprocess.Popen(
        rsbox.argv(
            "run", "--rm", busybox, "sh", "-c", "echo ready; while :; do sleep 1; done", marker
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert len(children(helper)) == 1  # CONTROL: the warm P0 is the helper's
        assert len(processes_of(marker)) >= 2  # CONTROL: the CLI and the container's sh
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        assert poll(lambda: children(helper) == [] and processes_of(marker) == [], 5)
    finally:
        for line in processes_of(marker):
            os.kill(int(line.partition(":")[0]), 9)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_another_context_gets_another_helper(rsbox: Rsbox, busybox: str, helper: int) -> None:
    """The socket is named by the caller's context (cgroup, namespaces, ids, nice, ...):
    a run at another nice value does not use this helper (the mechanism that keeps a
    Slurm job's or another session's runs out of a helper in another cgroup; cgroups
    cannot be made without delegation on the CI machine)."""
    proc = held_run(rsbox, busybox, env=env(RSBOX_WARM_IDLE="1"), preexec_fn=lambda: os.nice(3))
    try:
        assert children(helper) == []
        assert len(children(proc.pid)) == 1  # a miss: forked by the CLI, as before
    finally:
        code, out, err = release(proc)
    assert (code, out) == (0, b"done\n"), err


# --- its lifetime, on a copy of the package (its own context: its own helper) -----------


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    top = Path(warm.__file__).resolve().parents[2]
    dst = tmp_path_factory.mktemp("pkg")
    for pkg in ("rootless", "fs", "policies"):
        shutil.copytree(top / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    yield dst
    path = _path_of(dst)
    pid = warm.helper_pid(path)
    if pid is not None:
        os.kill(pid, 9)


def _path_of(copy: Path) -> str:
    code = "from rootless.launch import warm; print(warm.socket_path(warm.context()))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=copy, capture_output=True, text=True, check=True
    ).stdout.strip()


def _run_from(copy: Path, rsbox: Rsbox, busybox: str, **extra: str) -> None:
    res = subprocess.run(
        rsbox.argv("run", "--rm", "--network", "none", busybox, "true"),
        cwd=copy,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert res.returncode == 0, res.stderr


def test_stale_socket_and_changed_code_fall_back_and_replace_the_helper(
    rsbox: Rsbox, busybox: str, copy: Path, helper: int
) -> None:
    path = _path_of(copy)
    assert path != warm.socket_path(warm.context())  # CONTROL: its own helper
    # A socket file nobody listens on (a helper killed with -9): the run works, and
    # a helper takes the name over.
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)
    assert warm.helper_pid(path) is None
    _run_from(copy, rsbox, busybox)
    first = poll(lambda: warm.helper_pid(path))
    assert isinstance(first, int)
    # Its code changes (an upgrade): the next run is refused, runs by itself, and a new
    # helper replaces the old one, which exits.
    p1 = copy / "rootless" / "launch" / "p1.py"
    os.utime(p1, ns=(p1.stat().st_atime_ns, p1.stat().st_mtime_ns + 10**9))
    _run_from(copy, rsbox, busybox, RSBOX_WARM_IDLE="2")
    assert poll(lambda: not alive(first), 10)
    second = poll(lambda: warm.helper_pid(path))
    assert isinstance(second, int) and second != first
    # And that one was started with 2 s of idle time: it goes by itself.
    assert poll(lambda: not alive(second), 20)
    assert warm.helper_pid(path) is None


def test_the_helper_is_of_the_clis_package_not_of_its_cwd(
    rsbox: Rsbox, busybox: str, copy: Path, helper: int
) -> None:
    """An installed `rsbox` run from a checkout: the CLI's package is not the one in its
    cwd. The helper it starts imports the CLI's package (`python -P`), so that it has the
    CLI's context and serves it; one of the cwd's package would serve nobody."""
    path = _path_of(copy)
    assert poll(lambda: warm.helper_pid(path) is None, 20)  # none yet (the test above's gone)
    top = Path(warm.__file__).resolve().parents[2]
    assert (top / "rootless").is_dir()  # CONTROL: the cwd holds another rootless package
    cli = [sys.executable, "-P", "-m", "rootless", "--root", str(rsbox.root)]  # not the cwd's
    res = subprocess.run(
        [*cli, "run", "--rm", "--network", "none", busybox, "true"],
        cwd=top,
        env=env(PYTHONPATH=str(copy), RSBOX_WARM_IDLE="5"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert res.returncode == 0, res.stderr
    assert isinstance(poll(lambda: warm.helper_pid(path)), int)
