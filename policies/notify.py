"""seccomp user notification: the listener fd, its three ioctls, and a trio supervisor.

How the kernel behaves (Documentation/userspace-api/seccomp_filter.rst, seccomp_unotify(2)):

- seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, prog) returns a new
  fd, the *listener*, to the installing process. A syscall whose filter verdict is
  SECCOMP_RET_USER_NOTIF blocks its thread until someone answers on the listener.
- The listener polls readable (POLLIN) when a notification waits, and POLLHUP once no
  process uses the filter any more (every task that had it has exited).
- SECCOMP_IOCTL_NOTIF_RECV fills a `struct seccomp_notif` (which must be zeroed first);
  it blocks if nothing waits, and fails with ENOENT if the caller died in between.
- SECCOMP_IOCTL_NOTIF_SEND answers one notification by id: an errno/return value, or
  SECCOMP_USER_NOTIF_FLAG_CONTINUE to let the syscall run as if unfiltered. ENOENT means
  the caller has gone (killed by a signal while waiting): not an error for us.
- SECCOMP_IOCTL_NOTIF_ID_VALID tells whether an id is still pending. Pointer arguments
  are read from /proc/PID/mem, and PID may have died and been reused between RECV and
  the open: open the mem file, *then* check the id (the open file stays bound to the
  memory of the process it was opened for), then read or write through it.
- `pid` in a notification is the calling *thread's* id, in the pid namespace of the
  process that called RECV.

`policies.learn` builds on this (`supervise`); fakeroot's owner emulation
(rootless/launch/fakeroot.py) on `serve`, `Answer` and the memory helpers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import select
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from policies.learn import Recorder

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "s390x": 348, "ppc64le": 358}


class SeccompData(ctypes.Structure):
    _fields_ = [
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class SeccompNotif(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", SeccompData),
    ]


class SeccompNotifResp(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _iowr(nr: int, size: int) -> int:  # _IOWR('!', nr, size)
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


SECCOMP_IOCTL_NOTIF_RECV = _iowr(0, ctypes.sizeof(SeccompNotif))  # 0xc0502100
SECCOMP_IOCTL_NOTIF_SEND = _iowr(1, ctypes.sizeof(SeccompNotifResp))  # 0xc0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = (1 << 30) | (8 << 16) | (ord("!") << 8) | 2  # _IOW: 0x40082102

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> int:
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), what)
    return rc


def install_with_listener(program: bytes) -> int:
    """no_new_privs, then install `program` with NEW_LISTENER; return the listener fd."""
    if not program or len(program) % 8:
        raise ValueError(f"not a BPF program: {len(program)} bytes")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    n = len(program) // 8
    insns = (_SockFilter * n).from_buffer_copy(program)
    prog = _SockFprog(n, ctypes.cast(insns, ctypes.POINTER(_SockFilter)))
    return _check(
        _libc.syscall(
            ctypes.c_long(_SYS_SECCOMP[platform.machine()]),
            ctypes.c_long(SECCOMP_SET_MODE_FILTER),
            ctypes.c_long(SECCOMP_FILTER_FLAG_NEW_LISTENER),
            ctypes.byref(prog),
        ),
        "seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER)",
    )


def notif_recv(fd: int) -> SeccompNotif:
    """SECCOMP_IOCTL_NOTIF_RECV (blocks if nothing waits)."""
    notif = SeccompNotif()  # zeroed, as the kernel requires
    _check(_libc.ioctl(fd, ctypes.c_ulong(SECCOMP_IOCTL_NOTIF_RECV), ctypes.byref(notif)), "recv")
    return notif


def notif_send(fd: int, notif_id: int, *, error: int = 0, val: int = 0, flags: int = 0) -> None:
    """SECCOMP_IOCTL_NOTIF_SEND: `error` is a negative errno, or 0 with `val` as result."""
    resp = SeccompNotifResp(id=notif_id, val=val, error=error, flags=flags)
    _check(_libc.ioctl(fd, ctypes.c_ulong(SECCOMP_IOCTL_NOTIF_SEND), ctypes.byref(resp)), "send")


def notif_continue(fd: int, notif_id: int) -> None:
    """Let the syscall run as if there were no filter."""
    notif_send(fd, notif_id, flags=SECCOMP_USER_NOTIF_FLAG_CONTINUE)


def notif_id_valid(fd: int, notif_id: int) -> bool:
    """True while notification `notif_id` is still pending (its caller alive and waiting)."""
    value = ctypes.c_uint64(notif_id)
    rc = _libc.ioctl(fd, ctypes.c_ulong(SECCOMP_IOCTL_NOTIF_ID_VALID), ctypes.byref(value))
    if rc == 0:
        return True
    if ctypes.get_errno() == errno.ENOENT:
        return False
    return bool(_check(rc, "id_valid"))


def _pending(fd: int) -> tuple[bool, bool]:
    """(a notification waits, no filtered process is left)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    events = 0
    for _, ev in p.poll(0):
        events |= ev
    return bool(events & select.POLLIN), bool(events & (select.POLLHUP | select.POLLERR))


