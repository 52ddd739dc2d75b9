"""pyfuse3 adapter for fs.union: converts types and errors, nothing else.

FUSE facts this module is shaped by:

- pyfuse3 runs every handler on the trio thread; the only exception a handler may raise is
  FUSEError. `_errors` turns OSError into FUSEError in one place.
- One session loop reads and answers requests, one at a time: no handler awaits anything
  on the common path, and a second pyfuse3 worker costs every request a hand-over of
  pyfuse3's read lock (+7-11% on cold find, the create/delete storm and a cold 1 GiB read
  here; +12% on a warm find before the kernel cached listings). The one wait that can be
  long is the copy-up of a big file (0.8-3 s per GiB): its bytes move on a worker thread,
  and while its request waits, `serve` runs a second loop that answers the others and
  ends when the first is back (see `serve` and `UnionOps._aside`). Requests that would
  copy the same file up again, or move or remove it or a directory above it, wait for
  that copy: one copy per file, and the node stays where the copy will land.
- pyfuse3 keeps its session in module globals: one mount per process. `mount`, `serve`
  and `close` wrap that; there is no state of ours at module level.
- `mount` runs in the launcher's fresh user+mount namespace where it is root: libfuse then
  mounts with mount(2) directly. It must not start threads (the caller forks after it, and
  unshare(CLONE_NEWUSER) refuses multi-threaded processes). pyfuse3.init starts none.
- `auto_unmount` is never passed: libfuse would go through the setuid fusermount3.
- `default_permissions`: the kernel checks access against the owners and modes we report
  (the image's truth), so the union itself never checks permissions.
- Layers are immutable and we are the only writer: entries, attributes and negative
  lookups are cached by the kernel for a long time, and lower files keep their page cache.
  Listings and symlink targets are cached by the kernel too when fs.kcache's shim is in
  (it explains why no invalidation of ours is needed for them).
- Every write(2) costs a GETXATTR of security.capability first: the kernel skips that
  check only on a superblock with SB_NOSEC, which FUSE sets only for a server that
  handles HANDLE_KILLPRIV_V2, and libfuse 3.14 cannot ask for it (libfuse >= 3.17 can:
  the server then drops setuid/setgid/capabilities on write itself, and pyfuse3 3.5
  does not pass the write flags that say when). So `getxattr` answers that name from
  memory until a request that may change an xattr forgets every answer (`_changes_meta`):
  our share of a write's round trips went from ~20 us to ~1 (1000 writes of 4 KiB to one
  file: 59-72 ms -> 25-48 ms here, noisy).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import logging
import math
import os
import select
import signal
import types
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

# fs.kcache loads the libfuse shim, which must be in place before pyfuse3's extension is
# loaded (it binds fuse_session_new then): keep this import above pyfuse3's.
from fs import kcache

# isort: split
import pyfuse3
import trio

from fs.inodes import Node
from fs.union import Attr, Union, UnionSpec, opens_for_writing

log = logging.getLogger(__name__)

CACHE_TIMEOUT = 300.0  # seconds; see the module docstring for why this is safe
# Copy-ups of files this big move their bytes on a worker thread (`UnionOps._upper_copy`);
# smaller ones cost less than the hand-over (1 MiB: < 1 ms of copy_file_range here).
ASYNC_COPY_BYTES = 1 << 20
COPY_THREADS = 2  # copy-ups running at once; more wait for a slot (the others are served)
MOUNT_OPTIONS = frozenset({"fsname=rsbox", "subtype=rsbox", "allow_other", "default_permissions"})

P = ParamSpec("P")
T = TypeVar("T")
CAPS = b"security.capability"


def _errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The single OSError -> FUSEError conversion. Anything else is a bug: log it and
    answer EIO rather than let pyfuse3 tear the session down."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("rsbox fs: %s failed", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _changes_meta(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """For handlers that may change an xattr (or move what holds one): the answers
    `UnionOps.getxattr` keeps are forgotten once the handler is done, whatever the
    outcome (after: the handler may await a copy-up, during which getxattr runs)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        finally:
            cast(UnionOps, args[0])._caps.clear()

    return wrapper


