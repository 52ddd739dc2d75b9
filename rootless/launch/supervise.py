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
import sys
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from fs import server
from rootless.launch.protocol import FORWARDED_SIGNALS, exit_code, kill_quietly
from rootless.lifecycle import LogOptions, atomic_write_bytes, rotate_log

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


# --- the json-file log of a detached container -------------------------------------------
#
# What Docker does, which we follow (moby's daemon/logger/copier.go and
# jsonfilelog/jsonfilelog.go, read for the semantics; the code is ours):
# * the copier keeps a 16 KiB buffer per stream. Each complete line is one message; when
#   16 KiB gather without a newline they go out as a partial message, and so does what is
#   left at EOF. A line of 16 KiB or more is thus cut into 16 KiB pieces.
# * json-file writes `{"log": ..., "stream": "stdout"|"stderr", "time": RFC 3339}` per
#   message and puts the newline back at the end of "log" for a complete line (and for
#   the last piece of a cut one). A partial message is marked by exactly that: its "log"
#   does not end with "\n". Concatenating "log" in order gives the bytes back.
# * every piece of a cut line carries the time of its first piece.
# Where we differ: a piece is not cut inside a UTF-8 character (up to 3 bytes move to the
# next piece), so that text survives the split; Docker's pieces can end in half a
# character, which JSON turns into U+FFFD.
#
# Cost. The monitor is also the FUSE server, on the same trio thread: the log copy must
# stay linear in the bytes and must never hold the thread for long. So each byte is
# scanned once (no re-scan, no re-concatenation of what is pending), what is pending is
# less than 16 KiB, a read is at most 64 KiB, and we yield to the FUSE server after
# every 16 KiB or 64 lines written (a read of empty lines is 32768 lines): 30 us of work
# for plain text, 150 us at worst (text that JSON escapes), is what a FUSE request can
# wait behind the log. The file is written on the trio
# thread, as the FUSE server writes the upper layer: a write to the page cache does not
# block unless the host is past its dirty-page limits.

LOG_PIECE = 16 * 1024
_LOG_STEP_LINES = 64


def _utf8_cut(piece: bytes | bytearray) -> int:
    """Where to cut `piece` so that no UTF-8 character is split: len(piece), or up to 3
    bytes less when it ends inside a multi-byte character."""
    n = len(piece)
    for back in range(1, min(4, n + 1)):
        byte = piece[n - back]
        if byte < 0x80:
            return n  # ASCII: nothing is split
        if byte >= 0xC0:  # a lead byte: does its character end inside the piece?
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return n - back if size > back else n
    return n  # only continuation bytes (not UTF-8 text): cut where we are


class LineSplitter:
    """One stream's bytes -> json-file messages, as Docker's copier cuts them.

    `feed` returns complete lines (with their newline) and 16 KiB pieces of longer lines
    (without); `end` the rest at EOF (no newline: a partial message)."""

    def __init__(self, limit: int = LOG_PIECE) -> None:
        self.limit = limit
        self._pending = bytearray()  # the current line so far: always < limit bytes

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        pending, limit = self._pending, self.limit
        start, size = 0, len(data)
        while start < size:
            room = limit - len(pending)
            # Only the room left is searched: what is beyond is searched in the next turn.
            nl = data.find(b"\n", start, start + room)
            if nl >= 0:
                end = nl + 1
            elif size - start >= room:
                end = start + room
            else:
                pending += data[start:]
                break
            if pending:
                pending += data[start:end]
                piece = bytes(pending)
                pending.clear()
            else:
                piece = data[start:end]
            if nl < 0:
                cut = _utf8_cut(piece)
                if 0 < cut < len(piece):
                    pending += piece[cut:]
                    piece = piece[:cut]
            out.append(piece)
            start = end
        return out

    def end(self) -> bytes:
        """What is left at EOF, without a newline ("" if nothing)."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest


# The bytes JSON writes as they are (json.dumps escapes the rest, DEL included).
_JSON_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')


def json_string(piece: bytes) -> bytes:
    """piece as a JSON string, exactly as json.dumps(piece.decode(errors="replace")).
    Most log text needs no escaping but its newline, and finding that out
    (bytes.translate) costs a third of json.dumps's escaping loop, the monitor's main
    cost in a flood."""
    body, newline = (piece[:-1], b"\\n") if piece.endswith(b"\n") else (piece, b"")
    if not body.translate(None, _JSON_PLAIN):
        return b'"' + body + newline + b'"'
    return json.dumps(piece.decode(errors="replace")).encode()


class JsonFileEncoder:
    """Messages of one stream -> json-file entries (bytes, one per line)."""

    def __init__(self, stream: str) -> None:
        self._head = b'{"log":'
        self._tail = f',"stream":{json.dumps(stream)},"time":"'.encode()
        self._cut_time: bytes | None = None  # the time of the first piece of a cut line

    def encode(self, pieces: list[bytes], now: bytes) -> list[bytes]:
        out = []
        for piece in pieces:
            time = self._cut_time or now
            self._cut_time = None if piece.endswith(b"\n") else time
            out.append(b"".join((self._head, json_string(piece), self._tail, time, b'"}\n')))
        return out


def log_time() -> bytes:
    """Now, as json-file's "time" (RFC 3339, UTC, microseconds)."""
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z").encode()


