"""Containers in the background, end to end: `run -d`, ps, logs, stop, kill, start, rm,
wait, inspect, top, through the real CLI as the (unprivileged) user running the suite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from rootless.lifecycle import runtime_dir
from tests.e2e.conftest import Rsbox, processes_of


def _until(pred: object, what: str, timeout: float = 60) -> None:
    """Poll for a state change (never a timing assertion: the bound is only a guard)."""
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _inspect(rsbox: Rsbox, ref: str) -> dict[str, object]:
    res = rsbox("inspect", ref, check=True)
    doc = json.loads(res.stdout)[0]
    assert isinstance(doc, dict)
    return doc


def _state(rsbox: Rsbox, ref: str) -> dict[str, object]:
    state = _inspect(rsbox, ref)["State"]
    assert isinstance(state, dict)
    return state


def _detach(rsbox: Rsbox, *args: str) -> str:
    res = rsbox.run("-d", *args, check=True)
    cid = res.stdout.strip()
    assert len(cid) == 64, res.stdout
    return cid


def test_detached_run_prints_the_id_and_logs_both_streams(rsbox: Rsbox, busybox: str) -> None:
    cid = _detach(rsbox, busybox, "sh", "-c", "echo out; echo err >&2")
    assert rsbox("wait", cid, check=True).stdout == "0\n"
    res = rsbox("logs", cid, check=True)
    assert (res.stdout, res.stderr) == ("out\n", "err\n")
    stamped = rsbox("logs", "--timestamps", "--tail", "1", cid, check=True)
    assert len((stamped.stdout + stamped.stderr).splitlines()) == 1
    assert (stamped.stdout + stamped.stderr).startswith("20")
    rsbox("rm", cid, check=True)


def test_ps_lists_running_and_exited_with_their_codes(rsbox: Rsbox, busybox: str) -> None:
    run = _detach(rsbox, "--name", "ps-up", busybox, "sleep", "1000")
    done = _detach(rsbox, "--name", "ps-done", busybox, "sh", "-c", "exit 3")
    assert rsbox("wait", done, check=True).stdout == "3\n"
    running = rsbox("ps", check=True).stdout
    assert "ps-up" in running and "ps-done" not in running
    rows = {d["Names"][0]: d for d in json.loads(rsbox("ps", "-a", "--format", "json").stdout)}
    assert rows["ps-up"]["State"] == "running"
    assert (rows["ps-done"]["State"], rows["ps-done"]["ExitCode"]) == ("exited", 3)
    assert "Exited (3)" in rsbox("ps", "-a", check=True).stdout
    rsbox("rm", "-f", run, done, check=True)
    assert "ps-up" not in rsbox("ps", "-a", check=True).stdout


def test_a_failing_command_is_reported_by_run_d(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("-d", "--name", "nocmd", busybox, "no-such-command")
    assert res.returncode == 127
    assert "executable file not found" in res.stderr
    assert rsbox("wait", "nocmd", check=True).stdout == "127\n"
    rsbox("rm", "nocmd", check=True)


def test_logs_follow_streams_until_the_container_exits(rsbox: Rsbox, busybox: str) -> None:
    go = Path(f"/tmp/rsbox-e2e-go-{os.getpid()}")
    go.mkdir(exist_ok=True)
    cid = _detach(
        rsbox,
        "-v",
        f"{go}:/go",
        busybox,
        "sh",
        "-c",
        "echo first; while [ ! -e /go/now ]; do sleep 0.1; done; echo second",
    )
    with subprocess.Popen(
        rsbox.argv("logs", "-f", cid), stdout=subprocess.PIPE, text=True
    ) as follow:
        try:
            assert follow.stdout is not None
            assert follow.stdout.readline() == "first\n"  # streamed while it runs
            (go / "now").write_text("")
            assert follow.stdout.readline() == "second\n"
            assert follow.wait(timeout=60) == 0  # and -f ends with the container
        finally:
            follow.kill()
            (go / "now").unlink(missing_ok=True)
            go.rmdir()
    rsbox("rm", cid, check=True)


def test_stop_waits_for_the_grace_period_then_kills(rsbox: Rsbox, busybox: str) -> None:
    # pid 1 without a SIGTERM handler ignores SIGTERM: only SIGKILL ends it.
    stubborn = _detach(rsbox, busybox, "sleep", "1000")
    # pid 1 that traps SIGTERM exits on its own, with its own code.
    polite = _detach(
        rsbox, busybox, "sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"
    )
    _until(lambda: rsbox("logs", polite).stdout == "ready\n", "the trap to be set")
    started = time.monotonic()
    rsbox("stop", "-t", "2", stubborn, check=True)
    assert time.monotonic() - started >= 2  # the grace period was granted
    assert _state(rsbox, stubborn)["ExitCode"] == 137
    rsbox("stop", "-t", "30", polite, check=True)
    assert _state(rsbox, polite)["ExitCode"] == 42
    rsbox("rm", stubborn, polite, check=True)


def test_kill_sends_the_signal(rsbox: Rsbox, busybox: str) -> None:
    cid = _detach(
        rsbox, busybox, "sh", "-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.1; done"
    )
    _until(lambda: rsbox("logs", cid).stdout == "ready\n", "the trap to be set")
    rsbox("kill", "-s", "USR1", cid, check=True)
    assert rsbox("wait", cid, check=True).stdout == "7\n"
    rsbox("rm", cid, check=True)


def test_a_sigkilled_monitor_leaves_an_exited_container_that_starts_again(
    rsbox: Rsbox, busybox: str, marker: str
) -> None:
    cid = _detach(
        rsbox,
        busybox,
        "sh",
        "-c",
        f"echo run >> /runs; sleep 1000; : {marker}",
    )
    state = _state(rsbox, cid)
    assert state["Running"] is True, state
    monitor = int(state["MonitorPid"])  # type: ignore[call-overload]
    assert monitor > 1
    os.kill(monitor, signal.SIGKILL)
    _until(lambda: not processes_of(marker), "the container to die with its monitor")
    state = _state(rsbox, cid)
    assert (state["Status"], state["Running"]) == ("exited", False)
    assert "Exited" in rsbox("ps", "-a", check=True).stdout
    rsbox("start", cid, check=True)
    assert _state(rsbox, cid)["Running"] is True
    # The same writable layer: the first run's line is still there.
    res = rsbox("stop", "-t", "0", cid, check=True)
    assert res.returncode == 0
    upper = Path(str(_inspect(rsbox, cid)["UpperDir"]))
    assert (upper / "runs").read_text() == "run\nrun\n"
    rsbox("rm", cid, check=True)


def test_rm_f_of_a_running_container_leaves_nothing(
    rsbox: Rsbox, busybox: str, marker: str
) -> None:
    cid = _detach(rsbox, busybox, "sh", "-c", f"sleep 1000; : {marker}")
    doc = _inspect(rsbox, cid)
    cdir = Path(str(doc["UpperDir"])).parent
    assert processes_of(marker)
    assert rsbox("rm", cid).returncode == 125  # running: refused without -f
    rsbox("rm", "-f", cid, check=True)
    assert not processes_of(marker)
    assert not cdir.exists()
    assert not runtime_dir(cid).exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert cid not in mounts
    assert rsbox("inspect", cid).returncode == 125


def test_run_d_rm_removes_the_container_when_it_exits(rsbox: Rsbox, busybox: str) -> None:
    cid = _detach(rsbox, "--rm", busybox, "true")
    _until(lambda: rsbox("inspect", cid).returncode != 0, "the container to be removed")
    assert not runtime_dir(cid).exists()


def test_two_starts_at_once_run_one_monitor(rsbox: Rsbox, busybox: str) -> None:
    cid = _detach(rsbox, busybox, "sleep", "1000")
    rsbox("stop", "-t", "0", cid, check=True)
    procs = [
        subprocess.Popen(rsbox.argv("start", cid), stderr=subprocess.DEVNULL) for _ in range(3)
    ]
    for p in procs:
        p.wait(timeout=60)
    pids = {int(_state(rsbox, cid)["MonitorPid"])}  # type: ignore[call-overload]
    assert len(pids) == 1 and _state(rsbox, cid)["Running"] is True
    rsbox("rm", "-f", cid, check=True)


def test_exec_sees_the_same_files_processes_and_hostname(
    rsbox: Rsbox, busybox: str, userns: str
) -> None:
    cid = _detach(
        rsbox,
        "--userns",
        userns,
        "--hostname",
        "webhost",
        busybox,
        "sh",
        "-c",
        "echo made > /made; echo ready; exec sleep 1000",
    )
    _until(lambda: rsbox("logs", cid).stdout == "ready\n", "the container to be ready")
    assert rsbox("exec", cid, "cat", "/made", check=True).stdout == "made\n"
    assert rsbox("exec", cid, "hostname", check=True).stdout == "webhost\n"
    ps = rsbox("exec", cid, "ps", "-o", "pid,comm", check=True).stdout.split()
    assert ps[2:4] == ["1", "sleep"], ps  # the container's pid 1, in its pid namespace
    assert "ps" in ps
    res = rsbox("exec", "-w", "/tmp", "-e", "A=b", cid, "sh", "-c", 'echo "$PWD $A"', check=True)
    assert res.stdout == "/tmp b\n"
    assert rsbox("exec", cid, "sh", "-c", "exit 5").returncode == 5
    assert rsbox("exec", cid, "no-such-command").returncode == 127
    rsbox("rm", "-f", cid, check=True)
    assert rsbox("exec", cid, "true").returncode == 125


def test_exec_runs_under_the_containers_seccomp_policy(rsbox: Rsbox, busybox: str) -> None:
    """mount(2) is refused by the default policy, for pid 1 and for exec alike; the same
    probe succeeds in a container run with seccomp=unconfined. Both hold CAP_SYS_ADMIN,
    so that the filter is the only difference."""
    probe = "mkdir -p /mnt/p && mount -t tmpfs none /mnt/p && echo mounted"
    sys_admin = ("--cap-add", "SYS_ADMIN")
    confined = _detach(rsbox, *sys_admin, busybox, "sleep", "1000")
    free = _detach(
        rsbox, *sys_admin, "--security-opt", "seccomp=unconfined", busybox, "sleep", "1000"
    )
    try:
        status = rsbox("exec", confined, "grep", "Seccomp:", "/proc/self/status", check=True)
        assert status.stdout.split() == ["Seccomp:", "2"]
        pid1 = rsbox("exec", confined, "grep", "Seccomp:", "/proc/1/status", check=True)
        assert pid1.stdout == status.stdout
        blocked = rsbox("exec", confined, "sh", "-c", probe)
        assert blocked.returncode != 0 and "mounted" not in blocked.stdout
        allowed = rsbox("exec", free, "sh", "-c", probe)
        assert allowed.stdout == "mounted\n", allowed.stderr
        unconfined = rsbox("exec", free, "grep", "Seccomp:", "/proc/self/status", check=True)
        assert unconfined.stdout.split() == ["Seccomp:", "0"]
    finally:
        rsbox("rm", "-f", confined, free)


def _has_zombie(rsbox: Rsbox, cid: str) -> bool:
    ps = rsbox("exec", cid, "ps", "-o", "stat,comm", check=True).stdout.split("\n")[1:]
    return any(line.strip().startswith("Z") for line in ps)


def test_init_reaps_orphans_and_forwards_signals(rsbox: Rsbox, busybox: str) -> None:
    # The orphan must outlive the subshell that made it (else the subshell reaps it):
    # then it is pid 1's child when it exits.
    script = "(sleep 0.5 &); echo ready; exec sleep 1000"
    # Without --init, `sleep` is pid 1: it never reaps the orphan, which stays a zombie.
    plain = _detach(rsbox, busybox, "sh", "-c", script)
    # With --init, our pid 1 reaps it, and passes SIGTERM on to the command.
    inited = _detach(rsbox, "--init", busybox, "sh", "-c", script)
    try:
        for cid in (plain, inited):
            _until(lambda c=cid: rsbox("logs", c).stdout == "ready\n", "the container")
        _until(lambda: _has_zombie(rsbox, plain), "the orphan to become a zombie")
        assert not _has_zombie(rsbox, inited)
        ps = rsbox("exec", inited, "ps", "-o", "pid,comm", check=True).stdout.split()
        assert ps[2:4] == ["1", "rsbox-init"], ps
        rsbox("stop", "-t", "60", inited, check=True)
        assert _state(rsbox, inited)["ExitCode"] == 143  # SIGTERM reached sleep
    finally:
        rsbox("rm", "-f", plain, inited)


def test_init_in_the_foreground_returns_the_commands_status(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--rm", "--init", busybox, "sh", "-c", "echo $$; exit 3")
    assert (res.returncode, res.stdout) == (3, "2\n"), res.stderr


def test_restart_on_failure_runs_it_again_up_to_n_times(rsbox: Rsbox, busybox: str) -> None:
    cid = _detach(
        rsbox, "--restart", "on-failure:2", busybox, "sh", "-c", "echo run >> /runs; exit 1"
    )
    upper = Path(str(_inspect(rsbox, cid)["UpperDir"]))
    _until(lambda: _inspect(rsbox, cid)["RestartCount"] == 2, "two restarts")
    _until(lambda: not _state(rsbox, cid)["Running"], "the last run to end")
    assert (upper / "runs").read_text() == "run\n" * 3
    assert _state(rsbox, cid)["ExitCode"] == 1
    rsbox("rm", cid, check=True)


def test_restart_is_not_applied_after_stop_or_success(rsbox: Rsbox, busybox: str) -> None:
    ok = _detach(rsbox, "--restart", "on-failure", busybox, "true")
    assert rsbox("wait", ok, check=True).stdout == "0\n"
    stopped = _detach(rsbox, "--restart", "on-failure", busybox, "sleep", "1000")
    rsbox("stop", "-t", "0", stopped, check=True)
    for cid in (ok, stopped):
        assert _inspect(rsbox, cid)["RestartCount"] == 0
        assert _state(rsbox, cid)["Running"] is False
    rsbox("rm", ok, stopped, check=True)
    bad = rsbox.run("-d", "--restart", "always", busybox, "true")
    assert bad.returncode == 125 and "--restart" in bad.stderr


def test_exec_t_gets_a_pty_of_the_containers_devpts(rsbox: Rsbox, busybox: str) -> None:
    cid = _detach(rsbox, busybox, "sleep", "1000")
    try:
        res = rsbox("exec", "-t", cid, "sh", "-c", "tty; echo $TERM", check=True)
        tty, term = res.stdout.replace("\r", "").split()
        assert tty.startswith("/dev/pts/") and term == "xterm"
        probe = "test -t 1 && echo tty || echo no-tty"
        assert rsbox("exec", cid, "sh", "-c", probe).stdout == "no-tty\n"
        assert rsbox("exec", "-t", cid, "sh", "-c", probe).stdout.strip() == "tty"
    finally:
        rsbox("rm", "-f", cid)
