"""The kernel's caches of directory listings and symlink targets, through fs/cache_shim.c.

Why: a warm `find` over a tree the kernel already knows used to cost one OPENDIR, one or
more READDIRPLUS and one RELEASEDIR per directory, each a round trip through pyfuse3 and
trio; readlink the same per symlink followed. The kernel can keep both itself
(FOPEN_CACHE_DIR + FOPEN_KEEP_CACHE on OPENDIR, FUSE_CAP_CACHE_SYMLINKS in INIT), but
pyfuse3 3.5 cannot ask for either; the C shim does it underneath pyfuse3 (see its
comment for how). By default it also answers OPENDIR with ENOSYS (the kernel then opens
directories without asking and caches every listing: no OPENDIR, no RELEASEDIR; fs.union
lists by inode then, `Union.readdir_ino`). Requests of a warm `find` over the bench image
(2374 directories): 2374 OPENDIR + 4686 READDIRPLUS + 2374 RELEASEDIR without the shim;
2374 OPENDIR + 2374 RELEASEDIR (+ one GETATTR per directory, the first time) with cached
listings; nothing but those GETATTRs without OPENDIR. Times: README "Filesystem".

How it is loaded: importing this module loads the shim with RTLD_GLOBAL, so it must
happen before pyfuse3 is imported (fs.server imports this module first). pyfuse3's
extension is loaded with RTLD_NOW and binds `fuse_session_new` then: to ours, since a
global library comes before pyfuse3's own dependencies in the lookup order. If pyfuse3
was imported earlier, or the shim is missing (a source checkout without an installed
rsbox) or fails to load, the mount works as before, without these caches; `status()`
says which, and `rsbox info` shows it.

The knob, for debugging a listing that looks stale: RSBOX_FS_KERNEL_CACHE in the
server's environment, `0` (or `python -m fs --no-kernel-cache`, `rsbox-overlayfs -o
no_kernel_cache`) keeps the shim from touching the session, `opendir` keeps OPENDIR and
RELEASEDIR (listings still cached).

Correctness: the kernel drops a directory's cached listing itself whenever the directory
changes through the mount: create, mknod, mkdir, symlink, link, unlink, rmdir and
rename (both sides) call fuse_dir_changed() (fs/fuse/dir.c), which bumps the inode's
i_version, and a listing read from offset 0 compares it, and the mtime, with the
cache's (fs/fuse/readdir.c). Every change to a union directory's listing is one of
those requests on that directory: we are the upper's only writer, layers are immutable,
and what a request does besides (copy-up, whiteouts, opaque markers, parents made in
the upper) leaves every merged listing as it was. So no FUSE_NOTIFY_INVAL_INODE of ours
is needed, and none is sent: tests/fs/test_kcache.py shows both the cache at work (a
file slipped into the upper behind the kernel's back stays unlisted) and every kind of
change showing in the next listing of each directory it touched. A failed request gets
no reset, and needs none: it changed no listing. A symlink's target never changes
(another target is another inode), so its cache needs no invalidation either.

READ in C (fs/read_shim.c, in the same library): fs.server hands the shim each file
handle's host fd when it answers OPEN or CREATE (`serve_reads`), and READs of those
handles are answered in C, never entering Python (why, and what it changes: see
there). RSBOX_FS_C_READ in the server's environment: `0` keeps READ in Python, for
debugging, `copy` answers it in C without splice (through a buffer); RSBOX_FS_KERNEL_CACHE=0
turns it off with the rest of the shim.

Where the shim is: next to this module in an installed rsbox (setup.py builds it). A
source checkout imports `fs` from the checkout, where nothing is built: there the copy
in the environment's site-packages is used (reinstall after editing cache_shim.c).
"""

from __future__ import annotations

import ctypes
import enum
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fs.built import installed_copies
from fs.knobs import is_off

_Choice = TypeVar("_Choice", "Mode", "CRead")

