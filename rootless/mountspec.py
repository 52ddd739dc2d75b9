"""`-v`, `--mount` and `--tmpfs` of `run`, parsed once into `runspec.Volume` values (pure).

Docker's grammar (docs run.md "Add bind mounts or volumes", and the --mount syntax of
docs/storage), with rsbox's choices written down:

* `-v SRC:DST[:OPTS]`: SRC absolute or `.`-relative is a host path (a bind mount); any
  other SRC is the name of a volume in the store, created on first use. `-v DST` alone is
  an anonymous volume (a random 64-hex name, removed with its container by `rm -v` or
  `run --rm`). OPTS, comma separated: `ro`, `rw`, `nocopy` (a new volume is not filled
  from the image), `z`, `Z`. The last two relabel for SELinux; rsbox runs where
  SELinux labels do not apply to a rootless user's files, so they are accepted and do
  nothing (said in the README).
* `--mount type=bind|volume|tmpfs,src=...,dst=...[,readonly][,volume-nocopy]
  [,tmpfs-size=BYTES][,tmpfs-mode=OCTAL]` (`source`, `destination`/`target`, `ro` too;
  `type` defaults to volume as in Docker; a volume without `src` is anonymous).
* `--tmpfs DST[:OPTS]`: a tmpfs of the container's own mount namespace, `noexec,nosuid,
  nodev` unless OPTS say otherwise (Docker's default); OPTS are tmpfs(5)'s `size=`,
  `mode=`, `uid=`, `gid=`, `nr_inodes=` and the mount flags below.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from rootless.errors import UsageError
from rootless.runspec import Volume

#: Docker's rule for a local volume's name (daemon/names: RestrictedNamePattern).
VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
VOLUME_OPTIONS = ("ro", "rw", "nocopy", "z", "Z")
TMPFS_DEFAULT = ("noexec", "nosuid", "nodev")
#: tmpfs mount flags rsbox passes on (each cancels its opposite).
TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev")
_TMPFS_DATA = re.compile(r"(size=\d+[kmg%]?|mode=[0-7]{1,4}|uid=\d+|gid=\d+|nr_inodes=\d+[kmg]?)")
_SIZE = re.compile(r"(\d+)([kmg]?)(?:i?b)?", re.IGNORECASE)

_V_HINT = "use -v /host/path:/ctr/path[:ro], -v NAME:/ctr/path[:ro] or -v /ctr/path"


def check_volume_name(name: str) -> str:
    if not VOLUME_NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid volume name: use at least two of [a-zA-Z0-9_.-], "
            "starting with a letter or digit",
            hint="for a host directory, give an absolute path (or ./relative)",
        )
    return name


def _target(text: str, what: str) -> str:
    if not text.startswith("/"):
        raise UsageError(f"{what} destination {text!r} is not absolute", hint="write it as /path")
    return os.path.normpath(text)


def parse_volume_flag(text: str) -> Volume:
    """`-v SRC:DST[:OPTS]` or `-v DST`."""
    parts = text.split(":")
    if len(parts) == 1 and parts[0]:
        return Volume(Path(""), _target(parts[0], "volume"), kind="volume", anonymous=True)
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {text!r}", hint=_V_HINT)
    opts = [o for o in parts[2].split(",") if o] if len(parts) == 3 else []
    for o in opts:
        if o not in VOLUME_OPTIONS:
            raise UsageError(
                f"invalid volume option {o!r} in {text!r}",
                hint="use ro, rw, nocopy, z or Z, comma separated",
            )
    readonly = "ro" in opts
    target = _target(parts[1], "volume")
    src = parts[0]
    if src.startswith("/") or src.startswith("."):
        return Volume(Path(os.path.abspath(src)), target, readonly)
    options = "nocopy" if "nocopy" in opts else ""
    return Volume(
        Path(""), target, readonly, kind="volume", name=check_volume_name(src), options=options
    )


def _boolean(key: str, value: str | None, text: str) -> bool:
    if value is None or value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise UsageError(
        f"invalid value {value!r} for {key} in --mount {text!r}", hint="use true or false"
    )


def tmpfs_size(value: str) -> str:
    """A size as Docker takes it (64m, 1g, 1048576, 64MiB) -> tmpfs(5)'s `size=` value."""
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise UsageError(f"invalid tmpfs size {value!r}", hint="use bytes or 64k, 64m, 1g")
    return m.group(1) + m.group(2).lower()


