"""`rsbox run` under a real Slurm: Debian's slurm-wlm, one controller and two slurmd
"nodes" (n1, n2) on this host, started as root by `.ci/slurm.sh start` (CI runs it
before the suite). Jobs are submitted as the user the suite runs as; the store is the
session's, which every "node" shares (they are one machine).

Without a running cluster these tests fail in CI and skip elsewhere."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox
from tests.shared import unavailable, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
NODES = ("n1", "n2")


def _run(*argv: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="module")
def cluster() -> None:
    if shutil.which("sinfo") is None:
        unavailable("Slurm is not installed (run .ci/slurm.sh start as root)")
    res = _run("sinfo", "-h", "-N", "-o", "%N %t")
    states = dict(line.split() for line in res.stdout.splitlines() if line.strip())
    if res.returncode != 0 or any(states.get(n) not in ("idle", "mix", "alloc") for n in NODES):
        unavailable(f"Slurm is not running with nodes n1, n2 (.ci/slurm.sh start): {res.stderr}")


@pytest.fixture
def bindir(rsbox: Rsbox, tmp_path: Path) -> Path:
    """`rsbox` on PATH for the jobs: this checkout's CLI against the session's store."""
    d = tmp_path / "bin"
    d.mkdir()
    src = Path(__file__).resolve().parents[2]
    shim = d / "rsbox"
    # Both node names are this one machine: a node's local disk is a directory per name.
    shim.write_text(
        "#!/bin/sh\n"
        '[ -n "$RSBOX_TMP_ROOT" ] && export RSBOX_TMP_ROOT="$RSBOX_TMP_ROOT/$SLURMD_NODENAME"\n'
        f"PYTHONPATH={shlex.quote(str(src))} exec {shlex.quote(sys.executable)} "
        f'-m rootless --root {shlex.quote(str(rsbox.root))} "$@"\n'
    )
    shim.chmod(0o755)
    return d


def _env(bindir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", **extra}


def readme_sbatch_script() -> str:
    text = README.read_text()
    m = re.search(r"<!-- sbatch-example -->\n```bash\n(.*?)```", text, re.DOTALL)
    assert m, "README.md lost its sbatch example"
    return m.group(1)


def _job_field(job: str, field: str) -> str:
    res = _run("scontrol", "show", "job", job)
    m = re.search(rf"\b{field}=(\S+)", res.stdout)
    assert m, f"no {field} for job {job}: {res.stdout}{res.stderr}"
    return m.group(1)


def _wait(what: str, cond: Callable[[], object]) -> None:
    wait_until(what, cond, timeout=60, poll=0.1)


def test_srun_runs_a_container_with_the_jobs_variables_and_returns_its_status(
    cluster: None, busybox: str, bindir: Path
) -> None:
    script = (
        'echo "job=$SLURM_JOB_ID node=$SLURMD_NODENAME rank=$SLURM_PROCID other=$OTHER"; exit 3'
    )
    res = _run(
        "srun", "-N1", "-w", "n2", "rsbox", "run", "--rm", busybox, "sh", "-c", script,
        env=_env(bindir, OTHER="host-only"),
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    m = re.fullmatch(r"job=(\d+) node=n2 rank=0 other=\n", res.stdout)
    assert m, res.stdout + res.stderr
    # Slurm recorded the container's status as the job's.
    assert _job_field(m.group(1), "ExitCode") == "3:0"
    # -e still wins over a Slurm variable; success is 0.
    res = _run(
        "srun", "-N1", "rsbox", "run", "--rm", "-e", "SLURM_PROCID=mine", busybox,
        "sh", "-c", 'echo "$SLURM_PROCID"', env=_env(bindir),
    )  # fmt: skip
    assert (res.returncode, res.stdout) == (0, "mine\n"), res.stderr


def test_the_readme_sbatch_script_runs_one_task_on_each_node(
    cluster: None, busybox: str, bindir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    local = tmp_path / "node-local"
    text = readme_sbatch_script().replace("busybox", busybox)
    assert "RSBOX_TMP_ROOT=/tmp/rsbox-layers-$USER" in text
    script.write_text(text.replace("/tmp/rsbox-layers-$USER", str(local)))
    out = tmp_path / "job.out"
    res = _run(
        "sbatch", "--wait", "--parsable", "-o", str(out), "-D", str(tmp_path), str(script),
        env=_env(bindir), timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + (out.read_text() if out.exists() else "")
    job = res.stdout.strip().split(";")[0]
    lines = sorted(out.read_text().splitlines())
    assert lines == [
        f"task 0 of 2 on n1 in job {job}",
        f"task 1 of 2 on n2 in job {job}",
    ], out.read_text()
    assert _job_field(job, "JobState") == "COMPLETED"
    assert _job_field(job, "ExitCode") == "0:0"
    # The store is shared by both "nodes"; each task's writable layer was made in its
    # node's own directory (private to the user) and went with its --rm container.
    assert sorted(p.name for p in local.iterdir()) == ["n1", "n2"]
    for node in ("n1", "n2"):
        d = local / node
        assert (d.stat().st_mode & 0o777, list(d.iterdir())) == (0o700, []), node


def test_a_failing_container_fails_the_batch_job_with_its_status(
    cluster: None, busybox: str, bindir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "fail.sh"
    script.write_text(f"#!/bin/bash\nsrun rsbox run --rm {busybox} sh -c 'exit 5'\n")
    res = _run(
        "sbatch", "--wait", "--parsable", "-o", str(tmp_path / "fail.out"), "-D",
        str(tmp_path), str(script), env=_env(bindir), timeout=120,
    )  # fmt: skip
    job = res.stdout.strip().split(";")[0]
    assert res.returncode == 5, res.stderr
    assert _job_field(job, "JobState") == "FAILED"
    assert _job_field(job, "ExitCode") == "5:0"


def _processes_mentioning(*needles: str) -> list[str]:
    """Command lines of this user's processes that contain one of `needles`."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture
