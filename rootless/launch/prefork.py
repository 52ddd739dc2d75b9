"""Fork P1 before rsbox imports anything else.

P1, the FUSE server, spends most of a container's start-up importing trio and pyfuse3.
Forking it as the very first thing `rsbox run` does lets those imports run on the other
core while P0 parses the command line, opens the store and loads the seccomp filter. P1
then waits for the pickled `Launch` before it creates any namespace. If P0 gives up first
(bad flag, unknown image), P1 is killed, having done nothing but import.

This module imports only what the fork needs, so that the fork comes early.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import types
from collections.abc import Iterator

from rootless.launch.protocol import (
    FORWARDED_SIGNALS,
    SignalWakeup,
    die_with_parent,
    kill_quietly,
)


@contextlib.contextmanager
def lean_imports() -> Iterator[None]:
    """Skip two lookups that P1's imports make and nobody reads, on the start path of
    every container (measured, ~13 ms of P1's ~105 ms of imports):

    - pyfuse3 asks importlib.metadata for its own version (its __version__), which imports
      email, zipfile and csv and scans sys.path: it gets a stand-in that knows no version;
    - trio asks ctypes.util.find_library for libpthread to name its threads, which runs
      /sbin/ldconfig: it is told the soname, which glibc has kept for this.

    Both are undone on exit, for everything imported later."""
    import ctypes.util

    stub = types.ModuleType("importlib.metadata")

    class PackageNotFoundError(ModuleNotFoundError):
        pass

    def version(name: str) -> str:
        raise PackageNotFoundError(name)

    stub.PackageNotFoundError = PackageNotFoundError  # type: ignore[attr-defined]
    stub.version = version  # type: ignore[attr-defined]
    real = sys.modules.get("importlib.metadata")
    sys.modules["importlib.metadata"] = stub
    find_library = ctypes.util.find_library
    ctypes.util.find_library = lambda name: (
        "libpthread.so.0" if name == "pthread" else find_library(name)
    )
    try:
        yield
    finally:
        ctypes.util.find_library = find_library
        if real is None:
            del sys.modules["importlib.metadata"]
        else:
            sys.modules["importlib.metadata"] = real


class Helper:
    """P1 and the pipes between it and P0."""

    def __init__(self) -> None:
        self.used = False
        self.err_r, err_w = os.pipe2(os.O_CLOEXEC)  # P1..P3 -> P0: one JSON error line
        self.ready_r, ready_w = os.pipe2(os.O_CLOEXEC)  # P1 -> P0: "namespace made, map me"
        go_r, self.go_w = os.pipe2(os.O_CLOEXEC)  # P0 -> P1: "maps written"
        launch_r, self.launch_w = os.pipe2(os.O_CLOEXEC)  # P0 -> P1: the Launch
        p0 = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for fd in (self.err_r, self.ready_r, self.go_w, self.launch_w):
                os.close(fd)
            _p1(p0, launch_r, ready_w, go_r, err_w)
        for fd in (err_w, ready_w, go_r, launch_r):
            os.close(fd)
        self.pid = pid

    def close(self) -> None:
        for fd in (self.err_r, self.ready_r, self.go_w, self.launch_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def kill(self, sig: int) -> None:
        kill_quietly(self.pid, sig)

    def wait(self, wakeup: SignalWakeup | None = None) -> int:
        """P1's wait status, once it has ended (with `wakeup`, no signal waits for it)."""
        if wakeup is not None:
            pidfd = os.pidfd_open(self.pid)
            try:
                wakeup.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        return os.waitpid(self.pid, 0)[1]

    def abort(self) -> None:
        """P1 has done nothing but import (or is being torn down): kill and reap it."""
        kill_quietly(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.close()


def _p1(p0: int, launch_r: int, ready_w: int, go_r: int, err_w: int) -> None:

    die_with_parent(p0, signal.SIGKILL)
    for s in FORWARDED_SIGNALS:  # ignored until trio takes them over
        signal.signal(s, signal.SIG_IGN if s != signal.SIGWINCH else signal.SIG_DFL)
    # The imports ahead allocate much and free little: collecting during them is wasted
    # work (~15 ms of a container's start). p1.main turns it back on.
    gc.disable()
    from rootless.launch import p1
    from rootless.launch.protocol import child

    child(err_w, p1.main, p1.Pipes(launch_r, ready_w, go_r, err_w))
