"""Terminals: the container's own pty, and the user's terminal in raw mode while relayed.

A container never gets the user's terminal (see become.py). With -t it gets a pty of its
own devpts instance (mounted `newinstance` in /dev/pts by p3): the master stays with
rsbox, which copies it to and from the user's terminal, set raw meanwhile so that the
container's line discipline, not ours, handles ^C and echo.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import termios
import tty
from collections.abc import Iterator

# <asm-generic/ioctls.h>; Python's termios module lacks them.
_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


def open_pty(root: str) -> tuple[int, int]:
    """(master, slave) of a new pty of the devpts instance under `root` (the container's
    rootfs before pivot_root, or "/" after joining its mount namespace)."""
    master = os.open(os.path.join(root, "dev/pts/ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, struct.pack("I", 0)))[0]
    slave = os.open(os.path.join(root, f"dev/pts/{n}"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave


def take_terminal(slave: int) -> None:
    """The pty `slave` becomes the controlling terminal of our session (we lead one that
    has none) and stdin, stdout, stderr (Docker: with -t the pty is stdin too)."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """The user's terminal (our stdin) in raw mode while a pty is relayed to it."""
    if not enabled or not os.isatty(0):
        yield
        return
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
