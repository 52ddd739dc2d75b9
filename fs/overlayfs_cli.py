"""`rsbox-overlayfs`: fuse-overlayfs's command line, served by rsbox's union filesystem.

    rsbox-overlayfs [-f] [-d] -o lowerdir=A:B,upperdir=U,workdir=W[,OPTS] [SOURCE] MOUNTPOINT

So tools that drive fuse-overlayfs (containers/storage's `mount_program`, Podman) and
benchmarks can mount our filesystem the same way as its peer:

- mount(8) works too: `mount -t fuse.rsbox-overlayfs SOURCE MNT -o lowerdir=...` runs
  /sbin/mount.fuse (fuse3's mount.fuse3; util-linux looks for `mount.fuse.rsbox-overlayfs`
  first, then `mount.fuse` for any `fuse.*` type), which runs
  `/bin/sh -c "rsbox-overlayfs SOURCE MNT -o OPTS,dev,suid"`. SOURCE is ignored, as by
  fuse-overlayfs. mount(8) drops PATH from the environment of its helpers, so the shell
  searches its default PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin):
  `rsbox-overlayfs` must be there, e.g. a link in /usr/local/bin to the installed one.

- `lowerdir` lists layers top first, as overlayfs does; they are plain directory trees:
  ownership and modes are what lstat says, and both overlayfs whiteouts (0/0 character
  devices, `trusted.overlay.opaque`/`user.overlay.opaque`) and OCI ones are honoured.
- `upperdir` receives the writes (rsbox's format: OCI whiteouts, metadata in
  `user.rsbox.override`); without one the mount gets a private, throw-away upper.
  `workdir` is accepted and unused (copy-up temporaries live next to their target).
- `squash_to_root`, `squash_to_uid=N`, `squash_to_gid=N` show every file as owned by
  0 / N. `uidmapping`/`gidmapping` are accepted when they are the identity (what Podman
  passes for a rootless user) and refused otherwise. `noacl`, `fsync=`, `volatile`,
  `static_nlink`, `xino=`, `threaded=`, `context=`, `index=`, `redirect_dir=`, `ro` and
  other fuse-overlayfs tuning options are accepted and ignored.
- `no_kernel_cache` (or `kernel_cache=0`, `=opendir`): ours, for debugging: the kernel
  does not cache listings and symlink targets, or still sends OPENDIR (fs.kcache; the
  default is RSBOX_FS_KERNEL_CACHE's, on).
- Once mounted it goes to the background (the command returns 0), as fuse-overlayfs
  does, unless `-f`. The daemon exits when the filesystem is unmounted.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fs import kcache, server
from fs.union import UnionSpec

_IGNORED = {
    "noacl",
    "fsync",
    "volatile",
    "static_nlink",
    "xino",
    "threaded",
    "context",
    "fscontext",
    "defcontext",
    "rootcontext",
    "index",
    "redirect_dir",
    "metacopy",
    "ro",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "userxattr",
    "plugins",
    "debug",
    "allow_other",
    "allow_root",
    "default_permissions",
    "auto_unmount",
}


class UsageError(Exception):
    pass


@dataclass
class Options:
    mountpoint: Path
    lowers: list[Path]  # bottom first, as UnionSpec wants
    upper: Path | None
    foreground: bool
    squash_uid: int | None
    squash_gid: int | None
    kernel_cache: kcache.Mode | None = None  # None: RSBOX_FS_KERNEL_CACHE decides


def _identity_mapping(value: str) -> bool:
    """`A:B:N[:A:B:N...]` maps ids to themselves (containers/storage's format)."""
    parts = value.split(":")
    if len(parts) % 3:
        return False
    return all(parts[i] == parts[i + 1] for i in range(0, len(parts), 3))


def parse(argv: list[str]) -> Options:
    opts: list[str] = []
    positional: list[str] = []
    foreground = False
    it = iter(argv)
    for arg in it:
        if arg == "-o":
            opts.extend(next(it, "").split(","))
        elif arg.startswith("-o"):
            opts.extend(arg[2:].split(","))
        elif arg in ("-f", "-d", "--debug"):
            foreground = True
        elif arg in ("-V", "--version"):
            raise UsageError("rsbox-overlayfs: version 1 (fuse-overlayfs compatible command line)")
        elif arg in ("-h", "--help"):
            raise UsageError(__doc__ or "")
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}")
        else:
            positional.append(arg)
    if len(positional) not in (1, 2):
        raise UsageError("expected [SOURCE] MOUNTPOINT")
    lowers: list[Path] = []
    upper: Path | None = None
    squash_uid = squash_gid = None
    kernel_cache: kcache.Mode | None = None
    for opt in filter(None, opts):
        key, _, value = opt.partition("=")
        if key == "lowerdir":
            lowers = [Path(p).resolve() for p in reversed(value.split(":")) if p]
        elif key == "upperdir":
            upper = Path(value).resolve()
        elif key == "workdir":
            pass
        elif key == "squash_to_root":
            squash_uid = squash_gid = 0
        elif key == "squash_to_uid":
            squash_uid = int(value)
        elif key == "squash_to_gid":
            squash_gid = int(value)
        elif key == "no_kernel_cache":
            kernel_cache = kcache.Mode.OFF
        elif key == "kernel_cache":
            try:
                kernel_cache = kcache.Mode(value)
            except ValueError:
                raise UsageError(f"kernel_cache={value}: 0, opendir or 1") from None
        elif key in ("uidmapping", "gidmapping"):
            if not _identity_mapping(value):
                raise UsageError(f"{key}={value}: only the identity mapping is supported")
        elif key not in _IGNORED:
            raise UsageError(f"unknown mount option {key}")
    if not lowers:
        raise UsageError("-o lowerdir=DIR[:DIR...] is required")
    mountpoint = Path(positional[-1]).resolve()  # SOURCE (mount(8) passes one) is ignored
    return Options(mountpoint, lowers, upper, foreground, squash_uid, squash_gid, kernel_cache)


def _mapped_ids() -> range:
    """The ids of our user namespace (0..N-1 as Podman maps them): files owned by an id
    outside it are shown as 0, as the kernel refuses writes to unmapped owners."""
    top = 0
    for line in Path("/proc/self/uid_map").read_text().splitlines():
        inside, _, count = (int(x) for x in line.split())
        if inside == 0 or top:
            top = max(top, inside + count)
    return range(0, max(top, 1))


def main(argv: list[str] | None = None) -> int:
    try:
        o = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        if str(exc).startswith("rsbox-overlayfs: version"):
            print(exc)
            return 0
        print(f"rsbox-overlayfs: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"rsbox-overlayfs: {exc}", file=sys.stderr)
        return 2
    upper = o.upper or Path(tempfile.mkdtemp(prefix="rsbox-overlayfs-upper-"))
    spec = UnionSpec(
        tuple(o.lowers),
        upper,
        _mapped_ids(),
        plain_lowers=True,
        squash_uid=o.squash_uid,
        squash_gid=o.squash_gid,
    )
    try:
        server.mount(spec, o.mountpoint, kernel_cache=o.kernel_cache)
    except OSError as exc:
        print(f"rsbox-overlayfs: {exc}", file=sys.stderr)
        return 1
    if not o.foreground:
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() > 0:
            os._exit(0)  # mounted: the caller may use it now
        os.setsid()
        os.chdir("/")
        fd = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(fd, std)
        os.close(fd)
    server.serve_until_signal()
    return 0


if __name__ == "__main__":
    sys.exit(main())
