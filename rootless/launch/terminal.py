"""Terminals: the container's own pty, and the user's terminal in raw mode while relayed.

A container never gets the user's terminal (see become.py). With -t it gets a pty of its
own devpts instance (mounted `newinstance` in /dev/pts by p3): the master stays with
rsbox, which copies it to and from the user's terminal, set raw meanwhile so that the
container's line discipline, not ours, handles ^C and echo.
"""

from __future__ import annotations

import fcntl
import os
import sys

from rootless.record import Record

TYPE_CHECKING = False  # `exec` imports this module: no typing (rootless.record)
if TYPE_CHECKING:
    from typing import Any

# <asm-generic/ioctls.h>; Python's termios module lacks them. Neither termios nor struct
# is imported at the top: `exec` and every shim import this module, and the two cost
# ~0.5 ms of their start (a terminal's P0 imports termios when it needs it).
_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431
_INT = 4  # bytes of the C int these ioctls read and write


class Stdio(Record):
    """The container's fds 0-2 and what rsbox copies for them."""

    fds: tuple[int, int, int]  # what the container's process gets as 0, 1, 2
    theirs: list[int]  # our copies to close once the child has its own
    inputs: list[tuple[int, int]]  # (user's fd, pipe in)
    outputs: list[tuple[int, int]]  # (pipe out, user's fd)
    logs: tuple[int, int, int] | None = None  # detached: (stdout, stderr, log file)


def relayed_stdio(tty: bool, interactive: bool) -> Stdio:
    """The user's fds as they are (files, pipes, sockets: as runc and crun pass them),
    but a terminal never: it is replaced by a pipe, and rsbox copies. Without -i stdin is
    /dev/null; with -t the container's pty takes 0-2 later, so /dev/null until then."""
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    if tty:
        return Stdio((devnull, devnull, devnull), [devnull], [], [])
    fds: list[int] = []
    stdio = Stdio((0, 1, 2), [devnull], [], [])
    for fd in (0, 1, 2):
        if fd == 0 and not interactive:
            fds.append(devnull)
        elif not os.isatty(fd):
            fds.append(fd)
        elif fd == 0:
            r, w = os.pipe2(os.O_CLOEXEC)
            stdio.inputs.append((0, w))
            stdio.theirs.append(r)
            fds.append(r)
        else:
            r, w = os.pipe2(os.O_CLOEXEC)
            stdio.outputs.append((r, fd))
            stdio.theirs.append(w)
            fds.append(w)
    return stdio._replace(fds=(fds[0], fds[1], fds[2]))


def open_pty(root: str) -> tuple[int, int]:
    """(master, slave) of a new pty of the devpts instance under `root` (the container's
    rootfs before pivot_root, or "/" after joining its mount namespace)."""
    master = os.open(os.path.join(root, "dev/pts/ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, bytes(_INT))
    n = int.from_bytes(fcntl.ioctl(master, _TIOCGPTN, bytes(_INT)), sys.byteorder)
    slave = os.open(os.path.join(root, f"dev/pts/{n}"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave


class raw_terminal:  # used as a function: `with raw_terminal(on):`
    """The user's terminal (our stdin) in raw mode while a pty is relayed to it. A class,
    not contextlib.contextmanager: contextlib (with functools and collections) costs
    `exec` and every environment shim ~3 ms of start (rootless.record)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.saved: list[Any] | None = None

    def __enter__(self) -> None:
        if self.enabled and os.isatty(0):
            import termios  # P0's, on the host: see _TIOCGPTN
            import tty

            self.saved = termios.tcgetattr(0)
            tty.setraw(0)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
