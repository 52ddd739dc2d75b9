"""A running container as `exec` sees it without the store: is it running, which pids
are its monitor and its pid 1 (from the runtime directory and /proc; rootless.lifecycle
explains the lock), and the names of the files its launch saved for `exec`.

Strings, not pathlib, and no other import: pathlib alone costs `exec` ~5 ms of CPU under
load (rootless.commands.exec). rootless.lifecycle re-exports these for everyone else.
"""

from __future__ import annotations

import fcntl
import os
import time

# In the container's directory, written at every launch (run, start) for `exec`:
BPF_NAME = "seccomp.bpf"  # the filter pid 1 got
PROCESS_NAME = "process.json"  # the rest of the process pid 1 became (become.Process)


def runtime_base() -> str:
    """$XDG_RUNTIME_DIR/rsbox when it is usable, else /tmp/rsbox-<uid>."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return os.path.join(xdg, "rsbox")
    return f"/tmp/rsbox-{os.getuid()}"


def monitor_pid(cid: str) -> int | None:
    """The monitor's pid while it holds its lock (0 if it has not written it), else
    None."""
    path = os.path.join(runtime_base(), cid, "monitor.lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # Held: the monitor writes its pid right after taking the lock.
            for _ in range(100):
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                if text.isdigit() and int(text) > 1:
                    return int(text)
                time.sleep(0.01)
            return 0  # running, pid unknown
        return None
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            text = f.read()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def container_pid(monitor: int) -> int | None:
    """The host pid of the container's pid 1: the child (P3) of the monitor's child (P2)."""
    for p2 in children(monitor):
        for p3 in children(p2):
            return p3
    return None
