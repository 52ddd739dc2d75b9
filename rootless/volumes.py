"""Volumes: directories in the store that outlive the containers that mount them.

Layout below the store's root::

    volumes/<name>/volume.json   the record: Docker's `volume inspect` fields, plus
                                 whether it is anonymous and whether it still waits for
                                 its first fill from an image (NeedsCopyUp)
    volumes/<name>/_data         what containers mount (Docker's name for it)

A volume appears whole: record and `_data` are made in tmp/, then the directory is
renamed into volumes/ under the store's writer lock (a second command creating the same
name finds it there and uses it). Which containers use a volume is read from their
config.json (`volumes`: the names), which `run` writes before the container's record
exists; `volume rm` and `prune` look under the same lock, so a volume a container was
just created with is never removed from under it.

Ownership. `_data` is a directory of the user U, bind mounted as it is:

* full id map (a subordinate range): container root is U, so the container sees `_data`
  owned by root; a file the container writes as uid N (N > 0) is, on the host, owned by
  the Nth id of U's range (/etc/subuid), as with Podman. U cannot delete those directly:
  `rsbox volume rm` removes them from inside a user namespace with the same map.
* single id map (`0 U 1`): every file U owns is root's in the container, any other host
  id shows as nobody (65534), and the container cannot chown to other ids.

A new volume is filled from the image at the path it is mounted on, with the owners and
modes the container sees there (rootless.launch.copyup), the first time a container
mounts it and only if it is still empty (Docker's and Podman's rule; `nocopy` skips it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rootless.errors import UsageError, VolumeError
from rootless.lifecycle import CONFIG_NAME, atomic_write_json, now, read_json
from rootless.mountspec import check_volume_name
from rootless.runspec import Volume
from rootless.store import Container, Store, random_hex, rmtree_forcefully

RECORD = "volume.json"
DATA = "_data"
_HINT_LS = "list volumes with `rsbox volume ls`"


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    mountpoint: Path
    created: str  # RFC 3339, UTC
    labels: Mapping[str, str]
    anonymous: bool
    needs_copy_up: bool

    def inspect(self) -> dict[str, Any]:
        """Docker's `volume inspect` object (local driver, no options)."""
        return {
            "CreatedAt": self.created,
            "Driver": "local",
            "Labels": dict(self.labels),
            "Mountpoint": str(self.mountpoint),
            "Name": self.name,
            "Options": {},
            "Scope": "local",
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.inspect(),
            "Anonymous": self.anonymous,
            "NeedsCopyUp": self.needs_copy_up,
        }


def container_volume_names(config: Mapping[str, Any]) -> list[str]:
    """The volumes a container's config.json names."""
    names = config.get("volumes")
    return [str(n) for n in names] if isinstance(names, list) else []