async def receive_listener(sock: socket.socket) -> int:
    """The listener fd sent by `policies.learn.install_and_send` on the other end."""
    tsock = trio.socket.from_stdlib_socket(sock)
    while True:
        await trio.lowlevel.wait_readable(tsock)
        try:
            _, fds, _, _ = socket.recv_fds(sock, 16, 1, socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        if not fds:
            raise OSError(errno.EPROTO, "no listener fd received (did the child fail?)")
        return fds[0]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a notified syscall returns: `val`, or fails with errno `error` (positive), or
    runs as if unfiltered (`proceed`)."""

    val: int = 0
    error: int = 0
    proceed: bool = False


CONTINUE = Answer(proceed=True)


def open_memory(pid: int, notif_id: int, listener_fd: int, *, write: bool = False) -> int:
    """/proc/PID/mem of the caller of notification `notif_id`, opened and then checked to
    belong to that caller still (see the module's essay). ENOENT if it is gone."""
    fd = os.open(f"/proc/{pid}/mem", (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC)
    if not notif_id_valid(listener_fd, notif_id):
        os.close(fd)
        raise OSError(errno.ENOENT, "the caller is gone", f"/proc/{pid}/mem")
    return fd


def read_memory(mem_fd: int, addr: int, size: int) -> bytes:
    """`size` bytes at `addr` of the caller; EFAULT (as the kernel would say) if unmapped."""
    try:
        data = os.pread(mem_fd, size, addr) if size else b""
    except OSError as exc:
        raise OSError(errno.EFAULT, os.strerror(errno.EFAULT)) from exc
    if len(data) != size:
        raise OSError(errno.EFAULT, os.strerror(errno.EFAULT))
    return data


def read_string(mem_fd: int, addr: int, limit: int = 4096) -> bytes:
    """The NUL-terminated string at `addr`, read page by page (a string may end right
    before an unmapped page); ENAMETOOLONG past `limit` bytes, as for a path."""
    out = b""
    while len(out) < limit:
        chunk = 4096 - (addr + len(out)) % 4096
        piece = read_memory(mem_fd, addr + len(out), min(chunk, limit - len(out)))
        end = piece.find(b"\0")
        if end >= 0:
            return out + piece[:end]
        out += piece
    raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))


def write_memory(mem_fd: int, addr: int, data: bytes) -> None:
    try:
        n = os.pwrite(mem_fd, data, addr)
    except OSError as exc:
        raise OSError(errno.EFAULT, os.strerror(errno.EFAULT)) from exc
    if n != len(data):
        raise OSError(errno.EFAULT, os.strerror(errno.EFAULT))


async def supervise(
    listener_fd: int,
    recorder: Recorder,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record every notified syscall and let it continue, until no process is left under
    the filter; then close `listener_fd`. Start with `nursery.start`."""

    async def record(notif: SeccompNotif) -> Answer:
        d = notif.data
        recorder.record(d.arch, d.nr, list(d.args))
        return CONTINUE

    await serve(listener_fd, record, task_status=task_status)


async def serve(
    listener_fd: int,
    answer: Callable[[SeccompNotif], Awaitable[Answer]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer every notified syscall with `answer`, one at a time, until no process is
    left under the filter; then close `listener_fd`. Start with `nursery.start`."""
    task_status.started()
    try:
        while True:
            await trio.lowlevel.wait_readable(listener_fd)
            ready, gone = _pending(listener_fd)
            if not ready:
                if gone:
                    return
                continue
            try:
                notif = notif_recv(listener_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EINTR):  # the caller died meanwhile
                    continue
                raise
            reply = await answer(notif)
            try:
                if reply.proceed:
                    notif_continue(listener_fd, notif.id)
                else:
                    notif_send(listener_fd, notif.id, error=-reply.error, val=reply.val)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
    finally:
        trio.lowlevel.notify_closing(listener_fd)
        os.close(listener_fd)
