"""P1's life after the fork: serve the FUSE rootfs on trio until the container is gone.

Tasks share one nursery, whose lifetime is the container's:
* the FUSE server (`fs.server.serve`);
* a signal relay: P0 forwards what the user sends to rsbox, we pass it to P2, which hands
  it to the container's pid 1;
* with `-t`, the pty relay: the master of the container's own pty (sent by P3 over a
  socketpair) is copied to and from our stdin/stdout, which are the user's terminal;
* without `-t`, the stdio relay: where the user's stdin/stdout/stderr is a terminal the
  container gets a pipe instead (no container process ever holds the user's terminal:
  TIOCSTI, termios and escape-sequence replies stay out of reach) and we copy.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from fs import server
from rootless.launch.protocol import FORWARDED_SIGNALS, exit_code, kill_quietly
from rootless.lifecycle import atomic_write_bytes

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
    return exit_code(status)


async def _relay_signals(pid: int, master: list[int]) -> None:
    with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
        async for sig in signals:
            if sig == signal.SIGWINCH and master:
                _copy_winsize(master[0])
            kill_quietly(pid, sig)


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


async def _pump(src: int, dst: int, close_dst: bool = False) -> None:
    """Copy bytes until EOF/EIO on src (then close dst if asked: a relayed stdin)."""
    try:
        await _copy(src, dst)
    finally:
        if close_dst:
            os.close(dst)


async def _copy(src: int, dst: int) -> None:
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


@dataclass(frozen=True, slots=True)
class Watch:
    """What P1 watches over while it serves the rootfs."""

    pid2: int
    pty_sock: socket.socket | None  # -t: P3 sends the master of its pty on this
    interactive: bool
    logs: tuple[int, int, int] | None  # detached: (stdout pipe, stderr pipe, log file)
    learn: tuple[socket.socket, Path] | None  # --seccomp-learn: listener socket, OUT.json
    inputs: tuple[tuple[int, int], ...]  # (user's terminal, pipe to the container)
    outputs: tuple[tuple[int, int], ...]  # (pipe from the container, user's terminal)


async def _supervise(w: Watch) -> int:
    master: list[int] = []
    recorder = None
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        if w.learn is not None:
            from policies.learn import Recorder

            recorder = Recorder()
            nursery.start_soon(_learn, w.learn[0], recorder)
        nursery.start_soon(_relay_signals, w.pid2, master)
        # Every copy of the container's output should reach its end before we return.
        done = trio.Event()
        pending = [0]

        def track(fn: Callable[..., Awaitable[None]], *args: object) -> None:
            pending[0] += 1

            async def run() -> None:
                try:
                    await fn(*args)
                finally:
                    pending[0] -= 1
                    if pending[0] == 0:
                        done.set()

            nursery.start_soon(run)

        if w.logs is not None:
            out_r, err_r, log_fd = w.logs
            track(_log_stream, out_r, "stdout", log_fd)
            track(_log_stream, err_r, "stderr", log_fd)
        for src, dst in w.outputs:
            os.set_blocking(src, False)
            track(_pump, src, dst)
        for src, dst in w.inputs:
            os.set_blocking(dst, False)  # our pipe; never the user's terminal
            nursery.start_soon(_pump, src, dst, True)
        fds: list[int] = []
        if w.pty_sock is not None:
            await trio.lowlevel.wait_readable(w.pty_sock)
            _, fds, _, _ = socket.recv_fds(w.pty_sock, 16, 1)
            w.pty_sock.close()
        if fds:  # none when the container failed before it made its pty
            master.append(fds[0])
            os.set_blocking(master[0], False)
            _copy_winsize(master[0])
            if w.logs is not None:
                track(_log_stream, master[0], "stdout", w.logs[2])
            else:
                track(_pump, master[0], 1)
            if w.interactive:
                nursery.start_soon(_pump, 0, master[0])
        if pending[0] == 0:
            done.set()
        code = await _wait_exit(w.pid2)
        with trio.move_on_after(2):
            await done.wait()
        nursery.cancel_scope.cancel()
    if w.learn is not None and recorder is not None and recorder.names:
        _write_profile(w.learn[1], recorder)
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


def serve_until_exit(watch: Watch) -> int:
    """Serve and relay until P2 is gone; P2's exit code."""
    return trio.run(_supervise, watch)
