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
import json
import os
import signal
import socket
import struct
import termios
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from fs import server
from rootless.lifecycle import atomic_write_bytes
from rootless.prefork import FORWARDED_SIGNALS

if TYPE_CHECKING:
    from policies.learn import Recorder

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


async def _read_some(src: int) -> bytes:
    """The next bytes from non-blocking `src`; b"" at EOF or EIO (how a pty master says
    the slave closed)."""
    while True:
        await trio.lowlevel.wait_readable(src)
        try:
            return os.read(src, 65536)
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


async def _pump(src: int, dst: int) -> None:
    """Copy bytes until EOF/EIO on src."""
    while data := await _read_some(src):
        view = memoryview(data)
        while view:
            try:
                n = os.write(dst, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(dst)
                continue
            view = view[n:]


def _log_line(log_fd: int, stream: str, line: bytes) -> None:
    doc = {
        "log": line.decode(errors="replace"),
        "stream": stream,
        "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
    }
    os.write(log_fd, (json.dumps(doc) + "\n").encode())


async def _log_stream(src: int, stream: str, log_fd: int) -> None:
    """Docker's json-file format: one JSON object per line of output, with its stream and
    time; a last line without a newline is logged as it is at EOF."""
    os.set_blocking(src, False)
    pending = b""
    try:
        while data := await _read_some(src):
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _log_line(log_fd, stream, line + b"\n")
    finally:
        if pending:
            _log_line(log_fd, stream, pending)


async def _supervise(
    pid2: int,
    pty_sock: socket.socket | None,
    interactive: bool,
    logs: tuple[int, int, int] | None,
    learn: tuple[socket.socket, Path] | None = None,
) -> int:
    master: list[int] = []
    recorder = None
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        if learn is not None:
            from policies.learn import Recorder

            recorder = Recorder()
            nursery.start_soon(_learn, learn[0], recorder)
        nursery.start_soon(_relay_signals, pid2, master)
        output_done = trio.Event()
        logs_done = trio.Event()
        if logs is not None:
            out_r, err_r, log_fd = logs

            async def log_both() -> None:
                try:
                    async with trio.open_nursery() as n:
                        n.start_soon(_log_stream, out_r, "stdout", log_fd)
                        n.start_soon(_log_stream, err_r, "stderr", log_fd)
                finally:
                    logs_done.set()

            nursery.start_soon(log_both)
        else:
            logs_done.set()
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
                    if logs is not None:
                        await _log_stream(master[0], "stdout", logs[2])
                    else:
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
            await logs_done.wait()
        nursery.cancel_scope.cancel()
    if learn is not None and recorder is not None and recorder.names:
        _write_profile(learn[1], recorder)
    return code


async def _learn(sock: socket.socket, recorder: Recorder) -> None:
    """--seccomp-learn: take the listener fd P3 sends right before execve and answer every
    notified syscall with "continue", recording it. Ends when no filtered process is left."""
    from policies.notify import receive_listener, supervise

    try:
        listener = await receive_listener(sock)
    except OSError:
        return  # the container failed before it installed the filter: nothing learned
    finally:
        sock.close()
    await supervise(listener, recorder)


def _write_profile(path: Path, recorder: Recorder) -> None:
    """OUT.json, atomically and as the user (we are uid 0 of our namespace = the user)."""
    text = json.dumps(recorder.to_profile(), indent=1) + "\n"
    atomic_write_bytes(path, text.encode(), mode=0o644)


def serve_until_exit(
    pid2: int,
    pty_sock: socket.socket | None,
    interactive: bool,
    logs: tuple[int, int, int] | None = None,
    learn: tuple[socket.socket, Path] | None = None,
) -> int:
    """`logs`: (stdout pipe, stderr pipe, log file) of a detached container; `learn`: the
    socket P3 sends its seccomp listener on, and where to write the learned profile."""
    return trio.run(_supervise, pid2, pty_sock, interactive, logs, learn)
