"""Each container's own cgroup v2, for real, where the suite runs in a delegated cgroup
(CI: .ci/run starts it in one that .ci/cgroup.sh made and chowned, as systemd's
user@.service delegation looks to a user). This kind of host has no controllers in its
v2 hierarchy (they are bound to v1), so what is real here is what every v2 cgroup has:
the child cgroup itself, cgroup.freeze (pause), cgroup.kill (teardown), cgroup.events
and cpu.stat (stats). memory.max, pids.max, cpu.max and memory.events (OOMKilled) are
tested as files in tests/rootless/test_cgroups.py; here, that they are *not* claimed.

Without a delegated cgroup these tests fail in CI and skip elsewhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rootless import cgroups
from rootless.cgroups import ContainerCgroup, parse_keyed
from tests.e2e.conftest import Rsbox
from tests.shared import unavailable, wait_until


@pytest.fixture(scope="module")
def own() -> Path:
    """Where containers' cgroups go: the delegated cgroup above the suite's own leaf
    (.ci/cgroup.sh makes USER.delegate/suite), as for a systemd scope in its slice."""
    h = cgroups.hierarchy()
    if h is None:
        unavailable("no cgroup v2 hierarchy is mounted")
    mine = cgroups.default_parent(h)
    why = cgroups.delegated(mine)
    if why is not None:
        unavailable(f"the suite does not run in a delegated cgroup v2 ({why}); see .ci/cgroup.sh")
    return mine


def _events(path: Path) -> dict[str, int]:
    return dict(parse_keyed((path / "cgroup.events").read_text()))


def _wait(what: str, cond: Callable[[], object]) -> None:
    wait_until(what, cond, timeout=30, poll=0.02)


@pytest.fixture
def name(rsbox: Rsbox) -> Iterator[str]:
    n = f"cg-{uuid.uuid4().hex[:8]}"
    yield n
    rsbox("rm", "-f", n)


def _inspect(rsbox: Rsbox, name: str) -> dict[str, object]:
    doc = json.loads(rsbox("inspect", name, check=True).stdout)[0]
    assert isinstance(doc, dict)
    return doc


def test_a_container_runs_in_a_cgroup_of_its_own_that_goes_with_it(
    own: Path, rsbox: Rsbox, busybox: str, name: str
) -> None:
    rsbox.run("-d", "--name", name, busybox, "sleep", "600", check=True)
    info = _inspect(rsbox, name)
    state = info["State"]
    assert isinstance(state, dict)
    cid, pid1, monitor = str(info["Id"]), state["Pid"], state["MonitorPid"]
    cg = own / f"rsbox-{cid}"

    def procs(leaf: str) -> set[int]:
        return {int(p) for p in (cg / leaf / "cgroup.procs").read_text().split()}

    # The filesystem server (the monitor) in one leaf; pid 1 and P2 above it in the
    # other, which pause freezes and the limits cover; nothing in the parent itself.
    assert procs("server") == {monitor}
    assert pid1 in procs("container") and len(procs("container")) == 2
    assert not (cg / "cgroup.procs").read_text().split()
    assert _events(cg)["populated"] == 1
    # In its cgroup namespace the container sees its cgroup as the root.
    out = rsbox("exec", name, "cat", "/proc/self/cgroup", check=True).stdout
    assert "0::/\n" in out
    rsbox("rm", "-f", name, check=True)
    assert not cg.exists()
    # A foreground run leaves none behind either, nor a detached one once it has ended.
    before = {p.name for p in own.iterdir() if p.name.startswith("rsbox-")}
    res = rsbox.run("--rm", busybox, "sh", "-c", "cat /proc/self/cgroup")
    assert res.returncode == 0 and res.stdout.endswith("0::/\n"), res.stderr
    assert {p.name for p in own.iterdir() if p.name.startswith("rsbox-")} == before
    short = rsbox.run("-d", "--name", name, busybox, "true", check=True).stdout.strip()
    rsbox("wait", name, check=True)
    _wait("the monitor to remove the cgroup", lambda: not (own / f"rsbox-{short}").exists())


def test_a_sigkilled_rsbox_leaves_no_cgroup(own: Path, rsbox: Rsbox, busybox: str) -> None:
    """kill -9 of `rsbox run`: P1 dies with it, P2 (outside the container's pid
    namespace) kills pid 1, then removes the cgroup through handles it opened early."""
    before = {p.name for p in own.iterdir() if p.name.startswith("rsbox-")}
    proc = subprocess.Popen(
        rsbox.argv("run", "--rm", busybox, "sh", "-c", "echo ready; sleep 600"),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    made = {p.name for p in own.iterdir() if p.name.startswith("rsbox-")} - before
    assert len(made) == 1, made  # the probe sees the container's cgroup while it runs
    cg = own / made.pop()
    proc.kill()
    proc.communicate(timeout=10)
    _wait("the cgroup to go", lambda: not cg.exists())


def test_pause_freezes_the_containers_cgroup_and_unpause_thaws_it(
    own: Path, rsbox: Rsbox, busybox: str, name: str
) -> None:
    rsbox.run("-d", "--name", name, busybox, "sleep", "600", check=True)
    top = own / f"rsbox-{_inspect(rsbox, name)['Id']}"
    cg = top / "container"
    assert _events(cg)["frozen"] == 0
    assert rsbox("pause", name).returncode == 0
    _wait("the kernel to report the cgroup frozen", lambda: _events(cg)["frozen"] == 1)
    # Neither the user's cgroup nor the filesystem server: a paused container's files
    # can still be read (diff goes through the server's sync).
    assert own.joinpath("cgroup.freeze").read_text().strip() == "0"
    assert _events(top / "server")["frozen"] == 0
    assert rsbox("diff", name).returncode == 0
    assert rsbox("unpause", name).returncode == 0
    _wait("the thaw", lambda: _events(cg)["frozen"] == 0)
    assert rsbox("exec", name, "echo", "alive", check=True).stdout == "alive\n"


def test_cgroup_kill_ends_every_process_in_a_cgroup(own: Path) -> None:
    """The teardown's mechanism on a cgroup made here: two processes moved into it (the
    common ancestor is ours, so we may), then ContainerCgroup.remove: cgroup.kill, wait
    for cgroup.events to say empty, rmdir."""
    path = own / f"rsbox-test-{uuid.uuid4().hex[:8]}"
    cg = ContainerCgroup(path, frozenset())
    for d in (path, path / "server", cg.container):
        d.mkdir()
    procs = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    try:
        cg.attach_server(procs[0].pid)
        (cg.container / "cgroup.procs").write_text(f"{procs[1].pid}\n")
        assert cg.populated()
        cg.remove()
        assert [p.wait(timeout=10) for p in procs] == [-signal.SIGKILL] * 2
        assert not path.exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for d in (path / "server", cg.container, path):
            if d.exists():
                d.rmdir()


def test_cgroup_parent_places_the_cgroup_and_must_be_delegated(
    own: Path, rsbox: Rsbox, busybox: str, name: str
) -> None:
    h = cgroups.hierarchy()
    assert h is not None
    sub = own / f"parent-{uuid.uuid4().hex[:8]}"
    sub.mkdir()
    try:
        rel = "/" + str(sub.relative_to(h.mount))
        rsbox.run("-d", "--name", name, "--cgroup-parent", rel, busybox, "sleep", "600",
                  check=True)  # fmt: skip
        cid = _inspect(rsbox, name)["Id"]
        assert (sub / f"rsbox-{cid}" / "container" / "cgroup.procs").read_text().split()
        rsbox("rm", "-f", name, check=True)
    finally:
        sub.rmdir()
    # The hierarchy's root is not ours: one line, Docker's 125, nothing made.
    res = rsbox.run("--rm", "--cgroup-parent", "/", busybox, "true")
    assert res.returncode == 125
    assert res.stderr.startswith("rsbox: error: --cgroup-parent /:")
    assert "not writable by you" in res.stderr and "Traceback" not in res.stderr


def test_limits_without_controllers_stay_rlimits_and_say_so(
    own: Path, rsbox: Rsbox, busybox: str
) -> None:
    have = (own / "cgroup.controllers").read_text().split()
    if {"memory", "pids", "cpu"} & set(have):
        pytest.skip(f"this host passes controllers down ({have}): see the unit tests")
    res = rsbox.run("--rm", "--pids-limit", "40", "--memory", "64m", "--cpus", "1", busybox,
                    "sh", "-c", "ulimit -u; ulimit -v")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["40", str(64 << 10)]
    assert "RLIMIT_NPROC" in res.stderr and "RLIMIT_AS" in res.stderr
    assert "NOT enforced: cpus 1 (its cgroup has no controller for it)" in res.stderr


def test_stats_reads_the_containers_cgroup(
    own: Path, rsbox: Rsbox, busybox: str, name: str
) -> None:
    rsbox.run("-d", "--name", name, busybox, "sh", "-c", "while :; do :; done", check=True)
    cg = own / f"rsbox-{_inspect(rsbox, name)['Id']}" / "container"
    res = rsbox("stats", "--no-stream", "--format", "{{.CPUPerc}}", name, check=True)
    assert "from each container's own cgroup" in res.stderr
    assert float(res.stdout.strip().rstrip("%")) > 0
    usage = parse_keyed((cg / "cpu.stat").read_text())["usage_usec"]
    assert usage > 0
    assert os.path.exists(cg / "cgroup.kill")
