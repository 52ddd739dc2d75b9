"""What the container's pid 1 mounts over the union rootfs, as data (pure).

The plan is a list of typed steps that `rootless.launch.p3` executes in order. The
order matters:

1. /proc first: the masks below are mounts inside it.
2. /dev is a small tmpfs holding bind mounts of the host's harmless devices (a user
   namespace cannot mknod; a tmpfs it mounts is always nodev, but a bind mount of a host
   device node keeps working), a private devpts instance and /dev/shm.
3. /sys is the host's, bound read-only, unless the container has a network namespace of
   its own: only then may we mount a fresh sysfs (read-only), which lists its interfaces.
4. /etc/hosts, /etc/hostname, /etc/resolv.conf are files rsbox wrote for this container.
5. The user's mounts (-v, --mount, --tmpfs, the image's VOLUMEs), so that they may cover
   any of the above (as Docker allows), parents before what is mounted below them; a new
   volume is first filled from the image at its path (`CopyUp`, rootless.launch.copyup),
   which the mount then covers.
6. Masks last (Docker's list): over /proc entries that leak host state or are writable;
   none with --privileged (Docker's rule).
7. --init: rsbox-init, bound read-only at /dev/init (our own tmpfs: nothing is created in
   the image's tree, and /proc/1/exe names a path of the container, not of the host).

A remount that adds MS_RDONLY to a bind mount must repeat the flags the kernel locked on
it when our user namespace inherited it (nosuid, nodev, noexec, atime flags), else EPERM:
the executor reads those with statvfs and ORs them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rootless import syscalls as sc
from rootless.mountspec import tmpfs_mount_args
from rootless.runspec import Volume

HOST_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_SYMLINKS = (
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
# Docker's masked and read-only /proc paths.
MASKED_FILES = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
)
MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True, slots=True)
class Mount:
    """mount(source, rootfs+target, fstype, flags, data); `create` is what the target
    must be ("dir" or "file") and is made if missing."""

    target: str
    source: str | None
    fstype: str | None
    flags: int = 0
    data: str | None = None
    create: str = "dir"
    readonly: bool = False  # a bind mount then remounted read-only
    optional: bool = False  # skip when the source or the target does not exist


@dataclass(frozen=True, slots=True)
class Symlink:
    target: str
    points_to: str


@dataclass(frozen=True, slots=True)
class CopyUp:
    """Fill the (empty, new) volume directory `dest` from the rootfs at `target`."""

    target: str
    dest: str


Step = Mount | Symlink | CopyUp


def mount_plan(
    *,
    etc_files: dict[str, Path],
    volumes: tuple[Volume, ...],
    full_idmap: bool,
    own_network: bool = False,
    privileged: bool = False,
    init_binary: Path | None = None,
) -> list[Step]:
    nosuid_nodev_noexec = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    steps: list[Step] = [
        Mount("/proc", "proc", "proc", nosuid_nodev_noexec),
        Mount("/dev", "tmpfs", "tmpfs", sc.MS_NOSUID, "mode=755,size=65536k"),
    ]
    for dev in HOST_DEVICES:
        steps.append(Mount(f"/dev/{dev}", f"/dev/{dev}", None, sc.MS_BIND, create="file"))
    # gid=5 (tty) only exists in the container when the full map is there.
    pts_data = "newinstance,ptmxmode=0666,mode=0620" + (",gid=5" if full_idmap else "")
    steps += [
        Mount("/dev/pts", "devpts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC, pts_data),
        Mount("/dev/shm", "shm", "tmpfs", nosuid_nodev_noexec, "mode=1777,size=65536k"),
        Mount("/dev/mqueue", "mqueue", "mqueue", nosuid_nodev_noexec, optional=True),
    ]
    steps += [Symlink(f"/dev/{name}", to) for name, to in DEV_SYMLINKS]
    if own_network:  # sysfs shows the mounter's network namespace: ours, so a fresh one
        steps.append(Mount("/sys", "sysfs", "sysfs", nosuid_nodev_noexec | sc.MS_RDONLY))
    else:
        steps.append(Mount("/sys", "/sys", None, sc.MS_BIND | sc.MS_REC, readonly=True))
        # The read-only remount above covers /sys itself, not the host's cgroup mounts
        # bound with it: hide them under an empty read-only tmpfs (Docker shows its own
        # cgroup, read-only; with no cgroup of ours there is nothing to show).
        steps.append(
            Mount(
                "/sys/fs/cgroup",
                "cgroup",
                "tmpfs",
                sc.MS_RDONLY | nosuid_nodev_noexec,
                "size=0",
                optional=True,
            )
        )
    for name, path in sorted(etc_files.items()):
        steps.append(Mount(f"/etc/{name}", str(path), None, sc.MS_BIND, create="file"))
    # Docker's order: by depth, so that /a is mounted before /a/b (stable: the user's
    # order otherwise).
    for v in sorted(volumes, key=lambda v: v.target.rstrip("/").count("/")):
        if v.kind == "tmpfs":
            flags, data = tmpfs_mount_args(v.options)
            steps.append(Mount(v.target, "tmpfs", "tmpfs", flags, data or None))
            continue
        if v.copy_up:
            steps.append(CopyUp(v.target, str(v.source)))
        kind = "dir" if v.source.is_dir() else "file"
        steps.append(
            Mount(
                v.target,
                str(v.source),
                None,
                sc.MS_BIND | sc.MS_REC,
                create=kind,
                readonly=v.readonly,
            )
        )
    if init_binary is not None:
        steps.append(
            Mount("/dev/init", str(init_binary), None, sc.MS_BIND, create="file", readonly=True)
        )
    if privileged:
        return steps
    for masked in MASKED_FILES:
        steps.append(Mount(masked, "/dev/null", None, sc.MS_BIND, create="file", optional=True))
    for masked in MASKED_DIRS:
        steps.append(Mount(masked, "tmpfs", "tmpfs", sc.MS_RDONLY, "size=0", optional=True))
    for ro in READONLY_PATHS:  # source None: the container's own path, bound onto itself
        steps.append(Mount(ro, None, None, sc.MS_BIND | sc.MS_REC, readonly=True, optional=True))
    return steps


def secure_join(root: str, path: str, *, max_links: int = 40) -> str:
    """Resolve `path` as if `root` were `/`: `..` stops at root and absolute symlinks are
    re-rooted, so an image's symlink can never send a mount outside the rootfs. Missing
    components are kept literally (they are created later, inside root)."""
    import os

    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a symlink, or missing: take it literally
            resolved.append(part)
            continue
        links += 1
        if links > max_links:
            raise OSError(40, "too many levels of symbolic links", path)  # ELOOP
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)
