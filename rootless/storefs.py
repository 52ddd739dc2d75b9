"""What the filesystem under a store can do, and what the store does about it.

On a shared machine the store often sits on the home directory, and the home directory
on NFS, Lustre, GPFS, BeeGFS or an SMB share. Three things change there:

- SQLite's WAL mode keeps its index in a memory-mapped `-shm` file shared by every
  process: it only works when all of them run on one host, so the SQLite documentation
  ("WAL" section 8, "Write-Ahead Logging ... does not work over a network filesystem")
  rules it out on network filesystems. A rollback journal (`journal_mode=DELETE`) with
  SQLite's default POSIX (fcntl) byte-range locks works wherever those locks do: NFSv4
  and NFSv3 with lockd, Lustre mounted with `-o flock`, GPFS, BeeGFS, CIFS. We never use
  the `unix-dotfile` VFS: it is not atomic across clients and leaves stale lock
  directories after a crash. A rollback journal is also what lets other users read a
  shared store without writing anything into it (a WAL reader must be able to write or
  create `-shm`), so a store that others may read gets one too, on any filesystem.
- Every write in a writable layer on a network filesystem is a round trip, and a job
  on one node has no use for another node seeing its scratch files: writable layers go
  to local disk when the store is remote (`plan`), or wherever `--tmp-root` says.
- The union filesystem keeps what the container set (owners, modes, xattrs) on upper
  files in `user.*` xattrs, which many NFS and Lustre setups refuse; where they are
  refused it keeps the same records in files by inode (fs.inode_meta), by itself. We
  still probe, to say so in `rsbox info`.
- The store's own `lock` file uses flock(2), which Linux maps to fcntl locks on NFS
  since 2.6.12 (so it holds across clients); on Lustre it needs the `flock` mount option.

The xattr probe costs a file creation, so it runs once per store and its answer is kept
in cache/filesystem.json, keyed by the device and filesystem type (a store moved or
remounted elsewhere is probed again).
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fs.inode_meta import takes_user_xattrs
from rootless import syscalls as sc
from rootless.errors import StoreError
from rootless.lifecycle import atomic_write_json, read_json


class Kind(enum.Enum):
    LOCAL = "local"
    NETWORK = "network"  # shared by several hosts: NFS, SMB, parallel filesystems
    FUSE = "fuse"  # anything from sshfs to a local passthrough: treated as network
    UNKNOWN = "unknown"  # treated as network: the choices that are safe everywhere


# statfs f_type -> (name, kind); <linux/magic.h> and the vendors' sources.
FILESYSTEMS: dict[int, tuple[str, Kind]] = {
    0xEF53: ("ext4", Kind.LOCAL),  # ext2/3/4 share the magic
    0x58465342: ("xfs", Kind.LOCAL),
    0x9123683E: ("btrfs", Kind.LOCAL),
    0x01021994: ("tmpfs", Kind.LOCAL),
    0x858458F6: ("ramfs", Kind.LOCAL),
    0x2FC12FC1: ("zfs", Kind.LOCAL),
    0xF2F52010: ("f2fs", Kind.LOCAL),
    0xCA451A4E: ("bcachefs", Kind.LOCAL),
    0x794C7630: ("overlay", Kind.LOCAL),
    0x4D44: ("vfat", Kind.LOCAL),
    0x2011BAB0: ("exfat", Kind.LOCAL),
    0x5346544E: ("ntfs", Kind.LOCAL),
    0x7366746E: ("ntfs3", Kind.LOCAL),
    0x6969: ("nfs", Kind.NETWORK),
    0x0BD00BD0: ("lustre", Kind.NETWORK),
    0x47504653: ("gpfs", Kind.NETWORK),
    0x19830326: ("beegfs", Kind.NETWORK),
    0xFF534D42: ("cifs", Kind.NETWORK),
    0xFE534D42: ("smb2", Kind.NETWORK),
    0x517B: ("smb", Kind.NETWORK),
    0x00C36400: ("ceph", Kind.NETWORK),
    0x20030528: ("orangefs", Kind.NETWORK),
    0x5346414F: ("afs", Kind.NETWORK),
    0x6B414653: ("kafs", Kind.NETWORK),
    0x01021997: ("9p", Kind.NETWORK),
    0x65735546: ("fuse", Kind.FUSE),  # also glusterfs, cvmfs, sshfs, virtiofs
}


def classify(f_type: int) -> tuple[str, Kind]:
    """The name and kind of the filesystem whose statfs magic is `f_type`."""
    return FILESYSTEMS.get(f_type, (f"unknown (0x{f_type:x})", Kind.UNKNOWN))


def probe_user_xattrs(directory: Path) -> bool:
    """Whether files in `directory` take user.* xattrs: really sets one on a new file
    (fs's probe, which the union also runs on an upper directory)."""
    return takes_user_xattrs(os.fspath(directory))


Probe = Callable[[Path], bool]


@dataclass(frozen=True, slots=True)
class StoreFs:
    """What the filesystem under one store is and can do."""

    name: str
    kind: Kind
    user_xattrs: bool

    @property
    def local(self) -> bool:
        return self.kind is Kind.LOCAL


@dataclass(frozen=True, slots=True)
class StorePlan:
    """The choices made for one store, each with the reason `rsbox info` prints."""

    journal_mode: str  # "wal" or "delete"
    journal_why: str
    local_uppers: bool  # writable layers outside the store, on local disk
    uppers_why: str


def plan(fs: StoreFs, shared: bool, tmp_root_given: bool = False) -> StorePlan:
    """Journal mode and where writable layers go, for a store on `fs` that others may
    read (`shared`: group or others have search permission on its root); an explicit
    `--tmp-root` (`tmp_root_given`) always takes the writable layers."""
    if not fs.local:
        journal, jwhy = "delete", f"{fs.name} is a {fs.kind.value} filesystem: WAL needs one host"
    elif shared:
        journal, jwhy = "delete", "others may read this store: WAL readers would write -shm"
    else:
        journal, jwhy = "wal", f"{fs.name} is local and the store is private"
    if tmp_root_given:
        local, uwhy = True, "--tmp-root or RSBOX_TMP_ROOT says so"
    elif not fs.local:
        local, uwhy = True, f"{fs.name} is a {fs.kind.value} filesystem"
    elif not fs.user_xattrs:
        local, uwhy = False, f"{fs.name} is local; no user.* xattrs: metadata in files"
    else:
        local, uwhy = False, f"{fs.name} is local"
    return StorePlan(journal, jwhy, local, uwhy)


def is_shared(root: Path) -> bool:
    """Others may read the store: its root is searchable by group or others."""
    return bool(os.stat(root).st_mode & (stat.S_IXGRP | stat.S_IXOTH))


def share_mask(root: Path) -> int:
    """The read and search bits (group, others) the store's root gives away: what
    every image file and directory written into it gets too (0 for a private store)."""
    return os.stat(root).st_mode & 0o055


# What every member of a group-writable store's group writes into when it pulls (the
# database and its journal's directory, the writer lock, the per-blob locks, tmp/ and the
# directories things are renamed into); never the blobs or layers themselves, which stay
# immutable, nor containers/ (a container's records belong to its user: members run from
# the store with --image-store).
GROUP_WRITES = (".", "store.db", "lock", "blobs", "blobs/sha256", "layers", "tmp", "cache", "locks")


def open_to_group(root: Path) -> None:
    """A store whose root is group-writable (`chmod g+ws`, the group of its writers) gets
    group write on `GROUP_WRITES`, for those of them its opener owns (the owner's first
    command after the chmod does it). SQLite gives the journal the database's mode."""
    if not os.stat(root).st_mode & stat.S_IWGRP:
        return
    for sub in GROUP_WRITES:
        path = root / sub
        with contextlib.suppress(OSError):  # missing, or another member's: not ours to chmod
            st = os.lstat(path)
            if st.st_uid != os.getuid() or stat.S_ISLNK(st.st_mode):
                continue
            want = 0o070 if stat.S_ISDIR(st.st_mode) else 0o060
            if want & ~st.st_mode:
                os.chmod(path, stat.S_IMODE(st.st_mode) | want)


def share_top(path: Path, mask: int) -> None:
    """`path` itself (not below) gets the bits of `share_mask` it lacks."""
    st = os.lstat(path)
    want = mask if stat.S_ISDIR(st.st_mode) else mask & 0o044
    if want & ~st.st_mode:
        os.chmod(path, stat.S_IMODE(st.st_mode) | want)


def share_tree(path: Path, mask: int) -> None:
    """Give `path` and everything below it the bits of `share_mask` (read for files,
    read and search for directories) before it gets its final name in a shared store.
    An image's unreadable files (mode 0600 on disk, their truth in the layer's meta)
    become readable to those who may read the store: its blobs hold the same bytes."""
    if not mask:
        return
    if not path.is_dir():
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | (mask & 0o044))
        return
    for dirpath, _, filenames in os.walk(path):  # never follows symlinks
        os.chmod(dirpath, stat.S_IMODE(os.lstat(dirpath).st_mode) | mask)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(p, stat.S_IMODE(st.st_mode) | (mask & 0o044))