class Volumes:
    """The volumes of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.root / "volumes"
        self.dir.mkdir(mode=0o700, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.dir / check_volume_name(name)

    def find(self, name: str) -> VolumeRecord | None:
        doc = read_json(self.path(name) / RECORD)
        if not doc:
            return None
        return VolumeRecord(
            name=name,
            mountpoint=self.path(name) / DATA,
            created=str(doc.get("CreatedAt") or ""),
            labels=MappingProxyType({str(k): str(v) for k, v in (doc.get("Labels") or {}).items()}),
            anonymous=bool(doc.get("Anonymous")),
            needs_copy_up=bool(doc.get("NeedsCopyUp")),
        )

    def get(self, name: str) -> VolumeRecord:
        rec = self.find(name)
        if rec is None:
            raise VolumeError(f"no such volume: {name}", hint=_HINT_LS)
        return rec

    def all(self) -> list[VolumeRecord]:
        out = []
        for entry in sorted(os.listdir(self.dir)):
            with contextlib.suppress(UsageError):  # not a volume's name: not ours
                rec = self.find(entry)
                if rec is not None:
                    out.append(rec)
        return out

    def create(
        self,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        anonymous: bool = False,
    ) -> tuple[VolumeRecord, bool]:
        """Make the volume unless it exists (Docker's `volume create` of an existing name
        is no error). Returns it and whether this call made it."""
        name = random_hex(32) if name is None else check_volume_name(name)
        existing = self.find(name)
        if existing is not None:
            return existing, False
        work = Path(tempfile.mkdtemp(prefix="volume-", dir=self.store.tmp))
        try:
            (work / DATA).mkdir(mode=0o755)
            os.chmod(work / DATA, 0o755)  # what an empty volume shows, whatever the umask
            rec = VolumeRecord(
                name=name,
                mountpoint=self.path(name) / DATA,
                created=now().split(".")[0] + "Z",
                labels=MappingProxyType(dict(labels or {})),
                anonymous=anonymous,
                needs_copy_up=True,
            )
            atomic_write_json(work / RECORD, rec.to_json())
            os.chmod(work, 0o700)
            with self.store.lock():
                try:
                    os.rename(work, self.path(name))
                except OSError:  # another command made it meanwhile (ENOTEMPTY, EEXIST)
                    found = self.find(name)
                    if found is None:
                        raise
                    return found, False
            return rec, True
        except OSError as exc:
            raise VolumeError(f"cannot create volume {name}: {exc.strerror}") from exc
        finally:
            if work.exists():
                rmtree_forcefully(work)

    def users(self) -> dict[str, list[Container]]:
        """Volume name -> the containers (running or not) whose config names it."""
        out: dict[str, list[Container]] = {}
        for c in self.store.containers():
            for name in container_volume_names(read_json(c.dir / CONFIG_NAME)):
                out.setdefault(name, []).append(c)
        return out

    def remove(self, name: str) -> int:
        """Remove a volume no container uses; returns the bytes it held."""
        from rootless.housekeeping import disk_usage

        gone = self.store.tmp / f"gone-volume-{random_hex(8)}"
        with self.store.lock():
            self.get(name)
            users = self.users().get(name)
            if users:
                raise VolumeError(
                    f"remove {name}: volume is in use - [{', '.join(c.id for c in users)}]",
                    hint="remove the container(s) first, or use `rsbox volume rm -f` to "
                    "remove them with it",
                )
            size = disk_usage([self.path(name)])
            os.rename(self.path(name), gone)
        remove_tree(gone)
        return size

    def attach(self, volumes: Sequence[Volume]) -> tuple[Volume, ...]:
        """For `run`, once the container's record exists (so no prune or rm can take
        these volumes from under it): create the named and anonymous volumes that do
        not exist yet, point each at its directory, and say which to fill from the
        image (a volume not yet filled, still empty, without `nocopy`)."""
        out = []
        for v in volumes:
            if v.kind != "volume":
                out.append(v)
                continue
            rec, _ = self.create(v.name, anonymous=v.anonymous)
            copy_up = False
            if rec.needs_copy_up:
                with self.store.lock():  # two containers starting at once: one fills it
                    rec = self.get(rec.name)
                    if rec.needs_copy_up:
                        with os.scandir(rec.mountpoint) as entries:
                            empty = next(entries, None) is None
                        copy_up = empty and "nocopy" not in v.options.split(",")
                        doc = rec.to_json() | {"NeedsCopyUp": False}
                        atomic_write_json(self.path(rec.name) / RECORD, doc)
            out.append(replace(v, source=rec.mountpoint, copy_up=copy_up))
        return tuple(out)


def name_anonymous(volumes: Iterable[Volume], image_paths: Iterable[str]) -> tuple[Volume, ...]:
    """The mounts of a new container: the user's, then an anonymous volume for each of
    the image's VOLUME paths that no mount of the user covers (Docker's rule); every
    anonymous volume gets its random name here."""
    mine = list(volumes)
    targets = {v.target for v in mine}
    mine += [
        Volume(Path(""), os.path.normpath(p), kind="volume", anonymous=True)
        for p in image_paths
        if p.startswith("/") and os.path.normpath(p) not in targets
    ]
    return tuple(
        replace(v, name=random_hex(32)) if v.kind == "volume" and not v.name else v for v in mine
    )


def image_volume_paths(store: Store, image_id: str) -> list[str]:
    """The image config's `Volumes` (VOLUME in a Containerfile)."""
    try:
        doc = json.loads(store.image_config_bytes(image_id))
    except ValueError:
        return []
    vols = (doc.get("config") or {}).get("Volumes") or {}
    return sorted(str(p) for p in vols) if isinstance(vols, dict) else []


def remove_anonymous(store: Store, volumes: Iterable[Volume]) -> None:
    """`rm -v` and `run --rm`: the container's anonymous volumes, unless another
    container uses one."""
    vols = Volumes(store)
    for v in volumes:
        if v.kind == "volume" and v.anonymous:
            with contextlib.suppress(VolumeError):
                vols.remove(v.name)


# --- removing what the container wrote ------------------------------------------------------


def remove_tree(path: Path) -> None:
    """Remove a volume's tree. Files the container wrote as a non-root id belong, on the
    host, to the user's subordinate ids, and their directories may not let the user in:
    what a plain removal leaves is removed from a user namespace with the full map,
    where those ids are ours (CAP_DAC_OVERRIDE over them)."""
    with contextlib.suppress(OSError):
        rmtree_forcefully(path)
    if not os.path.lexists(path):
        return
    from rootless.idmap import host_idmap

    idmap = host_idmap("auto")
    if not idmap.full or _remove_in_userns(path, idmap) != 0 or os.path.lexists(path):
        raise VolumeError(
            f"cannot remove all of {path}: files there belong to ids this user cannot map",
            hint="check /etc/subuid and /etc/subgid, then remove the directory",
        )


def _remove_in_userns(path: Path, idmap: Any) -> int:
    """Fork; the child makes a user namespace (it is single-threaded: unshare(NEWUSER)
    refuses a threaded process), waits until we wrote its maps with the setuid helpers,
    then removes `path` as root of that namespace. Returns the child's status."""
    from rootless import syscalls as sc
    from rootless.launch.p0 import write_maps

    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only os-level calls, then _exit
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            if os.read(go_r, 1) == b"m":
                rmtree_forcefully(path)
                code = 0
        except BaseException:
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) == b"u":
            write_maps(pid, idmap)
            os.write(go_w, b"m")
    finally:
        os.close(ready_r)
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
