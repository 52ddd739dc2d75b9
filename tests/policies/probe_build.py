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