def detect(root: Path, probe: Probe = probe_user_xattrs) -> StoreFs:
    """The filesystem of the store at `root` (which exists and is ours): statfs every
    time (a few microseconds), the xattr probe once per device and type (the answer is
    cached in root/cache/filesystem.json; `probe` is for tests)."""
    try:
        f_type = sc.statfs_type(root)
        dev = os.stat(root).st_dev
    except OSError as exc:
        raise StoreError(f"cannot read the filesystem of {root}: {exc}") from exc
    name, kind = classify(f_type)
    cache = root / "cache" / "filesystem.json"
    known = read_json(cache)
    if known.get("f_type") == f_type and known.get("dev") == dev:
        xattrs = bool(known.get("user_xattrs"))
    else:
        try:
            xattrs = probe(root / "tmp")
        except OSError as exc:
            raise StoreError(
                f"cannot write in the store at {root}: {exc}",
                hint="check permissions, or choose another place with --root or RSBOX_ROOT",
            ) from exc
        with contextlib.suppress(OSError):  # only a cache
            atomic_write_json(cache, {"f_type": f_type, "dev": dev, "user_xattrs": xattrs})
    return StoreFs(name, kind, xattrs)


def given_tmp_root(option: Path | None) -> Path | None:
    """`--tmp-root`, else $RSBOX_TMP_ROOT, else None (not chosen by the user)."""
    if option is not None:
        return option
    env = os.environ.get("RSBOX_TMP_ROOT")
    return Path(env) if env else None


def default_tmp_root() -> Path:
    """Where writable layers go when the store is remote and no `--tmp-root` is given:
    /var/tmp/rsbox-UID. /var/tmp rather than $XDG_RUNTIME_DIR or /tmp: a stopped
    container keeps its writable layer, which must survive a reboot (FHS: /var/tmp is
    preserved) and may be larger than the RAM-sized runtime directory."""
    return Path(f"/var/tmp/rsbox-{os.getuid()}")


def private_dir(path: Path) -> Path:
    """`path`, created 0700 if missing, refused unless it is ours and not writable by
    others (writable layers and their metadata must not be changed behind our back)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise StoreError(
            f"cannot use {path} for writable layers: {exc}",
            hint="choose a local directory with --tmp-root DIR or RSBOX_TMP_ROOT",
        ) from exc
    if st.st_uid != os.getuid() or st.st_mode & 0o022 or not stat.S_ISDIR(st.st_mode):
        raise StoreError(
            f"{path} (for writable layers) is not a directory private to you",
            hint="choose another with --tmp-root DIR or RSBOX_TMP_ROOT",
        )
    return path