def parse_mount_flag(text: str) -> Volume:
    """`--mount type=...,src=...,dst=...,...` (Docker's CSV form)."""
    fields = next(csv.reader([text]), [])
    kind, source, target, readonly = "volume", "", "", False
    nocopy = False
    tmpfs: list[str] = []
    for item in fields:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        val = value if eq else None
        if key == "type" and val in ("bind", "volume", "tmpfs"):
            kind = val
        elif key == "type":
            raise UsageError(
                f"unsupported mount type {val!r} in --mount {text!r}",
                hint="use type=bind, type=volume or type=tmpfs",
            )
        elif key in ("source", "src") and val:
            source = val
        elif key in ("destination", "dst", "target") and val:
            target = val
        elif key in ("readonly", "ro"):
            readonly = _boolean(key, val, text)
        elif key == "volume-nocopy":
            nocopy = _boolean(key, val, text)
        elif key == "tmpfs-size" and val:
            tmpfs.append(f"size={tmpfs_size(val)}")
        elif key == "tmpfs-mode" and val and re.fullmatch(r"[0-7]{1,4}", val):
            tmpfs.append(f"mode={val}")
        elif key == "consistency":  # macOS file sharing: nothing to do on Linux (as Docker)
            continue
        else:
            raise UsageError(
                f"invalid field {item!r} in --mount {text!r}",
                hint="known: type, src, dst, readonly, volume-nocopy, tmpfs-size, tmpfs-mode",
            )
    if not target:
        raise UsageError(f"--mount {text!r} has no destination", hint="add dst=/path")
    dst = _target(target, "mount")
    if kind == "bind":
        if not source:
            raise UsageError(
                f"--mount {text!r}: a bind mount needs src=", hint="add src=/host/path"
            )
        if not source.startswith("/"):
            raise UsageError(
                f"--mount {text!r}: a bind source must be an absolute path", hint="src=/host/path"
            )
        return Volume(Path(os.path.normpath(source)), dst, readonly)
    if kind == "tmpfs":
        if source:
            raise UsageError(f"--mount {text!r}: a tmpfs has no source", hint="drop src=")
        flags = [*TMPFS_DEFAULT, "ro"] if readonly else list(TMPFS_DEFAULT)
        return Volume(Path(""), dst, readonly, "tmpfs", options=",".join(flags + tmpfs))
    if tmpfs:
        raise UsageError(f"--mount {text!r}: tmpfs-* fields need type=tmpfs", hint="add type=tmpfs")
    options = "nocopy" if nocopy else ""
    if not source:
        return Volume(Path(""), dst, readonly, "volume", anonymous=True, options=options)
    return Volume(Path(""), dst, readonly, "volume", check_volume_name(source), options=options)


def parse_tmpfs_flag(text: str) -> Volume:
    """`--tmpfs DST[:OPTS]`."""
    target, _, opts = text.partition(":")
    dst = _target(target, "tmpfs")
    options = list(TMPFS_DEFAULT)
    for o in (o.strip() for o in opts.split(",") if o.strip()):
        if o in TMPFS_FLAGS:
            opposite = o[2:] if o.startswith("no") else f"no{o}"
            opposite = {"ro": "rw", "rw": "ro"}.get(o, opposite)
            options = [x for x in options if x not in (o, opposite)] + [o]
        elif o.startswith("size="):
            options.append(f"size={tmpfs_size(o[5:])}")
        elif _TMPFS_DATA.fullmatch(o):
            options.append(o)
        else:
            raise UsageError(
                f"invalid tmpfs option {o!r} in --tmpfs {text!r}",
                hint="use size=, mode=, uid=, gid=, nr_inodes=, ro, rw, exec, noexec, "
                "suid, nosuid, dev, nodev",
            )
    return Volume(Path(""), dst, "ro" in options, "tmpfs", options=",".join(options))


def tmpfs_mount_args(options: str) -> tuple[int, str]:
    """A tmpfs Volume's options -> (mount flags, data). A tmpfs mounted in a user
    namespace other than the initial one is always nodev (the kernel adds it)."""
    from rootless import syscalls as sc

    bits = {
        "ro": sc.MS_RDONLY,
        "nosuid": sc.MS_NOSUID,
        "nodev": sc.MS_NODEV,
        "noexec": sc.MS_NOEXEC,
    }
    flags = 0
    data = []
    for o in options.split(","):
        if o in bits:
            flags |= bits[o]
        elif o and o not in TMPFS_FLAGS:
            data.append(o)
    return flags, ",".join(data)