NAME = "librsbox-fscache.so"
ENV = "RSBOX_FS_KERNEL_CACHE"
ENV_C_READ = "RSBOX_FS_C_READ"
INTERFACE = 3  # rsbox_fs_shim_version() of the cache_shim.c this module speaks to

# rsbox_fs_shim_status() bits
_WRAPPED = 1
_INIT = 2
_SYMLINKS = 4
_FH_IS_INO = 32
_C_READ_ON = 64
# rsbox_fs_shim_configure() flags
_ENABLE = 1
_NO_OPENDIR = 2
_C_READ = 4
_C_READ_COPY = 8


class Mode(enum.Enum):
    OFF = "0"  # pyfuse3 as it is
    OPENDIR = "opendir"  # listings and symlinks cached; OPENDIR/RELEASEDIR still sent
    ON = "1"  # ... and directories opened without us (the default)


@dataclass(frozen=True)
class Shim:
    """The loaded library, or why there is none."""

    path: Path | None
    lib: ctypes.CDLL | None
    why: str = ""
    late: bool = False  # pyfuse3 was loaded first: this process's session cannot be wrapped


def _load() -> Shim:
    late = "pyfuse3" in sys.modules
    failures: list[str] = []
    for found in installed_copies(os.path.dirname(__file__), "fs", [NAME]):
        if not os.path.isfile(found):
            continue
        path = Path(found)
        try:
            lib = ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL | os.RTLD_NOW)
        except OSError as exc:
            failures.append(str(exc))
            continue
        lib.rsbox_fs_shim_version.restype = ctypes.c_int
        lib.rsbox_fs_shim_status.restype = ctypes.c_uint
        lib.rsbox_fs_shim_configure.argtypes = [ctypes.c_int]
        lib.rsbox_fs_shim_configure.restype = None
        version = lib.rsbox_fs_shim_version()
        if version != INTERFACE:
            # Loaded, and it will interpose: make it pass everything through.
            lib.rsbox_fs_shim_configure(0)
            return Shim(path, None, f"{path} speaks interface {version}, not {INTERFACE}")
        # fs/read_shim.c's (interface 3 on): an older library has none of them.
        lib.rsbox_fs_read_register.argtypes = [ctypes.c_uint64, ctypes.c_int, ctypes.c_int]
        lib.rsbox_fs_read_register.restype = ctypes.c_int
        lib.rsbox_fs_read_released.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_int]
        lib.rsbox_fs_read_released.restype = ctypes.c_int
        lib.rsbox_fs_read_count.argtypes = [ctypes.c_int]
        lib.rsbox_fs_read_count.restype = ctypes.c_ulonglong
        lib.rsbox_fs_read_spliced.restype = ctypes.c_int
        return Shim(path, lib, late=late)
    if failures:
        return Shim(None, None, "; ".join(failures))
    return Shim(None, None, f"{NAME} is not installed (it is built with the package)")


SHIM = _load()  # once per process: interposition is process-wide, like pyfuse3's session


def _choice(kind: type[_Choice], name: str) -> _Choice:
    """The member of `kind` the environment variable `name` names by its value: "0" for
    0/off/no/false, any other word its own, the "1" member when unset or unknown."""
    value = os.environ.get(name, "1").strip().lower()
    try:
        return kind("0" if is_off(value) else value)
    except ValueError:
        return kind("1")


def wanted() -> Mode:
    """The environment's choice: RSBOX_FS_KERNEL_CACHE=0/off/no, =opendir, else on."""
    return _choice(Mode, ENV)


class CRead(enum.Enum):
    OFF = "0"  # READ in Python
    COPY = "copy"  # in C, through a buffer (no splice)
    ON = "1"  # in C, spliced when the kernel offers it (the default)


def wanted_c_read() -> CRead:
    """RSBOX_FS_C_READ=0/off/no: READ in Python; =copy: in C without splice; else in C."""
    return _choice(CRead, ENV_C_READ)