def _make_entry(attr: Attr) -> pyfuse3.EntryAttributes:
    """Attr -> the reply struct (pyfuse3 only copies from it)."""
    e = pyfuse3.EntryAttributes()
    e.st_ino = attr.ino  # generation: 0 as made
    e.entry_timeout = CACHE_TIMEOUT
    e.attr_timeout = CACHE_TIMEOUT
    e.st_mode = attr.mode
    e.st_nlink = attr.nlink
    e.st_uid = attr.uid
    e.st_gid = attr.gid
    e.st_rdev = attr.rdev
    e.st_size = attr.size
    e.st_blksize = attr.blksize
    e.st_blocks = attr.blocks
    e.st_atime_ns = attr.atime_ns
    e.st_mtime_ns = attr.mtime_ns
    e.st_ctime_ns = attr.ctime_ns
    return e


# Memoized for lookup and the handlers that change entries (the same attributes come
# back again and again); getattr and a listing's entries go through UnionOps._reply. Each entry
# holds an Attr and its reply (~650 bytes): 4096 of them are ~2.5 MiB of the server.
_entry = functools.lru_cache(maxsize=1 << 12)(_make_entry)


@functools.cache
def _negative() -> pyfuse3.EntryAttributes:
    """A lookup miss the kernel may remember (inode 0 = negative dentry)."""
    e = pyfuse3.EntryAttributes()
    e.st_ino = 0
    e.entry_timeout = CACHE_TIMEOUT
    return e


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


