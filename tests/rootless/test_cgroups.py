"""rootless.cgroups: which file gets which value, and the readers, without a hierarchy.

The controller files (memory.max, pids.max, cpu.max, memory.events) cannot be made real
on a host whose v2 hierarchy has no controllers (this one: they are bound to v1); here
they are plain files in a directory tree shaped like a cgroup, and tests/e2e/test_cgroups.py
uses what the kernel does give (cgroup.freeze, cgroup.kill, cgroup.events)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rootless.cgroups import (
    ContainerCgroup,
    Hierarchy,
    cpu_weight,
    default_parent,
    delegated,
    parse_keyed,
    parse_mountinfo,
    parse_own,
    plan,
    resolve_parent,
)
from rootless.errors import UsageError
from rootless.limits import Limits

HYBRID_MOUNTINFO = """\
25 20 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""


def test_the_v2_mount_and_own_cgroup_are_read_from_proc_texts() -> None:
    assert parse_mountinfo(HYBRID_MOUNTINFO) == Path("/sys/fs/cgroup/unified")
    assert parse_mountinfo(HYBRID_MOUNTINFO.replace("cgroup2 cgroup2", "tmpfs x")) is None
    assert parse_own("4:memory:/x\n0::/user.slice/u.scope\n") == "/user.slice/u.scope"
    assert parse_own("0::\n") == "/"
    assert parse_own("4:memory:/x\n") is None


def test_the_parent_is_our_cgroup_or_cgroup_parent_in_the_hierarchy() -> None:
    h = Hierarchy(Path("/sys/fs/cgroup"), "/user.slice/me.scope")
    assert resolve_parent(h, None) == Path("/sys/fs/cgroup/user.slice/me.scope")
    assert resolve_parent(h, "/mine/sub") == Path("/sys/fs/cgroup/mine/sub")
    assert resolve_parent(h, "mine") == Path("/sys/fs/cgroup/mine")
    with pytest.raises(UsageError, match="cgroup-parent"):
        resolve_parent(h, "/mine/../../etc")


def test_each_limit_goes_to_its_file_only_when_the_controller_is_there() -> None:
    limits = Limits(memory=64 << 20, cpus=1.5, pids=32)
    files, enforced = plan(limits, ["memory", "pids", "cpu", "io"])
    assert files == {
        "memory.max": str(64 << 20),
        "memory.swap.max": str(64 << 20),  # Docker: --memory-swap defaults to 2x --memory
        "pids.max": "32",
        "cpu.max": "150000 100000",
    }
    assert enforced == {"memory", "pids", "cpus"}
    files, enforced = plan(limits, ["pids"])
    assert files == {"pids.max": "32"} and enforced == {"pids"}
    assert plan(limits, []) == ({}, frozenset())
    assert plan(Limits(), ["memory", "pids", "cpu"]) == ({}, frozenset())
    # A tiny --cpus still gets the kernel's minimum quota (1 ms), not 0.
    assert plan(Limits(cpus=0.001), ["cpu"])[0] == {"cpu.max": "1000 100000"}
    # --cpu-shares: v1's range mapped onto cpu.weight's, ends to ends, as runc does.
    assert plan(Limits(cpu_shares=512), ["cpu"]) == ({"cpu.weight": "20"}, {"cpu-shares"})
    assert (cpu_weight(2), cpu_weight(1024), cpu_weight(262144)) == (1, 39, 10000)
    assert plan(Limits(cpu_shares=512), ["memory"]) == ({}, frozenset())
    with pytest.raises(UsageError, match="cpu-shares"):
        Limits.from_flags(None, None, None, (), cpu_shares=1)


def test_what_the_cgroup_enforces_gets_no_rlimit_and_the_line_says_so() -> None:
    limits = Limits(memory=64 << 20, cpus=2, pids=32)
    assert limits.rlimits(frozenset({"memory", "pids"})) == []
    assert len(limits.rlimits(frozenset({"pids"}))) == 1
    assert len(limits.rlimits()) == 2
    line = limits.describe(frozenset({"memory", "pids", "cpus"}))
    assert "memory.max" in line and "pids.max" in line and "cpu.max" in line
    assert "NOT enforced" not in line
    line = limits.describe(frozenset(), "its cgroup has no controller for it")
    assert "RLIMIT_AS" in line and "NOT enforced: cpus 2 (its cgroup has no controller" in line


def test_oom_kills_and_population_are_read_from_the_event_files(tmp_path: Path) -> None:
    assert parse_keyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")["oom_kill"] == 1
    cg = ContainerCgroup(tmp_path, frozenset())
    cg.container.mkdir()
    assert not cg.oom_killed()  # no memory controller: no memory.events
    events = cg.container / "memory.events"  # the container's, not its server's
    events.write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert not cg.oom_killed()
    events.write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    assert cg.oom_killed()
    (tmp_path / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert cg.populated()
    (tmp_path / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    assert not cg.populated()


def _cgroup_dir(path: Path, owner_writable: bool = True) -> Path:
    path.mkdir(parents=True)
    for name in ("cgroup.procs", "cgroup.subtree_control", "cgroup.controllers"):
        (path / name).write_text("")
    if not owner_writable:
        (path / "cgroup.procs").chmod(0o444)
    return path


def test_containers_go_beside_our_cgroup_when_its_parent_is_ours_too(tmp_path: Path) -> None:
    """A systemd scope holds processes, so only its slice can pass controllers down."""
    slice_ = _cgroup_dir(tmp_path / "user.slice")
    _cgroup_dir(slice_ / "me.scope")
    h = Hierarchy(tmp_path, "/user.slice/me.scope")
    assert default_parent(h) == slice_
    (slice_ / "cgroup.procs").chmod(0o444)  # the slice is not ours: inside our own
    assert default_parent(h) == slice_ / "me.scope"
    # At the hierarchy's root there is no parent to go beside.
    _cgroup_dir(tmp_path / "x")
    assert default_parent(Hierarchy(tmp_path / "x", "/")) == tmp_path / "x"


def test_delegation_needs_the_directory_and_both_files_writable(tmp_path: Path) -> None:
    assert delegated(_cgroup_dir(tmp_path / "mine")) is None
    why = delegated(_cgroup_dir(tmp_path / "theirs", owner_writable=False))
    assert why is not None and "cgroup.procs is not writable" in why
    why = delegated(tmp_path / "plain")
    assert why is not None and "not a cgroup v2 directory" in why
