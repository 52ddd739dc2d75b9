"""The escape battery: what a process inside an rsbox container must not be able to do.

The static probe (tests/policies/probe.c) runs inside real containers. Three runs tell
apart who refused a call:

- `default`: every syscall check is refused (EPERM, ENOSYS for clone3);
- `default` with a *marker* errno (the same profile, its EPERM replaced by EHWPOISON, 133):
  every syscall check returns the marker, so the refusal is seccomp's and not the
  kernel's (an unprivileged user namespace gets EPERM from the kernel for some of these,
  e.g. open_by_handle_at, which needs CAP_DAC_READ_SEARCH in the initial namespace);
- `unconfined`: no filter, so every check gets the kernel's own answer, and the ones the
  kernel allows to root in a user namespace do succeed (0): the probe is able to escape
  where nothing stops it.

File and fd checks (/proc/sys, /proc/sysrq-trigger, /proc/kcore, /proc/self/exe, fds of
rsbox's) are the launcher's business, not seccomp's: they must be refused under both.

The attacks on the process tree around the container (exec as a target, the user's
terminal, capabilities, lifetime, --init) are in test_seal.py; the other syscall ABIs
(i386, x32) in test_abi.py.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import policies
from policies.profile import to_json_dict
from tests.e2e.conftest import Rsbox
from tests.policies.probe_build import parse_output

SYSCALL_ESCAPES = (
    "unshare_user",
    "unshare_ns",
    "unshare_pid",
    "unshare_net",
    "unshare_ipc",
    "unshare_uts",
    "unshare_cgroup",
    "unshare_time",
    "clone_newuser",
    "clone_newns",
    "clone_newpid",
    "clone_newnet",
    "clone_newipc",
    "clone_newuts",
    "clone_newcgroup",
    "clone3",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "init_module",
    "finit_module",
    "delete_module",
    "ioctl_tiocsti",
    "ioctl_tiocsti_high",
    "ioctl_tioclinux",
    "personality_no_aslr",
    "socket_vsock",
    "socket_vsock_high",
    "socket_alg",
)
FILE_ESCAPES = (
    "proc_sys_write",
    "sysrq_write",
    "kcore_read",
    "self_exe_write",
    "pid1_exe_write",
    "leaked_fds",
)
# What the kernel lets root in a user namespace do when no filter is in the way (the
# probe escapes for real; each is harmless: a child that exits, a key in the probe's own
# keyring, an fd that is closed).
KERNEL_ALLOWS = (
    "unshare_user",
    "unshare_ns",
    "unshare_pid",
    "unshare_net",
    "unshare_ipc",
    "unshare_uts",
    "unshare_cgroup",
    "unshare_time",
    "clone_newuser",
    "clone_newns",
    "clone_newpid",
    "clone_newnet",
    "clone_newipc",
    "clone_newuts",
    "clone_newcgroup",
    "clone3",
    "setns",
    "keyctl",
    "add_key",
    "userfaultfd",
    "personality_no_aslr",
)
MARKER = 133  # EHWPOISON: an errno no probed syscall returns by itself


@pytest.fixture(scope="module")
def marker_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = to_json_dict(policies.load_builtin("default"))
    doc["defaultErrnoRet"] = MARKER
    for rule in doc["syscalls"]:
        if rule.get("errnoRet") == errno.EPERM:
            rule["errnoRet"] = MARKER
    path = tmp_path_factory.mktemp("marker") / "default-marker.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o644)
    return path


def battery(
    rsbox: Rsbox,
    image: str,
    probe_dir: Path,
    policy: str,
    *names: str,
    userns: str = "auto",
    caps: tuple[str, ...] = (),
) -> dict[str, int]:
    res = rsbox.run(
        "--rm",
        "-v",
        f"{probe_dir}:/probe:ro",
        "--userns",
        userns,
        *(f"--cap-add={c}" for c in caps),
        "--security-opt",
        f"seccomp={policy}",
        image,
        "/probe/seccomp-probe",
        *names,
    )
    assert res.returncode == 0, res.stderr
    got = parse_output(res.stdout)
    assert list(got) == list(names)
    return got


def _refused(got: dict[str, int], names: tuple[str, ...], allowed_errnos: set[int]) -> dict:
    return {n: errno.errorcode.get(got[n], got[n]) for n in names if got[n] not in allowed_errnos}


def test_default_refuses_every_syscall_escape(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str
) -> None:
    got = battery(rsbox, busybox, probe_dir, "default", *SYSCALL_ESCAPES, userns=userns)
    assert got["clone3"] == errno.ENOSYS  # so that glibc falls back to clone
    assert _refused(got, SYSCALL_ESCAPES, {errno.EPERM, errno.ENOSYS}) == {}


def test_the_refusals_are_seccomps(
    rsbox: Rsbox, busybox: str, probe_dir: Path, marker_profile: Path
) -> None:
    got = battery(rsbox, busybox, probe_dir, str(marker_profile), *SYSCALL_ESCAPES)
    escapes = tuple(n for n in SYSCALL_ESCAPES if n != "clone3")
    assert _refused(got, escapes, {MARKER}) == {}


def test_unconfined_the_same_probe_escapes_where_the_kernel_lets_it(
    rsbox: Rsbox, busybox: str, probe_dir: Path
) -> None:
    # Every capability of the user namespace: nothing of ours stands in the way.
    got = battery(rsbox, busybox, probe_dir, "unconfined", *SYSCALL_ESCAPES, caps=("ALL",))
    assert {n: errno.errorcode.get(got[n], got[n]) for n in KERNEL_ALLOWS if got[n] != 0} == {}
    # The rest reach the kernel, which answers for itself (ENOENT for the absent mount
    # point, ENOTTY for TIOCSTI on /dev/null, ENOSYS without kexec, EAFNOSUPPORT, ...).
    assert got["mount"] == errno.ENOENT and got["ioctl_tiocsti_high"] == errno.ENOTTY


def test_without_sys_admin_the_kernel_refuses_namespaces_even_unconfined(
    rsbox: Rsbox, busybox: str, probe_dir: Path
) -> None:
    """Docker's capability set is a second wall behind seccomp: with no filter at all, the
    namespace escapes that need CAP_SYS_ADMIN get EPERM from the kernel itself (a new
    user namespace needs no capability: it is allowed, as the control above shows)."""
    got = battery(rsbox, busybox, probe_dir, "unconfined", *SYSCALL_ESCAPES)
    needs_admin = [n for n in KERNEL_ALLOWS if n.startswith(("unshare_", "clone_new", "setns"))]
    needs_admin = [n for n in needs_admin if n not in ("unshare_user", "clone_newuser")]
    assert {n: got[n] for n in needs_admin if got[n] != errno.EPERM} == {}
    assert got["unshare_user"] == 0


@pytest.mark.parametrize("policy", ["default", "unconfined"])
def test_files_and_fds_of_the_host_stay_out_of_reach(
    rsbox: Rsbox, busybox: str, probe_dir: Path, policy: str
) -> None:
    got = battery(rsbox, busybox, probe_dir, policy, *FILE_ESCAPES, "tmp_write")
    assert got["tmp_write"] == 0  # control: the same open() where writing is allowed
    assert {n: got[n] for n in FILE_ESCAPES if got[n] == 0} == {}
    assert got["leaked_fds"] == errno.EBADF  # no fd beyond 0-2 in the container's pid 1


def test_leaked_fd_check_can_fire(rsbox: Rsbox, busybox: str, probe_dir: Path) -> None:
    # Control for the check above: an fd the container opens itself is seen.
    res = rsbox.run(
        "--rm",
        "-v",
        f"{probe_dir}:/probe:ro",
        busybox,
        "sh",
        "-c",
        "exec 7</etc/passwd; exec /probe/seccomp-probe leaked_fds",
    )
    assert parse_output(res.stdout) == {"leaked_fds": 0}, res.stderr


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _fuse_server(p0: int) -> int:
    """P1: the child of the CLI, or of the warm P0 done for it (then it carries the CLI's
    command line: rootless.launch.warmd.retitle), that lives in a user namespace of its
    own, made by itself (its parent is in ours), with a child (P2)."""
    own = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Read each time: seen empty right after the CLI started.
        cmdline = Path(f"/proc/{p0}/cmdline").read_bytes().rstrip(b"\0")
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == p0:
                continue
            pid = int(entry)
            try:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if (
                    parent != p0
                    and Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0") != cmdline
                ):
                    continue
                if (
                    os.readlink(f"/proc/{pid}/ns/user") != own
                    and os.readlink(f"/proc/{parent}/ns/user") == own
                    and _children(pid)
                ):
                    return pid
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)
    raise AssertionError("the FUSE server (P1) did not show up")


def test_the_fuse_server_cannot_be_seen_signalled_or_traced(
    rsbox: Rsbox, busybox: str, probe_dir: Path, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    share.chmod(0o777)
    script = (
        "while [ ! -s /share/pid ]; do sleep 0.05; done; "
        "export PROBE_PID=$(cat /share/pid); "
        "/probe/seccomp-probe kill_target ptrace_target; "
        "PROBE_PID=1 /probe/seccomp-probe kill_target | sed s/kill_target/control_kill_pid1/; "
        "echo pids $(ls /proc | grep '^[0-9]*$')"
    )
    proc = subprocess.Popen(
        rsbox.argv(
            "run",
            "--rm",
            "-v",
            f"{probe_dir}:/probe:ro",
            "-v",
            f"{share}:/share",
            "--security-opt",
            "seccomp=unconfined",  # seccomp is not what protects P1 here: the pid namespace is
            busybox,
            "sh",
            "-c",
            script,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        p1 = _fuse_server(proc.pid)
        (share / "pid.tmp").write_text(f"{p1}\n")
        (share / "pid.tmp").rename(share / "pid")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    # ESRCH, not EPERM: P1 is not in the container's pid namespace at all.
    assert lines["kill_target"] == str(errno.ESRCH)
    assert lines["ptrace_target"] == str(errno.ESRCH)
    assert lines["control_kill_pid1"] == "0"  # the same probe does signal what it can see
    pids = [int(p) for p in lines["pids"].split()]
    assert p1 not in pids and max(pids) < 100  # only the container's own processes
