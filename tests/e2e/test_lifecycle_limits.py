"""Resource limits end to end, with whatever this host allows (see rootless.limits): a
fork bomb and a memory hog are contained, and the same probes succeed without limits."""

from __future__ import annotations

from tests.e2e.conftest import Rsbox

# Starts up to 200 background sleeps, printing the count after each; ash gives up (exit 2)
# at the first fork that fails.
FORKS = "i=0; while [ $i -lt 200 ]; do sleep 1000 & i=$((i+1)); echo $i; done"
HOG = 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived ${#x}'


def _last_number(text: str) -> int:
    lines = [line for line in text.split() if line.isdigit()]
    return int(lines[-1]) if lines else 0


def test_pids_limit_caps_the_containers_processes(rsbox: Rsbox, busybox: str) -> None:
    free = rsbox.run("--rm", busybox, "sh", "-c", FORKS)
    assert _last_number(free.stdout) == 200, free.stderr
    capped = rsbox.run("--rm", "--pids-limit", "64", busybox, "sh", "-c", FORKS)
    assert 0 < _last_number(capped.stdout) < 64
    assert "can't fork" in capped.stderr
    assert "pids 64 (RLIMIT_NPROC" in capped.stderr  # the run says what applied


def test_a_fork_bomb_under_pids_limit_ends(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--rm", "--pids-limit", "64", busybox, "sh", "-c", "b() { b & b; }; b")
    assert res.returncode != 0
    assert "can't fork" in res.stderr
    assert rsbox.run("--rm", busybox, "true").returncode == 0  # the host still serves


def test_memory_limit_stops_a_memory_hog(rsbox: Rsbox, busybox: str) -> None:
    free = rsbox.run("--rm", busybox, "sh", "-c", HOG)
    assert free.stdout == "survived 100000000\n", free.stderr
    capped = rsbox.run("--rm", "--memory", "64m", busybox, "sh", "-c", HOG)
    assert capped.returncode != 0 and "survived" not in capped.stdout
    assert "memory 64m per process" in capped.stderr


def test_cpus_is_reported_as_not_enforced(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--rm", "--cpus", "1", busybox, "true")
    assert res.returncode == 0
    assert "NOT enforced: cpus 1" in res.stderr


def test_ulimit_and_exec_share_the_limits(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--rm", "--ulimit", "nofile=100:200", busybox, "sh", "-c", "ulimit -n")
    assert res.stdout == "100\n", res.stderr
    cid = rsbox.run("-d", "--pids-limit", "50", busybox, "sleep", "1000", check=True).stdout.strip()
    try:
        res = rsbox("exec", cid, "sh", "-c", "ulimit -u", check=True)
        assert res.stdout == "50\n"
    finally:
        rsbox("rm", "-f", cid)
    bad = rsbox.run("--rm", "--ulimit", "nofile=x", busybox, "true")
    assert bad.returncode == 125 and "--ulimit" in bad.stderr
