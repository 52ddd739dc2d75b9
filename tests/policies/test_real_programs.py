"""Ordinary programs keep working under the default profile (installed for real)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import policies

INSTALLER = Path(__file__).with_name("seccomp_install.py")

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'

PY_SCRIPT = """
import os, socket, subprocess, tempfile, threading, json, hashlib
t = threading.Thread(target=lambda: None); t.start(); t.join()
a, b = socket.socketpair(); a.sendall(b"x"); assert b.recv(1) == b"x"
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "f"); open(p, "w").write("x"); os.chmod(p, 0o600); os.rename(p, p + "2")
assert subprocess.run(["true"]).returncode == 0
print(json.dumps(hashlib.sha256(b"").hexdigest()[:4]))
"""


@pytest.fixture(scope="module")
def default_filter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    program = policies.compile_profile(policies.load_builtin("default"))
    assert program is not None
    out = tmp_path_factory.mktemp("bpf") / "default.bpf"
    out.write_bytes(program)
    return out


def confined(bpf: Path, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INSTALLER), str(bpf), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "LC_ALL": "C"},
    )


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":  # setup.sh installs it: missing is a failure
            pytest.fail(f"{tool} not installed (setup.sh PACKAGES)")
        pytest.skip(f"{tool} not installed")
    return path


def test_python(default_filter: Path, tmp_path: Path) -> None:
    proc = confined(default_filter, [sys.executable, "-c", PY_SCRIPT], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '"e3b0"'


def test_busybox_sh(default_filter: Path, tmp_path: Path) -> None:
    busybox = need("busybox")
    script = "mkdir d && echo hi > d/f && cat d/f | wc -c && ls -la d >/dev/null && sleep 0"
    proc = confined(default_filter, [busybox, "sh", "-c", script], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"


def test_git(default_filter: Path, tmp_path: Path) -> None:
    git = need("git")
    script = (
        f"{git} init -q r && cd r && echo x > f && {git} add f && "
        f"{git} -c user.name=t -c user.email=t@t commit -qm m && {git} log --oneline | wc -l"
    )
    proc = confined(default_filter, ["/bin/sh", "-c", script], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_gcc(default_filter: Path, tmp_path: Path) -> None:
    gcc = need("gcc")
    (tmp_path / "hello.c").write_text(HELLO_C)
    proc = confined(
        default_filter, ["/bin/sh", "-c", f"{gcc} -O2 -o hello hello.c && ./hello"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hello"


def test_node_and_its_test_runner(default_filter: Path, tmp_path: Path) -> None:
    node = need("node")
    (tmp_path / "t.test.js").write_text(
        "const test = require('node:test'); const assert = require('node:assert');\n"
        "const { execFileSync } = require('node:child_process');\n"
        "test('spawn', () => assert.equal(execFileSync('/bin/echo', ['ok']).toString(), 'ok\\n'));\n"
        "test('fs', async () => { await require('node:fs/promises').writeFile('f', 'x'); });\n"
    )
    proc = confined(default_filter, [node, "--test", "t.test.js"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pass 2" in proc.stdout


def test_strace(default_filter: Path, tmp_path: Path) -> None:
    strace = need("strace")
    proc = confined(
        default_filter, [strace, "-f", "-qq", "-e", "trace=mkdir", "/bin/mkdir", "d"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split() == ['mkdir("d",', "0777)", "=", "0"]


def test_gdb(default_filter: Path, tmp_path: Path) -> None:
    gdb = need("gdb")
    (tmp_path / "hello.c").write_text(HELLO_C)
    subprocess.run(["gcc", "-g", "-o", "hello", "hello.c"], cwd=tmp_path, check=True)
    argv = [gdb, "-q", "-batch", "-ex", "break main", "-ex", "run", "-ex", "bt", "./hello"]
    proc = confined(default_filter, argv, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Breakpoint 1, main" in proc.stdout and "#0  main" in proc.stdout