class UnionOps(pyfuse3.Operations):
    """Adapts fs.union.Union to pyfuse3's Operations."""

    supports_dot_lookup = True
    # The kernel buffers writes and keeps size/mtime itself (fs.union opens backing files
    # read-write and without O_APPEND for this); page cache is kept across opens.
    enable_writeback_cache = True

    def __init__(self, union: Union) -> None:
        super().__init__()
        self.union = union
        self.max_nodes = union.spec.max_nodes
        self._next_trim = self.max_nodes
        # Copy-ups on worker threads, by inode; the event is set once it is over.
        self._copying: dict[int, trio.Event] = {}
        self._copy_slots = trio.CapacityLimiter(COPY_THREADS)
        # Set by `serve` when it can start a second session loop (None: copy-ups stay on
        # the trio thread and hold every request, as pyfuse3.main alone would).
        self.readers: trio.MemorySendChannel[None] | None = None
        # fs.kcache's no-opendir: the kernel opens directories without us, and readdir's
        # `fh` is the directory's inode (set by `mount` once the session exists).
        self.dirs_by_inode = False
        # security.capability by inode (None: it has none), for getxattr.
        self._caps: dict[int, bytes | None] = {}
        # fakeroot under a single-id map (fs.owners): the emulated (fsuid, fsgid) of the
        # calling thread, when it is not root's; None: the kernel's ids (ctx.uid/gid).
        self.owner_of: Callable[[int], tuple[int, int] | None] | None = None

    def _creator(self, ctx: pyfuse3.RequestContext) -> tuple[int, int]:
        emulated = self.owner_of(ctx.pid) if self.owner_of is not None else None
        return emulated if emulated is not None else (ctx.uid, ctx.gid)

    async def record_chown(self, inode: int, uid: int | None, gid: int | None) -> None:
        """A chown answered outside FUSE (fakeroot's seccomp answers): as `setattr`."""
        try:
            await self._upper_copy(inode)
            self.union.chown(inode, uid, gid)
        finally:
            self._caps.clear()  # security.capability may be gone (Union.chown)

    async def _aside(self, wait: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """`await wait()` while another session loop answers the kernel (this request's
        loop is the only reader otherwise)."""
        if self.readers is not None:
            self.readers.send_nowait(None)
        return await wait()

    async def _upper_copy(self, ino: int, *, data: bool = True) -> None:
        """Before a request that changes node `ino`: make sure it is in the upper. A
        regular file of ASYNC_COPY_BYTES or more is copied on a worker thread while the
        other requests are answered; whoever needs the same file meanwhile waits for that
        copy (one copy per file). `data` False: the bytes are not needed (O_TRUNC)."""
        while (busy := self._copying.get(ino)) is not None:
            await self._aside(busy.wait)
        job = self.union.copy_up_start(ino, data=data)
        if job is None:
            return
        if job.size < ASYNC_COPY_BYTES or self.readers is None:
            job.file.run()
            self.union.copy_up_finish(job)
            return
        done = self._copying[ino] = trio.Event()
        try:
            run = functools.partial(trio.to_thread.run_sync, job.file.run, limiter=self._copy_slots)
            await self._aside(run)
            self.union.copy_up_finish(job)
        except BaseException:
            job.file.abort()  # cancelled after the thread finished: nothing left behind
            raise
        finally:
            del self._copying[ino]
            done.set()

    async def _settled(self, *entries: tuple[int, bytes]) -> None:
        """Before a request that removes or moves these (directory inode, name) entries:
        wait for the copy-ups running below them, whose files must stay where they are."""
        while self._copying:
            busy = next(
                (
                    done
                    for ino, done in self._copying.items()
                    for parent, name in entries
                    if self.union.is_within(ino, parent, _name(name))
                ),
                None,
            )
            if busy is None:
                return
            await self._aside(busy.wait)

    def _trim(self) -> None:
        """Bound our memory: the table holds what the kernel holds, and the kernel keeps
        every inode it has seen while memory lasts (a walk of 500k files). Past the cap,
        ask it to drop the oldest tenth of its entries; their FORGETs free the nodes.
        Entries in use stay where the kernel needs them, and come back by lookup.
        (pyfuse3's notify thread sends these: from a handler they could deadlock.)"""
        n = len(self.union.nodes)
        if n <= self._next_trim:
            if n < self.max_nodes:
                self._next_trim = self.max_nodes
            return
        # Not again before the table grows by another tenth: FORGETs take a while.
        self._next_trim = n + self.max_nodes // 10
        for parent, name in self.union.oldest_entries(n - self.max_nodes + self.max_nodes // 10):
            pyfuse3.invalidate_entry_async(parent, os.fsencode(name), ignore_enoent=True)

    @_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        try:
            attr = self.union.lookup(parent_inode, _name(name))
        except FileNotFoundError:
            return _negative()
        self._trim()
        return _entry(attr)

    @_errors
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        self.union.forget(inode_list)

    @_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.union.node(inode)
        return self._reply(node, self.union.node_attr(node))

    @_errors
    @_changes_meta
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        await self._upper_copy(inode, data=not (fields.update_size and attr.st_size == 0))
        return _entry(
            self.union.setattr(
                inode,
                mode=attr.st_mode if fields.update_mode else None,
                uid=attr.st_uid if fields.update_uid else None,
                gid=attr.st_gid if fields.update_gid else None,
                size=attr.st_size if fields.update_size else None,
                atime_ns=attr.st_atime_ns if fields.update_atime else None,
                mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
                fh=fh,
            )
        )

    @_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(self.union.readlink(inode))

    @_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        mode &= ~ctx.umask
        return _entry(self.union.mkdir(parent_inode, _name(name), mode, *self._creator(ctx)))

    @_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        mode &= ~ctx.umask
        uid, gid = self._creator(ctx)
        return _entry(self.union.mknod(parent_inode, _name(name), mode, rdev, uid, gid))

    @_errors
    @_changes_meta
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.released()  # a file closed before goes at once, not at the next release
        await self._settled((parent_inode, name))
        self.union.unlink(parent_inode, _name(name))

    @_errors
    @_changes_meta
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self._settled((parent_inode, name))
        self.union.rmdir(parent_inode, _name(name))

    @_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return _entry(
            self.union.symlink(parent_inode, _name(name), os.fsdecode(target), *self._creator(ctx))
        )

    @_errors
    @_changes_meta
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        self.released()  # as in unlink: the target may go
        await self._settled((parent_inode_old, name_old), (parent_inode_new, name_new))
        self.union.rename(
            parent_inode_old, _name(name_old), parent_inode_new, _name(name_new), flags
        )

    @_errors
    @_changes_meta
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        await self._upper_copy(inode)
        return _entry(self.union.link(inode, new_parent_inode, _name(new_name)))

    @_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if opens_for_writing(flags):
            await self._upper_copy(inode, data=not flags & os.O_TRUNC)
        self.released()
        fh, keep = self.union.open(inode, flags)
        # READ in C, and RELEASE too for a handle that cannot have changed the file
        # (fs/read_shim.c); it then waits in the shim's queue for `released`.
        kcache.serve_reads(fh, self.union.host_fd(fh), not opens_for_writing(flags))
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

    @_errors
    async def create(
        self,
        parent_inode: int,
        name: bytes,
        mode: int,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        mode &= ~ctx.umask
        uid, gid = self._creator(ctx)
        self.released()
        fh, attr = self.union.create(parent_inode, _name(name), mode, flags, uid, gid)
        kcache.serve_reads(fh, self.union.host_fd(fh), False)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True), _entry(attr)

    @_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        # Only when fs/read_shim.c does not answer READ itself (RSBOX_FS_C_READ=0, no shim).
        # On the trio thread: a worker thread per read (trio.to_thread) was measured at
        # 1.16 s against 0.68 s for a cold 1 GiB read (128 KiB requests).
        return self.union.read(fh, off, size)

    @_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return self.union.write(fh, off, buf)

    @_errors
    async def flush(self, fh: int) -> None:
        # Nothing is buffered on our side. ENOSYS makes the kernel stop sending FLUSH
        # (one request less per close); it still writes dirty pages back first.
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        self.union.fsync(fh, datasync)

    @_errors
    async def release(self, fh: int) -> None:
        self.released()
        self.union.release(fh)

    def released(self) -> None:
        """Our release of the handles whose RELEASE fs/read_shim.c answered (read-only
        ones): before any OPEN, CREATE, RELEASE, UNLINK or RENAME, and when the session
        ends. Deferred bookkeeping: an error here belongs to no request, so it is logged."""
        for fh in kcache.released():
            try:
                self.union.release(fh)
            except OSError:
                log.warning("rsbox fs: release of handle %d failed", fh, exc_info=True)

    @_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return self.union.opendir(inode)

    @_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        union = self.union
        listing = union.readdir_ino if self.dirs_by_inode else union.readdir
        for next_id, name, node, attr, counted in listing(fh, start_id):
            raw = name.encode("utf-8", "surrogateescape")  # os.fsencode, without the call
            if not pyfuse3.readdir_reply(token, raw, self._reply(node, attr), next_id):
                if counted:
                    union.forget([(node.ino, 0)])
                break
            if counted:
                union.took(node)
        self._trim()

    def _reply(self, node: Node, attr: Attr) -> pyfuse3.EntryAttributes:
        """_entry(attr) of `node`, kept on a directory's node next to its Attr (fs.union
        keeps those of lower directories): the kernel asks for a directory's attributes
        after every listing it reads, and hashing an Attr costs more than this. A file's
        is made afresh: the kernel keeps a file's attributes itself, and 208 bytes of
        reply on every file node would be a third of its weight."""
        if not node.dirs:
            return _make_entry(attr)
        cached = node.reply
        if cached is not None and cached[0] is attr:
            return cast(pyfuse3.EntryAttributes, cached[1])
        entry = _make_entry(attr)
        node.reply = (attr, entry)
        return entry

    @_errors
    async def releasedir(self, fh: int) -> None:
        self.union.release(fh)

    @_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        pass

    @_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = self.union.statfs()
        out = pyfuse3.StatvfsData()
        for field in (
            "f_bsize",
            "f_frsize",
            "f_blocks",
            "f_bfree",
            "f_bavail",
            "f_files",
            "f_ffree",
            "f_favail",
            "f_namemax",
        ):
            setattr(out, field, getattr(st, field))
        return out

    @_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if name != CAPS:
            return self.union.getxattr(inode, _name(name))
        # Asked before every write (module docstring): answered from memory when we can.
        if inode in self._caps:
            known = self._caps[inode]
        else:
            try:
                known = self.union.getxattr(inode, _name(name))
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    raise
                known = None
            if len(self._caps) >= 1 << 14:
                self._caps.clear()
            self._caps[inode] = known
        if known is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return known

    @_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [os.fsencode(n) for n in self.union.listxattr(inode)]

    @_errors
    @_changes_meta
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        await self._upper_copy(inode)
        self.union.setxattr(inode, _name(name), value)

    @_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        self.union.access(inode)  # default_permissions: the kernel checked already
        return True

    @_errors
    @_changes_meta
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self._upper_copy(inode)
        self.union.removexattr(inode, _name(name))


_mounted: UnionOps | None = None  # pyfuse3 allows one mount per process


def inode_count() -> int:
    """Nodes in the mounted union's inode table (what the kernel holds, about)."""
    return 0 if _mounted is None else len(_mounted.union.nodes)


def emulate_owners(owner_of: Callable[[int], tuple[int, int] | None]) -> None:
    """Files created through the mounted union get `owner_of(pid)` as owners when it says
    so (fs.owners.CredentialTable.fs_owner; `pid` is the caller's thread id as we see it)."""
    if _mounted is not None:
        _mounted.owner_of = owner_of


def owner(ino: int) -> tuple[int, int]:
    """The true owner of inode `ino` of the mounted union (on the trio thread)."""
    assert _mounted is not None
    return _mounted.union.owner(ino)


async def chown(ino: int, uid: int | None, gid: int | None) -> None:
    """Record a chown of inode `ino` (see Union.chown). The kernel may still hold the old
    attributes: call `forget_attributes` next, from a worker thread."""
    assert _mounted is not None
    await _mounted.record_chown(ino, uid, gid)


def forget_attributes(ino: int) -> None:
    """Make the kernel ask for inode `ino`'s attributes again. Blocking (pyfuse3 writes to
    /dev/fuse): call it from a worker thread, never from a handler."""
    with contextlib.suppress(OSError):  # ENOENT: the kernel has forgotten the inode already
        pyfuse3.invalidate_inode(pyfuse3.InodeT(ino), attr_only=True)


def mount(spec: UnionSpec, mountpoint: Path, *, kernel_cache: kcache.Mode | None = None) -> None:
    """Mount the union at `mountpoint` (no threads started; serve it with `serve`).

    `kernel_cache`: what the kernel may cache (fs.kcache.Mode); None means what the
    environment says (RSBOX_FS_KERNEL_CACHE, default on).
    Raises OSError for every failure (bad layer metadata, /dev/fuse, the mount itself)."""
    global _mounted
    ops = UnionOps(Union(spec))
    kcache.configure(kcache.wanted() if kernel_cache is None else kernel_cache)
    # libfuse reports failures as -1 plus a message on stderr; probe what we can first so
    # the common cases carry a real errno and file name.
    os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    if not mountpoint.is_dir():
        raise OSError(errno.ENOTDIR, "mountpoint is not a directory", str(mountpoint))
    try:
        pyfuse3.init(ops, str(mountpoint), set(MOUNT_OPTIONS))
    except RuntimeError as exc:
        raise OSError(
            errno.EIO, f"FUSE mount failed: {exc} (libfuse says why above)", str(mountpoint)
        ) from exc
    ops.dirs_by_inode = kcache.status().no_opendir
    _mounted = ops


class _ReadLock:
    """The lock pyfuse3's session loops take around "wait until /dev/fuse is readable"
    (one loop waits on the fd at a time), without trio.Lock's checkpoint when it is free.
    pyfuse3 takes it once per request, and the wait for the fd right after it is a
    checkpoint already: trio.Lock's own made every request two passes through trio's
    scheduler instead of one. Taken when free, waited for like trio.Lock otherwise."""

    def __init__(self) -> None:
        self._lock = trio.Lock()

    async def __aenter__(self) -> None:
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class _Readable:
    """trio.lowlevel.wait_readable for /dev/fuse that returns at once when a request is
    already queued (a poll(2) with no timeout says so), for up to FAST_IN_A_ROW requests
    in a row; then, or when nothing is queued, it waits as trio does (a checkpoint: the
    other tasks run, cancellation is seen). A program walking a tree has its next request
    queued by the time we are back from the last one more often than not, and trio's
    wait costs an epoll_ctl, an epoll_wait and a pass through its scheduler."""

    FAST_IN_A_ROW = 16

    def __init__(self) -> None:
        self._polls: dict[int, select.poll] = {}
        self._in_a_row = 0

    async def __call__(self, fd: int) -> None:
        poll = self._polls.get(fd)
        if poll is None:
            poll = self._polls[fd] = select.poll()
            poll.register(fd, select.POLLIN)
        if self._in_a_row < self.FAST_IN_A_ROW and poll.poll(0):
            self._in_a_row += 1
            return
        self._in_a_row = 0
        await trio.lowlevel.wait_readable(fd)


def _lean_session_loop() -> None:
    """Give pyfuse3 _ReadLock for its trio.Lock and _Readable for its wait_readable.
    pyfuse3 reaches trio through its module attribute `trio` (pyfuse3.asyncio swaps the
    whole module there the same way) and makes its read lock on the first request: a
    copy of trio's namespace with these two in it, set before serving, is all it takes."""
    lowlevel = types.ModuleType("trio.lowlevel")
    lowlevel.__dict__.update(vars(trio.lowlevel))
    lowlevel.wait_readable = _Readable()  # type: ignore[attr-defined]
    lean = types.ModuleType("trio")
    lean.__dict__.update(vars(trio))
    lean.Lock = _ReadLock  # type: ignore[attr-defined]
    lean.lowlevel = lowlevel  # type: ignore[attr-defined]
    setattr(pyfuse3, "trio", lean)  # noqa: B010 (not in pyfuse3's stubs)


# pyfuse3's session loop, `_session_loop(nursery, min_tasks, max_tasks)`: what
# pyfuse3.main runs, one task per worker. A loop starts another when it has just read a
# request, no other loop waits to read, and fewer than `max_tasks` run (a count that only
# pyfuse3.main sets); it ends when more than `min_tasks` other loops wait to read. pyfuse3
# cannot change its number of workers while it runs, so `serve` drives the loops itself:
_KEEP = 2**31 - 1  # the first loop never ends before the session does
_NO_SPAWN = -(2**31)  # no loop starts another: the count is never below this


async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer FUSE requests until the filesystem is unmounted, `stop()`, or cancelled.

    One session loop answers every request (pyfuse3.main(max_tasks=1) would do the same).
    A request that waits long (a copy-up on a worker thread) asks for a second loop
    through `UnionOps.readers`; that one answers the others meanwhile and ends after the
    first request it reads once another loop waits to read again, i.e. once the first
    is back. A pyfuse3 without `_session_loop` gets pyfuse3.main and no second loop."""
    ops = _mounted
    session_loop = getattr(pyfuse3, "_session_loop", None)
    if getattr(pyfuse3, "trio", None) is trio:
        _lean_session_loop()
    _settle_collector()
    task_status.started()  # mounted already: the kernel queues requests until we read
    if ops is None or session_loop is None:
        await pyfuse3.main(min_tasks=1, max_tasks=1)
        return
    send, wanted = trio.open_memory_channel[None](math.inf)
    ops.readers = send
    try:
        async with trio.open_nursery() as nursery:

            async def first() -> None:
                await session_loop(nursery, _KEEP, _NO_SPAWN)
                nursery.cancel_scope.cancel()  # unmounted or stopped: the helpers too

            nursery.start_soon(first)
            async for _ in wanted:
                nursery.start_soon(session_loop, nursery, 0, _NO_SPAWN)
    finally:
        ops.readers = None


def _settle_collector() -> None:
    """What exists before serving (imports, the mount) lives as long as the server: out
    of every collection from now on (P1 freezes its own too). And the objects a walk
    makes are mostly nodes that stay: collect the youngest generation every 5000 new
    objects, not 700. A cold walk of 43k entries in-process spent 50 ms collecting, 9
    with both (nothing else in its time changed beyond the spread)."""
    gc.freeze()
    gc.set_threshold(5000, 10, 10)


def stop() -> None:
    """Make `serve` return (from the trio thread). Cancelling serve's scope works too."""
    pyfuse3.terminate()


def close() -> None:
    """Unmount and free the session; errors are logged, never raised (teardown path)."""
    if _mounted is not None:
        _mounted.released()
    try:
        pyfuse3.close(unmount=True)
    except Exception:
        log.warning("rsbox fs: close failed", exc_info=True)


def serve_until_signal() -> None:
    """The stand-alone servers (`python -m fs`, `rsbox-overlayfs`): serve until SIGINT or
    SIGTERM, then unmount; or until someone else unmounts (umount, fusermount -u, Podman
    done with a container), then exit, as fuse-overlayfs does."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop() -> None:
                await serve()
                nursery.cancel_scope.cancel()  # unmounted: nothing left to serve

            nursery.start_soon(serve_then_stop)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop()
                    break
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        close()