def job_ids() -> Iterator[list[str]]:
    jobs: list[str] = []
    yield jobs
    for job in jobs:
        _run("scancel", job)


def test_scancel_leaves_nothing_on_the_node(
    cluster: None, rsbox: Rsbox, busybox: str, bindir: Path, tmp_path: Path, job_ids: list[str]
) -> None:
    """The container ignores SIGTERM (sleep as pid 1 has no handler), so this is the
    whole path: SIGTERM forwarded, rsbox's own kill before Slurm's KillWait, cleanup.
    The default network (pasta) is on, so there is a daemon to leave behind."""
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "long.sh"
    script.write_text(f"#!/bin/bash\nsrun rsbox run --rm --name {name} {busybox} sleep 600\n")
    res = _run(
        "sbatch", "--parsable", "-o", str(tmp_path / "long.out"), "-D", str(tmp_path),
        str(script), env=_env(bindir),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().split(";")[0]
    job_ids.append(job)

    def running() -> bool:
        res = rsbox("inspect", name)
        return res.returncode == 0 and json.loads(res.stdout)[0]["State"]["Running"] is True

    _wait("the container to run in the job", running)
    info = json.loads(rsbox("inspect", name, check=True).stdout)[0]
    cid, rundir = info["Id"], Path(info["RuntimeDir"])
    # The probes see what is there while the job runs: rsbox (P0..P2), pasta (its pid
    # file is in the runtime directory, named by the container id), the directory.
    _wait("pasta", lambda: any("pasta" in p for p in _processes_mentioning(cid)))
    assert _processes_mentioning(name), "the probe does not see the job's rsbox"
    assert rundir.is_dir()

    assert _run("scancel", job).returncode == 0
    _wait("the job to end", lambda: _job_field(job, "JobState") == "CANCELLED")
    _wait("the job's processes to go", lambda: not _processes_mentioning(name, cid))
    assert not rundir.exists(), sorted(p.name for p in rundir.iterdir())
    assert name not in rsbox("ps", "-a", check=True).stdout
    # rsbox's mounts live in the container's namespaces only: none on the host.
    assert cid not in Path("/proc/self/mountinfo").read_text()
