"""P1's answers to fakeroot's notified syscalls under a single-id map (true owners).

The container runs under `policies.fakeroot.owner_program`: the chown, set*id and get*id
families wait for us (seccomp user notification). P1 is the right place: it serves the
union (so it can record owners where a setattr records them), it is outside the
container's pid namespace, root in the user namespace, and it already receives listener
fds (--seccomp-learn). The credentials live in `fs.owners.CredentialTable`, which the
FUSE server also reads so that files a process creates get its emulated fsuid/fsgid.

How each family is answered:
- get*id: from the table; getresuid/getresgid/getgroups write into the caller's memory
  (/proc/PID/mem, opened then checked with SECCOMP_IOCTL_NOTIF_ID_VALID).
- set*id: the kernel's rules (fs.owners), kept in the table; never reaches the kernel.
- chown family: the target is found as the kernel would find it, but from outside:
  `fchown` and AT_EMPTY_PATH through /proc/PID/fd/N (or cwd), paths with openat2(
  RESOLVE_IN_ROOT) under /proc/PID/root, relative ones prefixed with the container path of
  /proc/PID/cwd or of the dirfd (readlink of those, read from another mount namespace,
  gives the path in the container's). The path string is read from the caller's memory
  before the id is checked, so a pid reused meanwhile cannot feed us another process's
  path. If what we opened is on the union (its st_dev), its st_ino is the union's inode:
  the chown is checked against the emulated credentials and recorded there. Anything else
  (tmpfs, /proc, volumes) is answered as the plain `fakeroot` profile does: success, no
  effect. Resolution touches the union, which this very thread serves: it runs in a
  worker thread while the trio loop goes on answering FUSE.

A magic link (/proc/self/fd/N inside the container) cannot be followed from here (it would
name one of *our* files): RESOLVE_NO_MAGICLINKS refuses it and the call gets "success, no
effect", as anything off the union does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
from pathlib import Path

import trio

from fs import owners, server
from fs.owners import UNCHANGED, Credentials, CredentialTable
from policies import notify
from policies.fakeroot import native_arch_token, notified_numbers

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every architecture rsbox supports
MAPPED_IDS = range(0, 65536)  # what a subordinate range gives: the ids we accept

_libc = ctypes.CDLL(None, use_errno=True)

# struct stat differs per architecture (st_uid, st_gid: two u32 at this offset); statx not.
_MACHINE = platform.machine()
STAT_SIZE = {"x86_64": 144, "aarch64": 128}
STAT_IDS = {"x86_64": 28, "aarch64": 24}
STATX_SIZE, STATX_IDS = 256, 20
_SYS_NEWFSTATAT = {"x86_64": 262, "aarch64": 79}
_SYS_STATX = {"x86_64": 332, "aarch64": 291}
_AT_STATX_SYNC_TYPE = 0x6000


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2_in_root(root_fd: int, path: bytes, flags: int) -> int:
    """openat2(root_fd, path, flags, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS): `path` as the
    process whose root `root_fd` is would resolve it ("..", absolute symlinks included)."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = int(
        _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(root_fd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), os.fsdecode(path))
    return fd


def _fd_link(pid: int, dirfd: int) -> str:
    return f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"


