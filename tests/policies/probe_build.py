"""Build the static seccomp probe (`probe.c`): shared by the policies and e2e tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PROBE_SOURCE = Path(__file__).with_name("probe.c")

# Every probe name the binary knows (kept in sync with probe.c; a test checks it).
DANGEROUS = (
    "mount",
    "umount2",
    "pivot_root",
    "unshare_user",
    "unshare_ns",
    "clone_newuser",
    "clone3",
    "setns",
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
)
ALLOWED = ("ioctl_tcgets", "getpid", "open_devnull", "fork", "pthread")
# Newer than the default profile: ENOSYS under it (x86_64 numbers).
NEWER = ("mseal",)
# The rest of probe.c's table, in its order.
NAMESPACES = (
    "unshare_pid",
    "unshare_net",
    "unshare_ipc",
    "unshare_uts",
    "unshare_cgroup",
    "unshare_time",
    "clone_newns",
    "clone_newpid",
    "clone_newnet",
    "clone_newipc",
    "clone_newuts",
    "clone_newcgroup",
)
SYSCALLS = (
    "socket_unix",
    "socket_inet",
    "socket_inet6",
    "socket_netlink",
    "socket_packet",
    "socket_alg",
    "socket_vsock",
    "socket_vsock_high",
    "personality_query",
    "personality_linux",
    "personality_linux32",
    "personality_no_aslr",
    "ptrace",
    "process_vm_readv",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "chroot",
    "sethostname",
    "syslog",
    "acct",
    "clock_settime",
    "settimeofday",
    "reboot",
    "swapon",
    "quotactl",
    "name_to_handle_at",
    "fanotify_init",
    "set_mempolicy",
    "mbind",
    "modify_ldt",
    "iopl",
    "uname",
    "getcwd",
    "stat_root",
    "setuid_self",
    "chown_self",
)
# Escape checks on files and fds: the launcher's masks refuse these, not seccomp.
FILES = (
    "proc_sys_write",
    "sysrq_write",
    "self_exe_write",
    "pid1_exe_write",
    "tmp_write",
    "kcore_read",
    "leaked_fds",
)
# ptrace/kill of the pid in $PROBE_PID.
TARGET = ("ptrace_target", "kill_target")
# Sealing the process tree (tests/e2e/test_seal.py): terminals, capabilities, --init.
# Not a battery to run blindly: `pause` never returns (it waits to be killed).
SEAL = (
    "pause",
    "dev_tty_open",
    "isatty_fd0",
    "isatty_fd1",
    "isatty_fd2",
    "tty_raw",
    "bridge_add",
    "net_admin_mtu",
    "ptrace_sibling",
    "orphan_zombies",
)
# Probes that take arguments (probe.c's second table): name -> how many follow it;
# clear_pdeathsig and daemon/new_session's children sleep until killed.
COMMANDS = {
    "tiocsti": 1,  # TEXT
    "tty_readback": 1,  # TEXT
    "clear_pdeathsig": 1,  # TAG
    "daemon": 1,  # TAG
    "new_session": 1,  # TAG
    "proc_leaks": 2,  # PID HEX[,HEX...] (hex-encoded needles)
    "ptrace_pid": 1,  # PID
    "watch_pids": 3,  # SECONDS SECRET CONTROL
    "abstract_connect": 1,  # NAME (of an abstract unix socket)
}
ALL = (*DANGEROUS, *ALLOWED, *NEWER, *NAMESPACES, *SYSCALLS, *FILES, *TARGET, *SEAL, *COMMANDS)

_CLONE = {"user": 0x10000000, "ns": 0x00020000, "pid": 0x20000000, "net": 0x40000000}
_CLONE |= {"ipc": 0x08000000, "uts": 0x04000000, "cgroup": 0x02000000, "time": 0x80}
_SIGCHLD = 17
_SOCKETS = {"unix": (1, 1), "inet": (2, 2), "inet6": (10, 2), "netlink": (16, 3)}
_SOCKETS |= {"packet": (17, 2), "alg": (38, 5), "vsock": (40, 1), "vsock_high": (2**32 + 40, 1)}
_PERSONAS = {"query": 0xFFFFFFFF, "linux": 0, "linux32": 8, "no_aslr": 0x0040000}

# The one syscall (and the arguments a profile may look at) whose verdict decides each
# probe's result, for comparing a compiled filter with a profile's meaning. Probes made of
# several filtered calls (fork, pthread, open+read, files) are not in it.
CALLS: dict[str, tuple[str, tuple[int, ...]]] = {
    **{f"unshare_{k}": ("unshare", (v,)) for k, v in _CLONE.items()},
    **{f"clone_new{k}": ("clone", (v | _SIGCHLD,)) for k, v in _CLONE.items() if k != "time"},
    **{f"socket_{k}": ("socket", (f, t, 0)) for k, (f, t) in _SOCKETS.items()},
    **{f"personality_{k}": ("personality", (v,)) for k, v in _PERSONAS.items()},
    "ioctl_tiocsti": ("ioctl", (3, 0x5412)),
    "ioctl_tiocsti_high": ("ioctl", (3, 2**32 | 0x5412)),
    "ioctl_tioclinux": ("ioctl", (3, 0x541C)),
    "ioctl_tcgets": ("ioctl", (3, 0x5401)),
    "stat_root": ("newfstatat", ()),
    "setuid_self": ("setuid", ()),
    "chown_self": ("fchown", ()),
    "io_uring_setup": ("io_uring_setup", ()),
    **{
        n: (n, ())
        for n in [
            "mount",
            "umount2",
            "pivot_root",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "init_module",
            "finit_module",
            "delete_module",
            "clone3",
            "getpid",
            "mseal",
            "ptrace",
            "process_vm_readv",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "chroot",
            "sethostname",
            "syslog",
            "acct",
            "clock_settime",
            "settimeofday",
            "reboot",
            "swapon",
            "quotactl",
            "name_to_handle_at",
            "fanotify_init",
            "set_mempolicy",
            "mbind",
            "modify_ldt",
            "iopl",
            "uname",
            "getcwd",
        ]
    },
}


def build_probe(outdir: Path) -> Path:
    """Compile probe.c with `gcc -static -O2` into `outdir`; return the binary's path.

    Raises RuntimeError (with gcc's output) if gcc is missing or the build fails.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: the seccomp probe cannot be built")
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / "seccomp-probe"
    proc = subprocess.run(
        [gcc, "-static", "-O2", "-Wall", "-Werror", "-pthread", "-o", str(out), str(PROBE_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the seccomp probe failed:\n{proc.stderr}")
    return out


def parse_output(text: str) -> dict[str, int]:
    """`name errno` lines -> {name: errno}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, num = line.partition(" ")
        out[name] = int(num)
    return out