def configure(mode: Mode, c_read: CRead | None = None) -> None:
    """Before pyfuse3.init: what the shim does to the session it is about to create.
    `c_read` None: what the environment says (`wanted_c_read`)."""
    flags = {Mode.OFF: 0, Mode.OPENDIR: _ENABLE, Mode.ON: _ENABLE | _NO_OPENDIR}[mode]
    read = wanted_c_read() if c_read is None else c_read
    if flags:
        flags |= {CRead.OFF: 0, CRead.COPY: _C_READ | _C_READ_COPY, CRead.ON: _C_READ}[read]
    if SHIM.lib is not None:
        SHIM.lib.rsbox_fs_shim_configure(flags)


def _no_reads(fh: int, fd: int, release_here: bool) -> int:
    return 0


# serve_reads(fh, fd, release_here): from then until the RELEASE of `fh`, READs of it are
# answered in C from `fd` (fs/read_shim.c); returns 1 if so, 0 if they still come to
# Python. `release_here`: its RELEASE too, the fh then queued for `released()`. The C
# function itself when the shim is loaded: it costs ~0.3 us per OPEN this way.
serve_reads = SHIM.lib.rsbox_fs_read_register if SHIM.lib is not None else _no_reads
_RELEASED_MAX = 1024  # read_shim.c's RELEASED_MAX
_released = (ctypes.c_uint64 * _RELEASED_MAX)()


def released() -> list[int]:
    """The fhs whose RELEASE the shim has answered since the last call: the caller's own
    release of each is still to do (their fds are still open)."""
    if SHIM.lib is None:
        return []
    return _released[: SHIM.lib.rsbox_fs_read_released(_released, _RELEASED_MAX)]


def read_counts() -> tuple[int, int]:
    """READs of this process's session answered in C, and handed to Python, so far."""
    if SHIM.lib is None:
        return 0, 0
    return int(SHIM.lib.rsbox_fs_read_count(0)), int(SHIM.lib.rsbox_fs_read_count(1))


@dataclass(frozen=True)
class Status:
    available: bool  # the shim is loaded and will wrap a session if allowed
    active: bool  # this process's session was created through it
    no_opendir: bool  # ... without OPENDIR: readdir gets the inode in place of a handle
    symlinks: bool  # the kernel granted symlink caching (known once INIT was answered)
    detail: str
    c_read: bool = False  # READ is answered in C (fs/read_shim.c)


def status() -> Status:
    if SHIM.lib is None:
        return Status(False, False, False, False, f"unavailable: {SHIM.why}")
    bits = int(SHIM.lib.rsbox_fs_shim_status())
    where = f"({SHIM.path})"
    if not bits & _WRAPPED:
        late = ", but pyfuse3 was imported before fs.kcache" if SHIM.late else ""
        return Status(True, False, False, False, f"available{late} {where}")
    symlinks = bool(bits & _SYMLINKS)
    no_opendir = bool(bits & _FH_IS_INO)
    what = "listings" + (" and symlink targets" if symlinks else "")
    if bits & _INIT and not symlinks:
        what += " (this kernel has no symlink caching)"
    how = ", directories opened without the server" if no_opendir else ""
    c_read = bool(bits & _C_READ_ON)
    if c_read:
        spliced = SHIM.lib.rsbox_fs_read_spliced()
        how += ", READ answered in C" + (" (spliced)" if spliced else "")
    return Status(
        True, True, no_opendir, symlinks, f"{what} cached by the kernel{how} {where}", c_read
    )


def report() -> tuple[bool, str]:
    """For `rsbox info`: whether mounts get the kernel's caches, and what it means."""
    mode = wanted()
    if SHIM.lib is None:
        return False, f"not in use, {SHIM.why}: directory walks are several times slower"
    if mode is Mode.OFF:
        return True, f"turned off ({ENV}=0) for debugging: directory walks are slower"
    how = "" if mode is Mode.ON else f", with OPENDIR ({ENV}=opendir)"
    how += (
        f", file reads in Python ({ENV_C_READ}=0)"
        if wanted_c_read() is CRead.OFF
        else ", file reads answered in C"
    )
    return True, f"listings and symlink targets cached by the kernel{how} ({SHIM.path})"
