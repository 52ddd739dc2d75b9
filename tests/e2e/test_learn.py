"""`rsbox run --seccomp-learn`: learn a profile, enforce it, and see what it leaves out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox
from tests.images import make_busybox_rootfs

BUSYBOX_JOB = "echo hi; ls / >/dev/null; cat /etc/passwd | wc -l; sleep 0.1"
PYTHON_JOB = (
    "import json, hashlib, tempfile, os; "
    "d = tempfile.mkdtemp(); p = os.path.join(d, 'x.json'); "
    "open(p, 'w').write(json.dumps({'h': hashlib.sha256(b'rsbox').hexdigest()})); "
    "print(json.load(open(p))['h'][:12])"
)


@pytest.fixture(scope="module")
def python_image(rsbox: Rsbox, tmp_path_factory: pytest.TempPathFactory) -> str:
    """busybox plus the host's merged /usr (bound read-only at run time) for python3."""
    rootfs = make_busybox_rootfs(tmp_path_factory.mktemp("py") / "rootfs")
    for d in ("usr", "tmp", "etc"):
        (rootfs / d).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    for link in ("lib", "lib64"):
        if not (rootfs / link).exists():
            os.symlink(f"usr/{link}", rootfs / link)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    rsbox("import", str(rootfs), "learn-python", check=True)
    return "learn-python"


def _learn(rsbox: Rsbox, out: Path, *args: str) -> tuple[str, dict[str, object]]:
    res = rsbox.run("--rm", "--seccomp-learn", str(out), *args)
    assert res.returncode == 0, res.stderr
    return res.stdout, json.loads(out.read_text())


def _names(profile: dict[str, object]) -> set[str]:
    rules = profile["syscalls"]
    assert isinstance(rules, list)
    return {n for r in rules for n in r["names"] if r["action"] == "SCMP_ACT_ALLOW"}


def test_busybox_workload(rsbox: Rsbox, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "busybox.json"
    learned_output, profile = _learn(rsbox, out, busybox, "sh", "-c", BUSYBOX_JOB)
    names = _names(profile)
    assert {"execve", "getdents64", "write", "exit_group"} <= names
    assert "mkdir" not in names and "mount" not in names
    # The workload runs under what it taught us, with the same output ...
    res = rsbox.run("--rm", "--security-opt", f"seccomp={out}", busybox, "sh", "-c", BUSYBOX_JOB)
    assert (res.returncode, res.stdout) == (0, learned_output), res.stderr
    # ... and a call it never made is refused, although the default policy allows it.
    probe = "mkdir /tmp/made && echo made"
    res = rsbox.run("--rm", "--security-opt", f"seccomp={out}", busybox, "sh", "-c", probe)
    assert res.returncode != 0 and "Operation not permitted" in res.stderr
    assert rsbox.run("--rm", busybox, "sh", "-c", probe).stdout == "made\n"


def test_python_workload(rsbox: Rsbox, python_image: str, tmp_path: Path) -> None:
    out = tmp_path / "python.json"
    usr = ("-v", "/usr:/usr:ro")
    learned_output, profile = _learn(rsbox, out, *usr, python_image, "python3", "-c", PYTHON_JOB)
    assert len(learned_output.strip()) == 12
    assert "mmap" in _names(profile) and "socket" not in _names(profile)
    res = rsbox.run(
        "--rm", "--security-opt", f"seccomp={out}", *usr, python_image, "python3", "-c", PYTHON_JOB
    )
    assert (res.returncode, res.stdout) == (0, learned_output), res.stderr
    socket_job = "import socket; socket.socket(); print('socket')"
    res = rsbox.run(
        "--rm", "--security-opt", f"seccomp={out}", *usr, python_image, "python3", "-c", socket_job
    )
    assert res.returncode != 0 and "Operation not permitted" in res.stderr
    res = rsbox.run("--rm", *usr, python_image, "python3", "-c", socket_job)
    assert res.stdout == "socket\n", res.stderr


def test_learning_excludes_a_policy_and_needs_a_directory(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    res = rsbox.run(
        "--rm",
        "--seccomp-learn",
        str(tmp_path / "o.json"),
        "--security-opt",
        "seccomp=unconfined",
        busybox,
        "true",
    )
    assert res.returncode == 125 and "replaces the seccomp policy" in res.stderr
    res = rsbox.run("--rm", "--seccomp-learn", str(tmp_path / "no" / "o.json"), busybox, "true")
    assert res.returncode == 125 and "no such directory" in res.stderr
