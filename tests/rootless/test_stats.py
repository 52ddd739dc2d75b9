"""rootless.stats: the /proc readings and the freezer check, without a container."""

from __future__ import annotations

import os
from pathlib import Path

from rootless.stats import (
    CLOCK_TICKS,
    Sample,
    find_freezer,
    namespace_pids,
    parse_keyed,
    parse_net_dev,
    parse_stat_cpu,
    sample,
    usage,
)

STAT = (
    "4242 (a (weird) name) R 1 4242 4242 0 -1 4194304 100 0 0 0 "
    "150 25 7 3 20 0 1 0 12345 1000000 200 18446744073709551615"
)


def test_stat_fields_count_from_the_last_parenthesis() -> None:
    assert parse_stat_cpu(STAT) == 150 + 25 + 7 + 3


def test_keyed_files() -> None:
    status = "Name:\tsh\nVmRSS:\t    1396 kB\nThreads:\t3\n"
    assert parse_keyed(status, "VmRSS") == 1396 * 1024
    assert parse_keyed(status, "Threads") == 3
    assert parse_keyed("read_bytes: 4096\nwrite_bytes: 0\n", "read_bytes") == 4096
    assert parse_keyed("Pss:                 846 kB\n", "Pss") == 846 * 1024
    assert parse_keyed("", "Pss") == 0


def test_net_dev_leaves_out_loopback() -> None:
    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
        "    lo:  5000 10 0 0 0 0 0 0  5000 10 0 0 0 0 0 0\n"
        "  eth0:  539000 100 0 0 0 0 0 0  606000 90 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(text) == (539000, 606000)


def test_usage_between_two_samples() -> None:
    before = Sample(10.0, cpu_ticks=100, running=True)
    after = Sample(12.0, cpu_ticks=100 + CLOCK_TICKS, memory=2048, tasks=2, net_rx=5, running=True)
    u = usage(before, after, 4096)
    assert u.cpu_percent == 50.0  # one CPU-second in two seconds
    assert (u.memory, u.memory_limit, u.memory_percent, u.pids, u.net_rx) == (
        2048,
        4096,
        50.0,
        2,
        5,
    )
    stopped = usage(before, Sample(12.0), 4096)
    assert (stopped.cpu_percent, stopped.memory, stopped.memory_limit, stopped.pids) == (0, 0, 0, 0)
    # a process that exited into a reaper outside the container cannot make it negative
    assert usage(before, Sample(12.0, cpu_ticks=50, running=True), 1).cpu_percent == 0


def test_sampling_our_own_process_tree() -> None:
    """Our own pid namespace holds us; a sample of it sees some CPU and memory."""
    assert os.getpid() in namespace_pids(os.getpid())
    s = sample(os.getpid(), None)
    assert s.running and s.memory > 0 and s.tasks >= 1
    assert (s.net_rx, s.net_tx) == (0, 0)  # the host's network is not the container's
    assert not sample(None, None).running


def _tree(root: Path, procs: dict[str, list[int]], freeze: bool = True) -> None:
    (root / "cgroup.procs").write_text("1\n")
    for path, pids in procs.items():
        d = root / path.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
        if freeze:
            (d / "cgroup.freeze").write_text("0\n")


def test_the_freezer_is_used_only_for_a_cgroup_of_the_containers_own(tmp_path: Path) -> None:
    _tree(tmp_path, {"/ctr": [10, 11], "/shared": [10, 99]})
    assert find_freezer("0::/ctr\n", [10, 11], [tmp_path]) == tmp_path / "ctr" / "cgroup.freeze"
    shared = find_freezer("0::/shared\n", [10], [tmp_path])
    assert isinstance(shared, str) and "shares /shared with other processes" in shared
    root = find_freezer("0::/\n", [10], [tmp_path])  # this host: everyone in the root
    assert isinstance(root, str) and "no cgroup of its own" in root
    v1 = find_freezer("4:memory:/x\n", [10], [tmp_path])
    assert isinstance(v1, str) and "no cgroup v2" in v1
    none = find_freezer("0::/ctr\n", [10, 11], [tmp_path / "absent"])
    assert isinstance(none, str) and "no cgroup v2 hierarchy is mounted" in none
