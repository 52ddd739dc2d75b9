"""P1's life after the fork: serve the FUSE rootfs on trio until the container is gone.

Three tasks share one nursery, whose lifetime is the container's:
* the FUSE server (`fs.server.serve`);
* a signal relay: P0 forwards what the user sends to rsbox, we pass it to P2, which hands
  it to the container's pid 1;
* with `-t`, the pty relay: the master of the container's own pty (sent by P3 over a
  socketpair) is copied to and from our stdin/stdout, which are the user's terminal.
The exit of P2 (watched through a pidfd, so no thread blocks in waitpid) ends them all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import struct
import termios

import trio

from fs import server
from rootless.prefork import FORWARDED_SIGNALS

_WINSZ = struct.Struct("HHHH")


def _copy_winsize(master: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, _WINSZ.pack(0, 0, 0, 0))
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


async def _wait_exit(pid: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return (
        os.waitstatus_to_exitcode(status)
        if not os.WIFSIGNALED(status)
        else 128 + os.WTERMSIG(status)
    )


async def _relay_signals(pid: int, master: list[int]) -> None:
    with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
        async for sig in signals:
            if sig == signal.SIGWINCH and master:
                _copy_winsize(master[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


async def _pump(src: int, dst: int) -> None:
    """Copy bytes until EOF/EIO on src (EIO is how a pty master says the slave closed)."""
    while True:
        await trio.lowlevel.wait_readable(src)
        try:
            data = os.read(src, 65536)
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno == errno.EIO:
                return
            raise
        if not data:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(dst, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(dst)
                continue
            view = view[n:]


async def _supervise(pid2: int, pty_sock: socket.socket | None, interactive: bool) -> int:
    master: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        nursery.start_soon(_relay_signals, pid2, master)
        output_done = trio.Event()
        fds: list[int] = []
        if pty_sock is not None:
            await trio.lowlevel.wait_readable(pty_sock)
            _, fds, _, _ = socket.recv_fds(pty_sock, 16, 1)
            pty_sock.close()
        if fds:  # none when the container failed before it made its pty
            master.append(fds[0])
            os.set_blocking(master[0], False)
            _copy_winsize(master[0])

            async def output() -> None:
                try:
                    await _pump(master[0], 1)
                finally:
                    output_done.set()

            nursery.start_soon(output)
            if interactive:
                nursery.start_soon(_pump, 0, master[0])
        else:
            output_done.set()
        code = await _wait_exit(pid2)
        with trio.move_on_after(2):
            await output_done.wait()
        nursery.cancel_scope.cancel()
    return code


def serve_until_exit(pid2: int, pty_sock: socket.socket | None, interactive: bool) -> int:
    return trio.run(_supervise, pid2, pty_sock, interactive)
