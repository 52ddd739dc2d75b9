"""Image truth that an unprivileged extraction cannot keep on disk.

A layer is extracted by the host user U without privileges: every file on disk belongs to
U, device nodes cannot be created, and a directory of mode 0000 would lock U out of its own
extraction. What the tarball really said is kept in a `meta` file next to the layer's
`fs/` directory and served by the union filesystem instead of what `lstat` sees.

Only entries that differ from "owned by 0:0, mode as on disk, plain file/dir/symlink" are
recorded, so a typical root-owned image layer has a small meta file.

The format is JSON (version 1):

    {"version": 1,
     "entries": {"usr/bin/passwd": {"uid": 0, "gid": 0, "mode": 35309},
                 "dev/null": {"uid": 0, "gid": 0, "mode": 8630, "rdev": 259},
                 "home/u": {"uid": 1000, "gid": 1000, "mode": 16877,
                            "xattrs": {"user.x": "base64..."}}}}

Paths are relative to the layer root, without a leading slash, "/" separated, and name
the entry as it is in the layer (whiteout files included). `mode` is the full st_mode
(file type bits included), so a character device that is a placeholder regular file on disk
is served as a device.

This module is shared by the extraction (rootless) and the filesystem (fs); it has no
dependency on either side.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

META_VERSION = 1


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """What the image says about one entry; overrides lstat of the extracted file."""

    uid: int
    gid: int
    mode: int  # full st_mode, type bits included
    rdev: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"uid": self.uid, "gid": self.gid, "mode": self.mode}
        if self.rdev:
            out["rdev"] = self.rdev
        if self.xattrs:
            out["xattrs"] = {
                k: base64.b64encode(v).decode("ascii") for k, v in sorted(self.xattrs.items())
            }
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> EntryMeta:
        xattrs_raw = obj.get("xattrs") or {}
        if not isinstance(xattrs_raw, dict):
            raise ValueError("meta: xattrs must be an object")
        uid, gid, mode, rdev = obj["uid"], obj["gid"], obj["mode"], obj.get("rdev", 0)
        if not all(isinstance(v, int) for v in (uid, gid, mode, rdev)):
            raise ValueError("meta: uid, gid, mode and rdev must be integers")
        assert isinstance(uid, int) and isinstance(gid, int)
        assert isinstance(mode, int) and isinstance(rdev, int)
        return cls(
            uid=uid,
            gid=gid,
            mode=mode,
            rdev=rdev,
            xattrs={str(k): base64.b64decode(str(v)) for k, v in xattrs_raw.items()},
        )


def encode_entry(meta: EntryMeta) -> bytes:
    """What an upper entry's metadata is recorded as (decode_entry reads it back)."""
    return json.dumps(meta.to_json()).encode()


@functools.lru_cache(maxsize=4096)
def decode_entry(raw: bytes) -> EntryMeta:
    """An upper entry's recorded metadata (JSON, as to_json wrote it) -> EntryMeta,
    remembered by its bytes: a container's entries share few distinct values (its users'
    ids and a few modes), and decoding (json.loads + from_json, ~6 us here) was paid on
    every GETATTR of an upper entry and on every create. EntryMeta is immutable (nothing
    changes its xattrs mapping in place), so one value serves every entry. ValueError
    (and what from_json raises) for a corrupt one, which is not remembered."""
    return EntryMeta.from_json(json.loads(raw))


@dataclass(slots=True)
class LayerMeta:
    """All overrides of one layer, keyed by relative path."""

    entries: dict[str, EntryMeta] = field(default_factory=dict)

    def get(self, relpath: str) -> EntryMeta | None:
        return self.entries.get(relpath)

    def set(self, relpath: str, entry: EntryMeta) -> None:
        self.entries[relpath.strip("/")] = entry

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def dumps(self) -> str:
        return json.dumps(
            {
                "version": META_VERSION,
                "entries": {k: v.to_json() for k, v in sorted(self.entries.items())},
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str) -> LayerMeta:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != META_VERSION:
            raise ValueError(f"meta: unsupported format (want version {META_VERSION})")
        entries = doc.get("entries", {})
        if not isinstance(entries, dict):
            raise ValueError("meta: entries must be an object")
        return cls({str(k): EntryMeta.from_json(v) for k, v in entries.items()})

    @classmethod
    def load(cls, path: Path) -> LayerMeta:
        """Read a meta file; a missing file means "no overrides"."""
        try:
            return cls.loads(path.read_text())
        except FileNotFoundError:
            return cls()

    def save(self, path: Path) -> None:
        """Write atomically: tmp file in the same directory, fsync, rename."""
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(self.dumps())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
