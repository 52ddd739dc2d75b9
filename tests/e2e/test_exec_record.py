"""`rsbox exec` starts from the process its container's pid 1 became, as the launch saved
it in the container's directory (process.json, seccomp.bpf), and finds its container by
full id (without the database), name or id prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Rsbox
from tests.e2e.test_lifecycle import _detach, _until

# What pid 1 and exec print: the environment and working directory they were given and
# the capability sets they hold (Docker's default minus CHOWN here).
PROBE = 'echo "$FOO $PWD"; grep -E "^Cap(Bnd|Eff):" /proc/$$/status'
PID1 = f"{{ {PROBE}; }} > /tmp/pid1; echo ready; exec sleep 1000"
NAME = "exec-record"


@pytest.fixture()
def container(rsbox: Rsbox, busybox: str) -> Iterator[str]:
    flags = ("--name", NAME, "-e", "FOO=bar", "-w", "/tmp", "--cap-drop", "CHOWN")
    cid = _detach(rsbox, *flags, busybox, "sh", "-c", PID1)
    try:
        _until(lambda: rsbox("logs", cid).stdout == "ready\n", "the container to be ready")
        yield cid
    finally:
        rsbox("rm", "-f", cid)


def _pid1_view(rsbox: Rsbox, cid: str) -> str:
    return rsbox("exec", cid, "cat", "/tmp/pid1", check=True).stdout


def test_exec_starts_from_pid1s_environment_directory_and_capabilities(
    rsbox: Rsbox, busybox: str, container: str
) -> None:
    seen = rsbox("exec", container, "sh", "-c", PROBE, check=True).stdout
    assert seen == _pid1_view(rsbox, container)
    assert seen.startswith("bar /tmp\n")
    # The probe tells containers apart: one run without those flags shows other values.
    other = rsbox.run("--rm", busybox, "sh", "-c", PROBE, check=True).stdout
    assert other != seen and not other.startswith("bar")


def test_exec_finds_the_container_by_full_id_name_and_prefix(rsbox: Rsbox, container: str) -> None:
    for ref in (container, NAME, container[:12]):
        assert rsbox("exec", ref, "sh", "-c", "echo $FOO", check=True).stdout == "bar\n", ref
    missing = rsbox("exec", "f" * 64, "true")
    assert missing.returncode == 125 and "no such container" in missing.stderr


def test_exec_into_a_container_started_without_a_saved_process(
    rsbox: Rsbox, container: str
) -> None:
    """A container started by an rsbox that saved no process.json (an upgrade while it
    runs): exec plans the process from config.json as before, with the same result."""
    (rsbox.root / "containers" / container / "process.json").unlink()
    seen = rsbox("exec", container, "sh", "-c", PROBE, check=True).stdout
    assert seen == _pid1_view(rsbox, container)


def test_exec_refuses_a_damaged_process_record_in_one_line(rsbox: Rsbox, container: str) -> None:
    (rsbox.root / "containers" / container / "process.json").write_text('{"env": 1}')
    res = rsbox("exec", container, "true")
    assert res.returncode == 125, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsbox: error: "), res.stderr
    assert "process.json" in lines[0] and "(hint: " in lines[0]