def open_target(pid: int, dirfd: int, path: bytes | None, flags: int) -> int:
    """An O_PATH fd on what chown/lchown/fchown/fchownat of process `pid` would change
    (blocking: it may go through the union; call it from a worker thread)."""
    if path is None or (flags & AT_EMPTY_PATH and path == b""):
        try:
            return os.open(_fd_link(pid, dirfd), os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from exc
    if path == b"":
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
    if not path.startswith(b"/"):
        try:
            base = os.fsencode(os.readlink(_fd_link(pid, dirfd)))
        except FileNotFoundError as exc:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from exc
        if not base.startswith(b"/"):  # a pipe or socket: not a directory
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        path = base.rstrip(b"/") + b"/" + path
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        nofollow = os.O_NOFOLLOW if flags & AT_SYMLINK_NOFOLLOW else 0
        return openat2_in_root(root, path, os.O_PATH | nofollow)
    finally:
        os.close(root)


def _ids(values: bytes) -> tuple[int, ...]:
    return struct.unpack(f"={len(values) // 4}I", values)


class Answerer:
    """Answers one notification at a time (policies.notify.serve calls it)."""

    def __init__(self, listener: int, union_dev: int, table: CredentialTable) -> None:
        self.listener = listener
        self.union_dev = union_dev  # st_dev of the union (what the container's / shows)
        self.table = table
        self.names = notified_numbers()
        self.arch = native_arch_token()

    async def __call__(self, notif: notify.SeccompNotif) -> notify.Answer:
        name = self.names.get(notif.data.nr) if notif.data.arch == self.arch else None
        if name is None:  # not ours (the filter notifies only NOTIFIED, native ABI)
            return notify.Answer(error=errno.ENOSYS)
        found = self.table.lookup(notif.pid)
        if found is None:
            return notify.Answer(error=errno.ESRCH)  # gone: nobody reads the answer
        tgid, creds = found
        args = [a & 0xFFFFFFFFFFFFFFFF for a in notif.data.args]
        try:
            if name.startswith("get"):
                return self._get(notif, name, creds, args)
            if name.startswith("set"):
                return self._set(notif, name, tgid, creds, args)
            if "stat" in name:
                return await self._stat(notif, name, args)
            return await self._chown(notif, name, creds, args)
        except OSError as exc:
            return notify.Answer(error=exc.errno or errno.EIO)

    # --- get*id ---------------------------------------------------------------------------

    def _read_path(self, notif: notify.SeccompNotif, addr: int) -> bytes:
        """The path argument at `addr`; the id is checked again once it is read, so that
        what we act on was the waiting caller's (seccomp_unotify(2), "Design goals")."""
        fd = notify.open_memory(notif.pid, notif.id, self.listener)
        try:
            path = notify.read_string(fd, addr)
        finally:
            os.close(fd)
        if not notify.notif_id_valid(self.listener, notif.id):
            raise OSError(errno.ENOENT, "the caller is gone")
        return path

    def _write(self, notif: notify.SeccompNotif, addr: int, data: bytes) -> None:
        fd = notify.open_memory(notif.pid, notif.id, self.listener, write=True)
        try:
            notify.write_memory(fd, addr, data)
        finally:
            os.close(fd)

    def _get(
        self, notif: notify.SeccompNotif, name: str, c: Credentials, args: list[int]
    ) -> notify.Answer:
        simple = {"getuid": c.ruid, "geteuid": c.euid, "getgid": c.rgid, "getegid": c.egid}
        if name in simple:
            return notify.Answer(val=simple[name])
        if name in ("getresuid", "getresgid"):
            ids = (c.ruid, c.euid, c.suid) if name == "getresuid" else (c.rgid, c.egid, c.sgid)
            for addr, value in zip(args[:3], ids, strict=True):
                self._write(notif, addr, struct.pack("=I", value))
            return notify.Answer()
        size = args[0] & 0xFFFFFFFF  # getgroups(int size, gid_t list[])
        if size >= 1 << 31:
            raise OSError(errno.EINVAL, "negative size")
        if size == 0:
            return notify.Answer(val=len(c.groups))
        if size < len(c.groups):
            raise OSError(errno.EINVAL, "list too small")
        if c.groups:
            self._write(notif, args[1], struct.pack(f"={len(c.groups)}I", *c.groups))
        return notify.Answer(val=len(c.groups))

    # --- set*id ---------------------------------------------------------------------------

    def _set(
        self, notif: notify.SeccompNotif, name: str, tgid: int, c: Credentials, args: list[int]
    ) -> notify.Answer:
        if name == "setgroups":
            size = args[0] & 0xFFFFFFFF
            if size > owners.NGROUPS_MAX:
                raise OSError(errno.EINVAL, "too many groups")
            groups: tuple[int, ...] = ()
            if size:
                fd = notify.open_memory(notif.pid, notif.id, self.listener)
                try:
                    groups = _ids(notify.read_memory(fd, args[1], 4 * size))
                finally:
                    os.close(fd)
            for g in groups:
                if g == UNCHANGED:
                    raise OSError(errno.EINVAL, "invalid group")
                owners.check_id(g, MAPPED_IDS)
            self.table.set(tgid, owners.setgroups(c, groups))
            return notify.Answer()
        count = 3 if name.startswith("setres") else 2 if name.startswith("setre") else 1
        ids = [owners.check_id(a, MAPPED_IDS) for a in args[:count]]  # the rest is garbage
        val = 0
        if name == "setuid":
            new = owners.setuid(c, ids[0]) if ids[0] != UNCHANGED else _einval()
        elif name == "setgid":
            new = owners.setgid(c, ids[0]) if ids[0] != UNCHANGED else _einval()
        elif name == "setreuid":
            new = owners.setreuid(c, ids[0], ids[1])
        elif name == "setregid":
            new = owners.setregid(c, ids[0], ids[1])
        elif name == "setresuid":
            new = owners.setresuid(c, *ids)
        elif name == "setresgid":
            new = owners.setresgid(c, *ids)
        elif name == "setfsuid":
            new, val = owners.setfsuid(c, ids[0])
        else:
            new, val = owners.setfsgid(c, ids[0])
        if new != c:
            self.table.set(tgid, new)
        return notify.Answer(val=val)

    # --- the chown family -----------------------------------------------------------------

    async def _chown(
        self, notif: notify.SeccompNotif, name: str, c: Credentials, args: list[int]
    ) -> notify.Answer:
        dirfd, flags, path_addr = AT_FDCWD, 0, None
        if name == "fchown":
            dirfd, uid, gid = _int(args[0]), args[1], args[2]
        elif name == "fchownat":
            dirfd, path_addr, uid, gid, flags = _int(args[0]), args[1], args[2], args[3], args[4]
            if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
                raise OSError(errno.EINVAL, "flags")
        else:
            path_addr, uid, gid = args[0], args[1], args[2]
            flags = AT_SYMLINK_NOFOLLOW if name == "lchown" else 0
        uid, gid = owners.check_id(uid, MAPPED_IDS), owners.check_id(gid, MAPPED_IDS)
        path = None if path_addr is None else self._read_path(notif, path_addr)
        try:
            target = await trio.to_thread.run_sync(
                _inspect_target, notif.pid, dirfd, path, flags, self.union_dev, True
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP and path is not None:
                return notify.Answer()  # a magic link (see the essay), or a loop: no effect
            raise
        fd, ino, on_union, readonly = target
        try:
            if not on_union:
                return notify.Answer()  # not the union's: as `fakeroot`, no effect
            if readonly:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            if not owners.may_chown(c, server.owner(ino), uid, gid):
                raise OSError(errno.EPERM, os.strerror(errno.EPERM))
            await server.chown(
                ino, None if uid == UNCHANGED else uid, None if gid == UNCHANGED else gid
            )
            await trio.to_thread.run_sync(server.forget_attributes, ino)
        finally:
            os.close(fd)  # held until now: it keeps the union's inode alive
        return notify.Answer()

    # --- the stat family ------------------------------------------------------------------

    async def _stat(self, notif: notify.SeccompNotif, name: str, args: list[int]) -> notify.Answer:
        """Most files show their true owner already (root's, under a single-id map): those,
        and anything we cannot or need not look at, the kernel answers itself (CONTINUE is
        safe here: no verdict depends on what the arguments point to). The others are
        stat'ed here and their ids replaced in the kernel's own struct."""
        mask = 0
        if name == "fstat":
            dirfd, path_addr, buf, flags = _int(args[0]), None, args[1], AT_EMPTY_PATH
        elif name in ("stat", "lstat"):
            dirfd, path_addr, buf = AT_FDCWD, args[0], args[1]
            flags = AT_SYMLINK_NOFOLLOW if name == "lstat" else 0
        elif name == "newfstatat":
            dirfd, path_addr, buf, flags = _int(args[0]), args[1], args[2], args[3] & 0xFFFFFFFF
        else:  # statx(dirfd, path, flags, mask, buf)
            dirfd, path_addr, flags = _int(args[0]), args[1], args[2] & 0xFFFFFFFF
            mask, buf = args[3] & 0xFFFFFFFF, args[4]
        try:
            path = None if path_addr is None else self._read_path(notif, path_addr)
            found = await trio.to_thread.run_sync(
                _inspect_target, notif.pid, dirfd, path, flags, self.union_dev, False
            )
        except OSError:
            return notify.CONTINUE  # the kernel says what is wrong with the arguments
        fd, ino, on_union, _ = found
        try:
            owner = server.owner(ino) if on_union else None
            raw = None
            if owner is not None:
                raw = await trio.to_thread.run_sync(_raw_stat, fd, name == "statx", flags, mask)
        finally:
            os.close(fd)
        if raw is None or owner is None:
            return notify.CONTINUE
        layout = STATX_IDS if name == "statx" else STAT_IDS[_MACHINE]
        shown = struct.unpack_from("=II", raw, layout)
        if shown == owner:
            return notify.CONTINUE
        struct.pack_into("=II", raw, layout, *owner)
        self._write(notif, buf, bytes(raw))
        return notify.Answer()


def _inspect_target(
    pid: int, dirfd: int, path: bytes | None, flags: int, union_dev: int, writing: bool
) -> tuple[int, int, bool, bool]:
    """(O_PATH fd, st_ino, on the union, on a read-only mount if `writing`) of the call's
    target. In a worker thread: each step may be a FUSE request our trio thread answers."""
    fd = open_target(pid, dirfd, path, flags)
    try:
        st = os.fstat(fd)
        on_union = st.st_dev == union_dev
        readonly = writing and on_union and bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_ino, on_union, readonly


def _raw_stat(fd: int, extended: bool, flags: int, mask: int) -> bytearray:
    """The kernel's struct stat (or statx) of O_PATH `fd`, as the caller's syscall would
    have filled it; blocking (a FUSE getattr), so in a worker thread."""
    buf = ctypes.create_string_buffer(STATX_SIZE if extended else STAT_SIZE[_MACHINE])
    if extended:
        sync = flags & _AT_STATX_SYNC_TYPE
        rc = _libc.syscall(
            ctypes.c_long(_SYS_STATX[_MACHINE]),
            ctypes.c_int(fd),
            ctypes.c_char_p(b""),
            ctypes.c_int(AT_EMPTY_PATH | sync),
            ctypes.c_uint(mask),
            buf,
        )
    else:
        rc = _libc.syscall(
            ctypes.c_long(_SYS_NEWFSTATAT[_MACHINE]),
            ctypes.c_int(fd),
            ctypes.c_char_p(b""),
            buf,
            ctypes.c_int(AT_EMPTY_PATH),
        )
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return bytearray(buf.raw)


def _int(value: int) -> int:
    """A C int argument (fd, dirfd) from its 64-bit register."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _einval() -> Credentials:
    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


async def serve_owners(sock: socket.socket, rootfs: Path) -> None:
    """Take the listener P3 sends right before execve and answer until no process is left
    under the filter (policies.notify.serve)."""
    try:
        listener = await notify.receive_listener(sock)
    except OSError:
        return  # the container failed before it installed the filter
    finally:
        sock.close()
    union_dev = (await trio.to_thread.run_sync(os.stat, rootfs)).st_dev  # a FUSE getattr
    table = CredentialTable(outside=os.getpid())  # P2, our child, is the container's edge
    server.emulate_owners(table.fs_owner)
    await notify.serve(listener, Answerer(listener, union_dev, table))
