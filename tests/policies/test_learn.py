"""Learn mode without the launcher: a child installs the learning filter and sends its
listener fd to us; we supervise with trio; the learned profile then runs the same
workload, and refuses a syscall the workload never made."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import policies
from policies.learn import Recorder
from policies.notify import receive_listener, supervise

HERE = Path(__file__).parent
CHILD = HERE / "learn_child.py"
INSTALLER = HERE / "seccomp_install.py"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"

BUSYBOX_WORK = [
    BUSYBOX,
    "sh",
    "-c",
    "echo learned > $D/out && cat $D/out && ls $D >/dev/null && stty -a </dev/null 2>/dev/null;"
    " wc -c < $D/out",
]
PY_WORK = [
    "/usr/bin/python3",
    "-c",
    "import json, socket, threading, os, sys;"
    "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join();"
    "a, b = socket.socketpair(); a.sendall(b'x'); print(b.recv(1).decode());"
    "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.close();"
    "print(json.dumps(sorted(os.listdir(os.environ['D']))));"
    "sys.argv[1:] and os.mkdir(os.path.join(os.environ['D'], 'new'))",
]


async def learn(argv: list[str], env: dict[str, str]) -> tuple[Recorder, str]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    recorder = Recorder()
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(CHILD), str(child.fileno()), *argv],
        pass_fds=[child.fileno()],
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
    )
    child.close()
    out = b""
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            fd = await receive_listener(parent)
        await nursery.start(supervise, fd, recorder)
        assert proc.stdout is not None
        async for chunk in proc.stdout:
            out += chunk
        await proc.wait()  # reaping the child is what lets the listener report POLLHUP
    parent.close()
    assert proc.returncode == 0
    return recorder, out.decode()


def run_under(
    profile: dict[str, object], argv: list[str], env: dict[str, str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    bpf = tmp / "learned.bpf"
    program = policies.compile_profile(policies.from_json_dict(profile))
    assert program is not None
    bpf.write_bytes(program)
    return subprocess.run(
        [sys.executable, str(INSTALLER), str(bpf), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.parametrize("workload", ["busybox", "python"])
async def test_learned_profile_runs_the_workload_and_nothing_else(
    workload: str, tmp_path: Path
) -> None:
    argv = BUSYBOX_WORK if workload == "busybox" else PY_WORK
    work = tmp_path / "work"  # the workload's directory; the profile is written beside it
    work.mkdir()
    env = {"D": str(work)}
    recorder, out = await learn(argv, env)
    profile = recorder.to_profile()
    names = set(profile["syscalls"][0]["names"])
    assert {"execve", "openat", "write", "exit_group"} <= names
    assert "mkdir" not in names and "mount" not in names
    assert recorder.unknown == set()
    if workload == "python":
        assert recorder.socket_families == {10} and "socketpair" in names  # AF_INET6
        assert recorder.clone_ns_flags <= {0} and names & {"clone", "clone3"}  # the thread
    (tmp_path / "learned.json").write_text(json.dumps(profile))
    assert policies.load_file(tmp_path / "learned.json").warnings == ()

    again = run_under(profile, argv, env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == out  # same workload, same output, under the learned profile

    if workload == "python":
        # One syscall more (mkdir): refused by the learned profile ...
        extra = run_under(profile, [*argv, "mkdir"], env, tmp_path)
        assert extra.returncode != 0 and "PermissionError: [Errno 1]" in extra.stderr
        assert not (work / "new").exists()
        # ... and by nothing else: unfiltered, the same command works.
        free = subprocess.run([*argv, "mkdir"], env={**os.environ, **env}, check=False)
        assert free.returncode == 0 and (work / "new").is_dir()
    else:
        extra = run_under(profile, [BUSYBOX, "mkdir", str(work / "new")], env, tmp_path)
        assert extra.returncode != 0 and not (work / "new").exists()
        assert os.strerror(errno.EPERM) in extra.stderr


def test_recorder_conditions_ioctl_socket_clone() -> None:
    import pyseccomp

    r = Recorder()
    x64 = int(pyseccomp.Arch.X86_64)
    r.record(x64, 16, [3, 2**32 | 0x5401, 0, 0, 0, 0])  # ioctl TCGETS, high bits ignored
    r.record(x64, 41, [2, 1, 0, 0, 0, 0])  # socket AF_INET
    r.record(x64, 56, [0x10000000 | 17, 0, 0, 0, 0, 0])  # clone CLONE_NEWUSER|SIGCHLD
    r.record(x64, 39, [0] * 6)  # getpid
    p = r.to_profile()
    rules = {r["names"][0]: r for r in p["syscalls"][1:]}
    assert "getpid" in p["syscalls"][0]["names"]
    assert rules["ioctl"]["args"][0] == {
        "index": 1, "value": 0xFFFFFFFF, "valueTwo": 0x5401, "op": "SCMP_CMP_MASKED_EQ"
    }  # fmt: skip
    assert rules["socket"]["args"][0]["valueTwo"] == 2
    assert rules["clone"]["args"][0]["valueTwo"] == 0x10000000
