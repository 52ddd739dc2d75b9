"""`rsbox run` end to end: the real CLI, a real FUSE rootfs, real namespaces."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rootless.store import Store
from tests.e2e.conftest import Rsbox, layer_dirs, processes_of
from tests.images import make_busybox_rootfs


def _tree_digest(paths: list[Path]) -> dict[str, bytes]:
    out = {}
    for top in paths:
        for dirpath, _dirs, files in os.walk(top):
            for f in files:
                p = Path(dirpath, f)
                out[str(p)] = p.read_bytes() if not p.is_symlink() else os.readlink(p).encode()
    return out


def test_reads_a_file_from_the_image(rsbox: Rsbox, busybox: str, userns: str) -> None:
    res = rsbox.run("--rm", "--userns", userns, busybox, "cat", "/etc/lower.txt")
    assert (res.returncode, res.stdout) == (0, "from the image\n"), res.stderr


def test_layers_whiteouts_and_opaque_dirs(rsbox: Rsbox, layered: str) -> None:
    res = rsbox.run(
        "--rm",
        layered,
        "sh",
        "-c",
        "cat /top.txt; ls /opaque; test -e /etc/removeme && echo present || echo hidden",
    )
    assert res.stdout.split() == ["top", "new", "hidden"], res.stderr


def test_an_image_layered_by_umoci(rsbox: Rsbox, umoci_image: str) -> None:
    res = rsbox.run(
        "--rm",
        umoci_image,
        "sh",
        "-c",
        "cat /added.txt; test -e /etc/gone.txt && echo present || echo hidden",
    )
    assert res.stdout.split() == ["added", "hidden"], res.stderr


def test_writes_land_in_the_container_layer_only(rsbox: Rsbox, busybox: str) -> None:
    before = _tree_digest(layer_dirs(rsbox.root))
    res = rsbox.run(
        "--name",
        "writer",
        busybox,
        "sh",
        "-c",
        "echo changed > /etc/lower.txt && echo new > /newfile && rm /bin/cat && mkdir -p /a/b",
    )
    assert res.returncode == 0, res.stderr
    assert _tree_digest(layer_dirs(rsbox.root)) == before
    upper = Store.open(rsbox.root).container("writer").upper
    assert (upper / "etc" / "lower.txt").read_text() == "changed\n"
    assert (upper / "newfile").read_text() == "new\n"
    assert (upper / "bin" / ".wh.cat").exists()
    assert (upper / "a" / "b").is_dir()


def test_containers_do_not_see_each_others_writes(rsbox: Rsbox, busybox: str) -> None:
    first = rsbox.run("--rm", busybox, "sh", "-c", "echo mine > /etc/lower.txt; cat /etc/lower.txt")
    second = rsbox.run("--rm", busybox, "cat", "/etc/lower.txt")
    assert first.stdout == "mine\n"
    assert second.stdout == "from the image\n"


def test_command_is_pid_1_and_host_processes_are_invisible(
    rsbox: Rsbox, busybox: str, userns: str
) -> None:
    res = rsbox.run(
        "--rm", "--userns", userns, busybox, "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"
    )
    pid, count = res.stdout.split()
    assert pid == "1"
    # sh, ls and grep: nothing from the host (which has dozens of processes)
    assert int(count) <= 3
    assert len([p for p in os.listdir("/proc") if p.isdigit()]) > 10


def test_hostname_default_and_flag(rsbox: Rsbox, busybox: str) -> None:
    assert rsbox.run("--rm", "--hostname", "box1", busybox, "hostname").stdout == "box1\n"
    res = rsbox.run(
        "--rm", busybox, "sh", "-c", "hostname; cat /etc/hostname; grep -c $(hostname) /etc/hosts"
    )
    name, file_name, in_hosts = res.stdout.split()
    assert len(name) == 12 and name == file_name and in_hosts == "1"
    assert name != os.uname().nodename


def test_network_none_has_only_loopback(rsbox: Rsbox, busybox: str, userns: str) -> None:
    res = rsbox.run(
        "--rm",
        "--userns",
        userns,
        "--network",
        "none",
        busybox,
        "sh",
        "-c",
        "ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1",
    )
    assert res.stdout.split() == ["lo", "lo"], res.stderr
    # Control: the same probe lists the host's interfaces, asked for explicitly.
    host = rsbox.run(
        "--rm", "--network", "host", busybox, "sh", "-c", "tail -n +3 /proc/net/dev | wc -l"
    )
    assert int(host.stdout) == len(os.listdir("/sys/class/net"))


@pytest.mark.parametrize(
    ("cmd", "code", "message"),
    [
        (["true"], 0, None),
        (["sh", "-c", "exit 3"], 3, None),
        (["sh", "-c", "kill -TERM $$; sleep 5"], 0, None),  # pid 1 ignores unhandled signals
        (["nosuchcommand"], 127, "executable file not found"),
        (["/etc/passwd"], 126, "permission denied"),
    ],
)
def test_exit_codes(
    rsbox: Rsbox, busybox: str, cmd: list[str], code: int, message: str | None
) -> None:
    res = rsbox.run("--rm", busybox, *cmd)
    assert res.returncode == code, res.stderr
    if message:
        assert res.stderr.startswith("rsbox: error: ") and message in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1


def test_unknown_image_is_125_with_hint(rsbox: Rsbox) -> None:
    res = rsbox.run("--rm", "no-such-image", "true")
    assert res.returncode == 125
    assert res.stderr.startswith("rsbox: error: ") and "hint:" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_flag_is_125(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--network", "bridge", busybox, "true")
    assert res.returncode == 125 and "unsupported network mode" in res.stderr


def test_env_workdir_entrypoint(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run(
        "--rm",
        "-e",
        "A=1",
        "-e",
        "B",
        "-w",
        "/made/here",
        busybox,
        "sh",
        "-c",
        'echo "$A-${B:-unset}-$(pwd)-$HOME"',
    )
    assert res.stdout == "1-unset-/made/here-/root\n", res.stderr
    res = rsbox.run("--rm", "--entrypoint", "echo", busybox, "via", "entrypoint")
    assert res.stdout == "via entrypoint\n"


def test_user_flag(rsbox: Rsbox, busybox: str, full_map: bool) -> None:
    res = rsbox.run(
        "--rm", "-u", "app", busybox, "sh", "-c", "id -u; id -g; echo x > /tmp/f && ls -ln /tmp/f"
    )
    if full_map:
        lines = res.stdout.splitlines()
        assert lines[:2] == ["1000", "1000"], res.stderr
        assert lines[2].split()[2:4] == ["1000", "1000"]
    else:
        assert res.returncode == 125 and "subuid" in res.stderr
    res = rsbox.run("--rm", "--userns", "single", "-u", "1000", busybox, "id")
    assert res.returncode == 125 and "not mapped" in res.stderr


def test_volumes_rw_and_ro(rsbox: Rsbox, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("host\n")
    res = rsbox.run(
        "--rm",
        "-v",
        f"{tmp_path}:/data",
        busybox,
        "sh",
        "-c",
        "cat /data/in.txt; echo back > /data/out.txt",
    )
    assert res.stdout == "host\n", res.stderr
    assert (tmp_path / "out.txt").read_text() == "back\n"
    res = rsbox.run(
        "--rm", "-v", f"{tmp_path}:/data:ro", busybox, "sh", "-c", "echo x > /data/out2.txt"
    )
    assert res.returncode != 0 and "Read-only" in res.stderr
    assert not (tmp_path / "out2.txt").exists()


def test_stdin_only_with_i(rsbox: Rsbox, busybox: str) -> None:
    assert rsbox.run("--rm", "-i", busybox, "cat", input="hello\n").stdout == "hello\n"
    assert rsbox.run("--rm", busybox, "cat", input="hello\n").stdout == ""


def test_tty(rsbox: Rsbox, busybox: str) -> None:
    master, slave = os.openpty()
    proc = subprocess.Popen(
        rsbox.argv("run", "--rm", "-t", busybox, "sh", "-c", "tty; test -t 1 && echo isatty"),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 0
    assert b"/dev/pts/0" in out and b"isatty" in out


def test_devices_proc_and_sys(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run(
        "--rm",
        busybox,
        "sh",
        "-c",
        "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; "
        "ls /dev/pts/ptmx /dev/shm >/dev/null && echo pts-shm-ok; "
        "touch /sys/x 2>/dev/null || echo sys-ro; cat /proc/1/comm; true",
    )
    assert res.stdout.split() == ["4", "null-ok", "pts-shm-ok", "sys-ro", "sh"], res.stderr


def test_rm_removes_the_container_and_keeps_it_otherwise(rsbox: Rsbox, busybox: str) -> None:
    rsbox.run("--name", "kept", busybox, "true", check=True)
    assert Store.open(rsbox.root).container("kept").upper.exists()
    before = set((rsbox.root / "containers").iterdir())
    rsbox.run("--rm", busybox, "true", check=True)
    assert set((rsbox.root / "containers").iterdir()) == before


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 20) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
    raise AssertionError(f"{text!r} not seen")


def test_sigterm_reaches_the_command(rsbox: Rsbox, busybox: str) -> None:
    proc = subprocess.Popen(
        rsbox.argv(
            "run",
            "--rm",
            busybox,
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 7 and "got-term" in out


def test_sigkilled_rsbox_leaves_nothing_behind(rsbox: Rsbox, busybox: str, marker: str) -> None:
    proc = subprocess.Popen(
        rsbox.argv("run", "--rm", busybox, "sh", "-c", f"echo ready; sleep 1000; echo {marker}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_line(proc, "ready")
    assert len(processes_of(marker)) >= 3  # the CLI, the FUSE server, the container, ...
    proc.kill()
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while processes_of(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(marker) == []
    assert str(rsbox.root) not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--memory", "99999999999999999999999g"), "too large"),
        (("-u", "99999999"), "outside the container's ids"),
        (("--hostname", "a b"), "invalid hostname"),
        (("--hostname", "a/b"), "invalid hostname"),
        (("--cap-add", "NO_SUCH"), "unknown capability"),
        (("--network", "host:-T,80"), "takes no options"),
    ],
)
def test_bad_input_is_one_line_and_125(
    rsbox: Rsbox, busybox: str, flags: tuple[str, ...], words: str
) -> None:
    res = rsbox.run("--rm", *flags, busybox, "true")
    assert res.returncode == 125, res.stderr
    assert res.stderr.startswith("rsbox: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert words in res.stderr and "hint:" in res.stderr


def test_the_containers_etc_files_and_cgroups_show_nothing_of_the_host(
    rsbox: Rsbox, busybox: str
) -> None:
    """mountinfo names no path of the user's store, and the host's cgroup mounts bound
    with /sys (the host network keeps the host's sysfs) are covered read-only."""
    res = rsbox.run(
        "--rm",
        "--network",
        "host",
        busybox,
        "sh",
        "-c",
        "cat /proc/self/mountinfo; ls /sys/fs/cgroup | wc -l; touch /sys/fs/cgroup/x",
    )
    assert str(rsbox.root) not in res.stdout
    assert " /etc/hosts " in res.stdout  # control: the binds are there, from a tmpfs
    assert res.stdout.splitlines()[-1] == "0"
    assert "Read-only file system" in res.stderr


def test_an_image_whose_passwd_is_dev_zero_starts_in_a_moment(rsbox: Rsbox, tmp_path: Path) -> None:
    """rsbox reads the image's /etc/passwd and /etc/group to resolve -u: regular files
    only, bounded. A hostile image that points them at /dev/zero must not make rsbox
    read until memory runs out."""
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "etc").mkdir(exist_ok=True)
    for name in ("passwd", "group"):
        (rootfs / "etc" / name).unlink(missing_ok=True)
        (rootfs / "etc" / name).symlink_to("/dev/zero")
    rsbox("import", str(rootfs), "zero-passwd", check=True)
    # The timeouts are the guard against a hang (a read of /dev/zero never ends).
    # (busybox's own `id` would read /dev/zero for ever: the image's problem, not ours.)
    res = rsbox.run("--rm", "zero-passwd", "echo", "started", timeout=30)
    assert (res.returncode, res.stdout) == (0, "started\n"), res.stderr
    named = rsbox.run("--rm", "-u", "app", "zero-passwd", "true", timeout=30)
    assert named.returncode == 125 and named.stderr.count("\n") == 1
    assert "unable to find user app" in named.stderr
    cid = rsbox.run("-d", "zero-passwd", "sleep", "60", check=True).stdout.strip()
    try:
        by_exec = rsbox("exec", "-u", "app", cid, "true", timeout=30)
        assert by_exec.returncode == 125 and "unable to find user app" in by_exec.stderr
    finally:
        rsbox("rm", "-f", cid)