class LogFile:
    """The container's log: appends entries and rotates it as Docker's json-file does
    (rootless.lifecycle: names, max-size, max-file). Shared by the stream tasks: `write`
    never awaits, so entries never interleave."""

    def __init__(self, fd: int, path: Path | None, options: LogOptions) -> None:
        self.fd, self.path, self.options = fd, path, options
        self.size = os.fstat(fd).st_size  # `start` appends to the log of earlier runs
        self._failed: set[int] = set()

    def write(self, entries: list[bytes]) -> None:
        max_size = self.options.max_size if self.path is not None else None
        todo: list[bytes] = []
        for entry in entries:
            # Docker's rule: rotate before an entry when the file has reached max-size
            # (so a file ends at most one entry past it).
            if max_size is not None and self.size >= max_size:
                self._append(todo)
                todo = []
                self._rotate()
            todo.append(entry)
            self.size += len(entry)
        self._append(todo)

    def _append(self, entries: list[bytes]) -> None:
        if not entries:
            return
        try:
            data = memoryview(b"".join(entries))
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as exc:  # a full disk: say it once, keep draining the container
            self._complain(exc)

    def _rotate(self) -> None:
        """Never a write between the rename and the switch to the new file: a reader
        (`logs -f`) that sees the rename has the old file complete."""
        assert self.path is not None
        self.size = 0  # also after a failure: try again one max-size later
        try:
            if self.options.max_file == 1:
                os.ftruncate(self.fd, 0)  # nothing kept, as Docker
                return
            rotate_log(self.path, self.options.max_file)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:  # we go on writing to the file we have
            self._complain(exc)
            return
        os.close(self.fd)
        self.fd = fd

    def _complain(self, exc: OSError) -> None:
        if exc.errno not in self._failed:  # our stderr is monitor.err
            self._failed.add(exc.errno or 0)
            print(f"rsbox: warning: the container's log: {exc}", file=sys.stderr)


def _log_step(pieces: list[bytes], i: int) -> int:
    """The end of the next step from pieces[i]: about 16 KiB, or _LOG_STEP_LINES lines."""
    j, size, end = i, 0, min(len(pieces), i + _LOG_STEP_LINES)
    while j < end and size < LOG_PIECE:
        size += len(pieces[j])
        j += 1
    return j


async def _log_stream(src: int, encoder: JsonFileEncoder, log: LogFile) -> None:
    """Copy one stream of the container into its log until EOF (see above)."""
    os.set_blocking(src, False)
    splitter = LineSplitter()
    try:
        while data := await _read_some(src):
            pieces = splitter.feed(data)
            now = log_time()
            i = 0
            while i < len(pieces):
                if i:
                    await trio.lowlevel.checkpoint()  # the FUSE server's turn
                j = _log_step(pieces, i)
                log.write(encoder.encode(pieces[i:j], now))
                i = j
    finally:
        if rest := splitter.end():
            log.write(encoder.encode([rest], log_time()))


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
    log_file: tuple[Path, LogOptions] | None = None  # the log's path, its --log-opt
    # Wires the container's network namespace (blocking: pipes and the tool's process):
    # run in a worker thread once the server runs, so that pid 1's mounts, which need the
    # server, overlap it. Done in a thread, not a task: it may start slirp4netns.
    wire: Callable[[], None] | None = None
    # fakeroot under a single-id map: the listener socket and the rootfs (launch.fakeroot)
    owners: tuple[socket.socket, Path] | None = None


async def _supervise(w: Watch) -> int:
    master: list[int] = []
    recorder = None
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        if w.wire is not None:
            nursery.start_soon(partial(trio.to_thread.run_sync, w.wire, abandon_on_cancel=True))
        if w.learn is not None:
            from policies.learn import Recorder

            recorder = Recorder()
            nursery.start_soon(_learn, w.learn[0], recorder)
        if w.owners is not None:
            from rootless.launch.fakeroot import serve_owners

            nursery.start_soon(serve_owners, *w.owners)
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

        log = None
        if w.logs is not None:
            out_r, err_r, log_fd = w.logs
            path, options = w.log_file or (None, LogOptions())
            log = LogFile(log_fd, path, options)
            track(_log_stream, out_r, JsonFileEncoder("stdout"), log)
            track(_log_stream, err_r, JsonFileEncoder("stderr"), log)
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
            if log is not None:
                track(_log_stream, master[0], JsonFileEncoder("stdout"), log)
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
