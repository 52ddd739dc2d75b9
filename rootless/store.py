"""The local image and container store: no root, no daemon, safe for concurrent commands.

Layout below the root (see docs/architecture.md, "The store")::

    store.db            SQLite (WAL): images, names, image->layers, layer refcounts,
                        containers
    lock                flock(LOCK_EX) by writers, for short critical sections only
    locks/<key>.lock    per-blob locks held while a layer is extracted, so two commands
                        importing the same blob do the work once (the second one waits,
                        then finds the layer)
    blobs/sha256/<hex>  content-addressed blobs as imported (digest verified)
    layers/<diffid>/    fs/ (the files) and meta (fs.meta.LayerMeta)
    containers/<id>/    upper/, rootfs/, config.json
    tmp/                same filesystem; everything is built here, then renamed into place
    cache/              derived data that may be deleted at any time (seccomp BPF cache)

Atomicity: a blob or a layer directory is complete before it gets its final name
(write in tmp/, fsync, rename). Rows in the database are written after the files they
name exist, in one transaction under the writer lock, so a crash leaves at worst an
orphan in tmp/ or an unreferenced layer directory, never a row pointing at nothing.

The filesystem under the store decides the journal mode and where writable layers go
(rootless.storefs). Read-only image stores (`--image-store`) are other stores searched
after this one and never written: an image of theirs that a container here uses gets a
row in `images` naming its store (`image_sources`), so the container outlives the option.

Names follow Podman's rules for local images (`normalize_name`): a name without a
registry part gets ``localhost/``, a name without a tag gets ``:latest``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from . import storefs
from .containers_lookup import find_row
from .errors import ContainerError, ImageError, ImageNotFound, LayerError, StoreError, UsageError
from .locations import root_dir
from .storefs import StoreFs, StorePlan

if TYPE_CHECKING:
    from .config import Settings

    # rootless.extract (tarfile, gzip, bz2, lzma...) is imported where layers are written:
    # `run` and `exec` never do, and it cost every run 11-24 ms of CPU under load.
    from .extract import SpaceGuard

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEXPREFIX = re.compile(r"[0-9a-f]{4,64}")
# distribution/reference grammar, simplified: lowercase path components, optional domain.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::\d+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

LOCAL_DOMAIN = "localhost"
_SCHEMA_VERSION = 3
# Added in version 2: written once, for new stores and for the migration of older ones.
_DIGESTS_TABLE = """CREATE TABLE IF NOT EXISTS digests (
    ref       TEXT PRIMARY KEY,      -- registry/repository@sha256:<hex>, as pulled by digest
    image_id  TEXT NOT NULL REFERENCES images(id)
)"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id        TEXT PRIMARY KEY,      -- hex sha256 of the config blob
    config    TEXT NOT NULL,         -- the config JSON (also in blobs/)
    manifest  TEXT,                  -- digest of the manifest it came from, if any
    created   TEXT NOT NULL,         -- from the config, RFC 3339
    added     TEXT NOT NULL,         -- when it entered this store
    size      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    name      TEXT PRIMARY KEY,      -- normalised, e.g. localhost/busybox:latest
    image_id  TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS layers (
    diff_id   TEXT PRIMARY KEY,      -- hex sha256 of the uncompressed tar
    blob      TEXT NOT NULL,         -- hex sha256 of the blob it was extracted from
    size      INTEGER NOT NULL,      -- uncompressed size
    refcount  INTEGER NOT NULL DEFAULT 0  -- rows in image_layers naming it
);
CREATE INDEX IF NOT EXISTS layers_blob ON layers(blob);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id  TEXT NOT NULL REFERENCES images(id),
    position  INTEGER NOT NULL,      -- 0 = bottom
    diff_id   TEXT NOT NULL REFERENCES layers(diff_id),
    PRIMARY KEY (image_id, position)
);
CREATE TABLE IF NOT EXISTS containers (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    image_id  TEXT NOT NULL REFERENCES images(id),
    created   TEXT NOT NULL
);
"""
# Added in version 3: an image of a read-only image store that containers of this store
# use has a row in `images` here (so `containers.image_id` stays a foreign key) and one
# in this table naming the store that holds its layers; it has no layers or names here.
_SOURCES_TABLE = """CREATE TABLE IF NOT EXISTS image_sources (
    image_id  TEXT PRIMARY KEY REFERENCES images(id),
    store     TEXT NOT NULL          -- root of the read-only store that holds the image
)"""
_SCHEMA += _DIGESTS_TABLE + ";\n" + _SOURCES_TABLE + ";\n"

# What brings a store of version N to N + 1 (new tables only, so older rows stay valid).
_MIGRATIONS = {1: _DIGESTS_TABLE, 2: _SOURCES_TABLE}

_HINT_LIST = "list local images with `rsbox images`, or add one with `rsbox import`"

#: What to keep free on the store's filesystem while layers and blobs are written.
RESERVE_ENV = "RSBOX_STORE_RESERVE"
_GIB = 1024**3
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


# --- names -----------------------------------------------------------------------------


def normalize_name(ref: str, default_domain: str = LOCAL_DOMAIN) -> str:
    """Normalise an image name the way Podman does for local images.

    * no registry part (the first component has no ``.``/``:`` and is not ``localhost``)
      -> ``localhost/`` is prepended (``busybox`` -> ``localhost/busybox:latest``);
    * no tag -> ``:latest``;
    * digests (``@sha256:...``) are not names and are refused;
    * path components must be lowercase (``[a-z0-9]`` with ``._-`` separators).

    Raises UsageError for something that is not a valid name.
    """
    if "@" in ref:
        raise UsageError(f"invalid image name {ref!r}: digests cannot be used as names")
    from .registry.reference import registry_part

    domain = registry_part(ref)
    path = ref[len(domain) + 1 :] if domain is not None else ref
    if domain is None:
        domain = default_domain
    tag = "latest"
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if not _DOMAIN.fullmatch(domain):
        raise UsageError(f"invalid registry {domain!r} in image name {ref!r}")
    if not path or not all(_PATH_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise UsageError(
            f"invalid image name {ref!r}",
            hint="names are lowercase letters, digits and . _ - separated by /",
        )
    if not _TAG.fullmatch(tag):
        raise UsageError(f"invalid tag {tag!r} in image name {ref!r}")
    return f"{domain}/{path}:{tag}"


def split_name(name: str) -> tuple[str, str]:
    """``localhost/busybox:1`` -> (``localhost/busybox``, ``1``)."""
    repo, _, tag = name.rpartition(":")
    return repo, tag


def _short_candidates(ref: str) -> tuple[str, str] | None:
    """For an unqualified ref, the (path, tag) to match against any registry."""
    from .registry.reference import registry_part

    if registry_part(ref) is not None:
        return None
    path, tag = ref, "latest"
    if ":" in path.rsplit("/", 1)[-1]:
        path, _, tag = path.rpartition(":")
    return path, tag


# --- the reserve of free space --------------------------------------------------------


def store_reserve(total: int, setting: str | None = None) -> int:
    """Bytes that writing layers and blobs must leave free on a filesystem of ``total``
    bytes.

    Default: 2% of the filesystem, at least 2 GiB, but never more than a fifth of it
    (a 5 GiB filesystem keeps 1 GiB, 100 GiB keeps 2 GiB, 1 TiB keeps 20 GiB): enough
    that a bomb or a runaway pull cannot take the last space other users and processes
    of a shared machine need, small enough that a small filesystem stays usable.
    ``setting`` (`RESERVE_ENV`) replaces it: bytes with an optional K, M, G or T suffix
    (powers of 1024: ``512M``, ``10G``, ``1.5GiB``), a percentage of the filesystem
    (``5%``), or ``0`` to keep nothing back. Raises UsageError for anything else.
    """
    if setting is None or not setting.strip():
        return min(max(2 * _GIB, total * 2 // 100), total // 5)
    text = setting.strip()
    if m := _PERCENT.fullmatch(text):
        percent = float(m.group(1))
        if percent <= 100:
            return int(total * percent / 100)
    elif m := _SIZE.fullmatch(text):
        unit = 1024 ** " kmgt".index(m.group(2).lower() or " ")
        return int(float(m.group(1)) * unit)
    raise UsageError(
        f"{RESERVE_ENV}={setting!r} is not a size",
        hint="use bytes with an optional K, M, G or T suffix (10G), a percentage of the "
        "filesystem (5%), or 0 to keep nothing free",
    )


# --- records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    # Not hashed (a mapping is not hashable); equality still compares it.
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @classmethod
    def from_oci(cls, doc: Mapping[str, Any]) -> ImageConfig:
        """From an OCI/Docker image config document (its ``config`` member)."""
        cfg = doc.get("config") or {}
        if not isinstance(cfg, dict):
            raise ImageError("image config: 'config' is not an object")

        def strs(key: str) -> tuple[str, ...]:
            value = cfg.get(key) or ()
            if isinstance(value, str):
                return (value,)
            return tuple(str(v) for v in value)

        labels = cfg.get("Labels") or {}
        return cls(
            env=strs("Env"),
            cmd=strs("Cmd"),
            entrypoint=strs("Entrypoint"),
            workdir=str(cfg.get("WorkingDir") or ""),
            user=str(cfg.get("User") or ""),
            labels=MappingProxyType({str(k): str(v) for k, v in dict(labels).items()}),
        )


@dataclass(frozen=True)
class Image:
    id: str  # hex sha256 of the config blob
    names: tuple[str, ...]
    layers: tuple[Path, ...]  # layer root dirs (fs/ and meta inside), bottom -> top
    config: ImageConfig
    created: str
    size: int
    # The read-only image store that holds it (`--image-store`), None for the user's own.
    store: Path | None = None


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image_id: str
    dir: Path
    upper: Path
    rootfs: Path


@dataclass(frozen=True)
class PrunedImage:
    """What `Store.prune_image` removed: the image, the names and digest references it
    had, the layers that went with it (diff_ids)."""

    id: str
    names: tuple[str, ...]
    digests: tuple[str, ...]
    layers: tuple[str, ...]


@dataclass(frozen=True)
class LayerInfo:
    diff_id: str
    blob: str
    size: int


def default_root(settings: Settings | None = None) -> Path:
    """The store when --root is not given (rootless.locations.root_dir): $RSBOX_ROOT,
    else [storage] root of rsbox's config file (``settings``, else read now), else
    $XDG_DATA_HOME/rsbox, else ~/.local/share/rsbox."""
    if settings is None:
        return Path(root_dir())
    configured = None if settings.root is None else str(settings.root)
    return Path(root_dir(configured=configured, read_config=False))


def image_store_list(
    given: Sequence[Path], configured: Sequence[str | Path] = ()
) -> tuple[Path, ...]:
    """The read-only image stores to search, in order: those given with
    `--image-store` (in the order given), then those of the configuration file's
    `image_stores`, each once. Relative paths are taken from the current directory."""
    out = [Path(p).absolute() for p in (*given, *configured)]
    return tuple(dict.fromkeys(out))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def random_hex(nbytes: int) -> str:
    """secrets.token_hex's os.urandom bytes, without importing secrets: its hmac imports
    hashlib, which loads OpenSSL (~3 ms of every `run`; policies.program_cache has the
    figure). Container ids, volume names."""
    return os.urandom(nbytes).hex()


def rmtree_forcefully(path: Path) -> None:
    """Remove a tree the user owns even where directories lack u+rwx (mode 000 dirs in
    an upper layer). Never follows symlinks (shutil.rmtree's fd-based implementation)."""

    def onerror(func: Any, p: str, exc_info: Any) -> None:
        parent = os.path.dirname(p)
        for d in (parent, p):
            with contextlib.suppress(OSError):
                st = os.lstat(d)
                if stat.S_ISDIR(st.st_mode):
                    os.chmod(d, stat.S_IMODE(st.st_mode) | 0o700)
        if func in (os.rmdir, os.unlink, os.remove):
            func(p)
        else:
            shutil.rmtree(p, ignore_errors=True)

    if path.is_symlink() or not path.exists():
        path.unlink(missing_ok=True)
        return
    shutil.rmtree(path, onerror=onerror)
    if path.exists():
        shutil.rmtree(path, onerror=onerror)


def _check_diff_id(info: LayerInfo, diff_id: str | None) -> None:
    if diff_id is not None and info.diff_id != diff_id:
        raise LayerError(
            f"layer sha256:{info.blob} uncompresses to sha256:{info.diff_id}, "
            f"the image config says sha256:{diff_id}",
            hint="the image is damaged or was tampered with; nothing was stored",
        )


# --- the store -------------------------------------------------------------------------


class Store:
    """One store root. Open with `Store.open`; close (or use as a context manager)."""

    root: Path

    def __init__(
        self,
        root: Path,
        db: sqlite3.Connection,
        *,
        fs: StoreFs | None = None,
        plan: StorePlan | None = None,
        image_stores: Sequence[Store] = (),
        tmp_root: Path | None = None,
    ) -> None:
        self.root = root
        self._db = db
        #: None for a read-only image store (nothing is probed or chosen there)
        self.fs = fs
        self.plan = plan
        #: read-only stores searched after this one (`--image-store`), in order
        self.image_stores = tuple(image_stores)
        self._tmp_root = tmp_root
        # read-only stores opened because a container here uses an image of theirs
        self._sources: dict[Path, Store] = {}
        # group/other bits given to what is written here (storefs.share_mask)
        self._share = 0

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: Path | None = None,
        *,
        image_stores: Sequence[Path] = (),
        tmp_root: Path | None = None,
    ) -> Store:
        """The user's store at ``root`` (created if missing), with the read-only
        ``image_stores`` behind it and ``tmp_root`` for writable layers (rootless.storefs
        decides where they go)."""
        root = Path(root) if root is not None else default_root()
        others: list[Store] = []
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in ("blobs/sha256", "layers", "containers", "tmp", "cache", "locks"):
                (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(root / "store.db", timeout=60, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the rsbox store at {root}: {exc}",
                hint="check permissions, or choose another place with --root or RSBOX_ROOT",
            ) from exc
        try:
            fs = storefs.detect(root)
            tmp_root = storefs.given_tmp_root(tmp_root)
            choice = storefs.plan(fs, storefs.is_shared(root), tmp_root is not None)
            for p in dict.fromkeys(Path(p) for p in image_stores):
                if p.resolve() != root.resolve():
                    others.append(cls.open_read_only(p))
        except BaseException:
            for other in others:
                other.close()
            db.close()
            raise
        store = cls(root, db, fs=fs, plan=choice, image_stores=others, tmp_root=tmp_root)
        store._share = storefs.share_mask(root)
        for sub in ("store.db", "lock", "blobs", "blobs/sha256", "layers"):  # where others look
            with contextlib.suppress(OSError):  # not ours to chmod: its owner's choice
                storefs.share_top(root / sub, store._share)
        storefs.open_to_group(root)
        try:
            # PRAGMAs cannot run inside a transaction; the schema script brings its own.
            with store._flock(root / "lock"):
                store._set_journal(choice.journal_mode)
                db.execute("PRAGMA foreign_keys=ON")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, *_MIGRATIONS, _SCHEMA_VERSION):
                    raise StoreError(
                        f"the store at {root} has schema version {version}; "
                        f"this rsbox knows {_SCHEMA_VERSION}",
                        hint="use a matching rsbox version, or another --root",
                    )
                if version == 0:
                    db.executescript(
                        f"BEGIN; {_SCHEMA}; PRAGMA user_version={_SCHEMA_VERSION}; COMMIT;"
                    )
                for v in range(max(version, 1), _SCHEMA_VERSION):  # an older store
                    db.executescript(
                        f"BEGIN; {_MIGRATIONS[v]}; PRAGMA user_version={v + 1}; COMMIT;"
                    )
        except sqlite3.Error as exc:
            store.close()
            raise StoreError(
                f"cannot open the rsbox store at {root}: {exc}",
                hint="check permissions, or choose another place with --root or RSBOX_ROOT",
            ) from exc
        except BaseException:
            store.close()
            raise
        store.clean_tmp()
        return store

    def _set_journal(self, mode: str) -> None:
        """Switch to the journal mode `rootless.storefs.plan` chose. Leaving WAL needs the
        only connection: while another command has the store open, stay in WAL (without
        waiting) and switch at a later open."""
        db = self._db
        db.execute("PRAGMA busy_timeout=0")
        try:
            with contextlib.suppress(sqlite3.OperationalError):
                db.execute(f"PRAGMA journal_mode={mode}")
        finally:
            db.execute("PRAGMA busy_timeout=60000")
        if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            # NORMAL keeps a WAL database consistent through a crash and fsyncs only at
            # checkpoints; a power cut may lose the last commits, never corrupt. The files
            # the rows name are fsynced before the rows are written.
            db.execute("PRAGMA synchronous=NORMAL")
        else:
            # With a rollback journal NORMAL could corrupt on a power cut (SQLite docs).
            db.execute("PRAGMA synchronous=FULL")

    @classmethod
    def open_read_only(cls, root: Path) -> Store:
        """A store someone else fills (`--image-store`), used as it is: SQLite opened
        with ``mode=ro``, so nothing (no journal, no -shm, no lock file) is written
        there. Not ``immutable=1``: its owner may pull into it while we read, and ro
        still takes SQLite's shared fcntl read lock (which writes nothing), so we never
        read a half-committed transaction. Its owner's store runs a rollback journal
        once it is searchable by others (rootless.storefs.plan); a store still in WAL
        mode cannot be read without writing -shm, and is refused."""
        db_path = root / "store.db"
        hint = (
            f"its owner makes it readable with `chmod -R a+rX {root}` and then runs any "
            f"`rsbox --root {root}` command (such as `images`) once"
        )
        if not db_path.is_file():
            raise StoreError(f"{root} is not an rsbox store (no store.db)", hint=hint)
        try:
            uri = "file:" + urllib.parse.quote(os.fspath(db_path.absolute())) + "?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the image store {root}: {exc}", hint=hint) from exc
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                raise StoreError(
                    f"the image store {root} is in WAL mode: reading it would write there",
                    hint=hint,
                )
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (*_MIGRATIONS, _SCHEMA_VERSION):
                raise StoreError(
                    f"the image store {root} has schema version {version}; "
                    f"this rsbox reads {min(_MIGRATIONS)} to {_SCHEMA_VERSION}",
                    hint="its owner updates it with this rsbox version",
                )
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"cannot read the image store {root}: {exc}", hint=hint) from exc
        except BaseException:
            db.close()
            raise
        return cls(root, db)

    @property
    def read_only(self) -> bool:
        """Opened with `open_read_only`: never written."""
        return self.fs is None

    def clean_tmp(self, max_age: float = 24 * 3600) -> None:
        """Remove what crashed commands left in tmp/. Only entries older than ``max_age``
        seconds: a younger one may be the work of a command running right now."""
        now = time.time()
        for entry in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if now - entry.lstat().st_mtime > max_age or self._abandoned(entry):
                    rmtree_forcefully(entry)

    def locked_tmpdir(self, prefix: str) -> tuple[Path, int]:
        """A tmp/ directory that marks itself in use: (path, fd of its lock). While the
        fd is open (closing it, or the death of the process, releases it) no `clean_tmp`
        removes it; once released, the next command's `clean_tmp` does, whatever its age
        (a pull killed half-way leaves nothing for longer than that)."""
        path = self.mkdtemp(prefix)
        fd = os.open(path / ".inuse", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return path, fd

    @staticmethod
    def _abandoned(entry: Path) -> bool:
        try:
            fd = os.open(entry / ".inuse", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    def close(self) -> None:
        for other in (*self.image_stores, *self._sources.values()):
            other.close()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def layer_dir(self, diff_id: str) -> Path:
        return self.root / "layers" / diff_id

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest

    # -- locking ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, path: Path) -> Iterator[None]:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except PermissionError:
            # A lock file another writer of a group-writable store made (readable to the
            # group, as the store shares): flock(2) locks a file open in any mode.
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise StoreError(
                    f"cannot take the lock {path}: {exc}",
                    hint=f"its owner can share it with `chmod g+r {path}`",
                ) from exc
        if self._share:
            with contextlib.suppress(OSError):  # another writer's: shared when created
                storefs.share_top(path, self._share)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The writer lock alone, for records kept beside the database (rootless.volumes):
        whoever holds it sees the containers table as no other command changes it. Never
        call a method that writes the database while holding it (the same lock)."""
        return self._flock(self.root / "lock")

    @contextlib.contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        """The writer lock plus one IMMEDIATE transaction (committed on success)."""
        with self._flock(self.root / "lock"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def mkdtemp(self, prefix: str) -> Path:
        """A new private directory in tmp/, as tempfile.mkdtemp makes one (without its
        import, ~4 ms of CPU of every `run` under load)."""
        while True:
            path = self.tmp / f"{prefix}{os.urandom(8).hex()}"
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                continue
            return path

    def space_guard(self, what: str) -> SpaceGuard:
        """What every write of a layer or blob into this store is charged to: it refuses
        (`StoreFull`, naming ``what``) before the store's filesystem would have less than
        `store_reserve` free."""
        try:
            st = os.statvfs(self.root)
        except OSError as exc:
            raise StoreError(f"cannot read the free space of {self.root}: {exc}") from exc
        reserve = store_reserve(st.f_blocks * st.f_frsize, os.environ.get(RESERVE_ENV))
        hint = (
            f"free some space there, or lower the reserve with {RESERVE_ENV}=SIZE "
            "(such as 1G; 0 keeps nothing free)"
        )
        from .extract import SpaceGuard

        return SpaceGuard(self.root, reserve, what, hint=hint)

    # -- blobs and layers ---------------------------------------------------------------

    def add_blob(
        self, src: Path, digest: str | None = None, guard: SpaceGuard | None = None
    ) -> str:
        """Copy ``src`` into blobs/ (verifying ``digest`` if given); return its hex digest.
        Runs of zeros stay holes; the copy is charged to ``guard`` (default: one for
        ``blob sha256:...``)."""
        if guard is None:
            guard = self.space_guard(f"blob sha256:{(digest or '?')[:12]}")
        import tempfile

        from .extract import copy_stream_sparse

        fd, tmpname = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
        tmp = Path(tmpname)
        try:
            try:
                with open(src, "rb") as f:
                    actual, _ = copy_stream_sparse(f, fd, guard)
                os.fsync(fd)
            finally:
                os.close(fd)
            if digest is not None and actual != digest:
                raise ImageError(
                    f"blob {src} has digest sha256:{actual}, expected sha256:{digest}",
                    hint="the image is damaged; copy it again",
                )
            final = self.blob_path(actual)
            if not final.exists():
                storefs.share_tree(tmp, self._share)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
            return actual
        finally:
            tmp.unlink(missing_ok=True)

    def add_layer(
        self,
        blob: Path,
        *,
        digest: str | None = None,
        diff_id: str | None = None,
        max_bytes: int | None = None,
        created: list[str] | None = None,
    ) -> LayerInfo:
        """Store the layer tarball ``blob`` once: verify, keep the blob, extract.

        ``digest`` (the blob's) and ``diff_id`` (the uncompressed stream's) are verified
        when given, before anything gets its final name: a mismatch leaves nothing. Two
        commands adding the same blob serialise on a per-blob lock; the second finds the
        layer ready. The layer's refcount is left to `add_image`. The diff_id of a layer
        this call put into the store is appended to ``created`` (see `discard_layers`).
        """
        actual = sha256_file(blob)
        if digest is not None and actual != digest:
            raise ImageError(
                f"layer blob {blob} has digest sha256:{actual}, expected sha256:{digest}",
                hint="the image is damaged; copy it again",
            )
        with self._flock(self.root / "locks" / f"{actual}.lock"):
            row = self._db.execute(
                "SELECT diff_id, size FROM layers WHERE blob = ?", (actual,)
            ).fetchone()
            if row is not None and self.layer_dir(row[0]).is_dir():
                info = LayerInfo(diff_id=row[0], blob=actual, size=row[1])
                _check_diff_id(info, diff_id)
            else:
                info, new = self._extract_new_layer(blob, actual, max_bytes, diff_id)
                if new and created is not None:
                    created.append(info.diff_id)
        return info

    def layer_for_blob(self, blob_digest: str) -> LayerInfo | None:
        """The stored layer extracted from blob ``blob_digest`` (hex), if any."""
        row = self._db.execute(
            "SELECT diff_id, size FROM layers WHERE blob = ?", (blob_digest,)
        ).fetchone()
        if row is not None and self.layer_dir(row[0]).is_dir():
            return LayerInfo(diff_id=row[0], blob=blob_digest, size=row[1])
        return None

    def blob_lock(self, blob_digest: str) -> contextlib.AbstractContextManager[None]:
        """The per-blob lock `add_layer` takes; a puller holds it while it downloads, so
        that two commands pulling one layer download it once."""
        if not _HEX64.fullmatch(blob_digest):
            raise StoreError(f"invalid blob digest {blob_digest!r}")
        return self._flock(self.root / "locks" / f"{blob_digest}.lock")

    def commit_layer(
        self, work: Path, blob_tmp: Path, blob_digest: str, diff_id: str, size: int
    ) -> LayerInfo:
        """Move a layer extracted elsewhere into place: ``work`` holds ``fs/`` and
        ``meta`` (fully written), ``blob_tmp`` the verified compressed blob; both in tmp/.
        The caller holds `blob_lock`, has verified both digests and has flushed the
        layer's files to disk (``os.sync()``, in a worker thread)."""
        with open(blob_tmp, "rb") as f:
            os.fsync(f.fileno())
        final_blob = self.blob_path(blob_digest)
        storefs.share_tree(work, self._share)
        if not final_blob.exists():
            storefs.share_tree(blob_tmp, self._share)
            os.replace(blob_tmp, final_blob)
            _fsync_dir(final_blob.parent)
        final = self.layer_dir(diff_id)
        with self._writer() as db:
            if not final.is_dir():
                os.rename(work, final)
                _fsync_dir(final.parent)
            db.execute(
                "INSERT INTO layers(diff_id, blob, size) VALUES (?, ?, ?) "
                "ON CONFLICT(diff_id) DO NOTHING",
                (diff_id, blob_digest, size),
            )
        return LayerInfo(diff_id=diff_id, blob=blob_digest, size=size)

    def image_layers(self, image_id: str) -> list[LayerInfo]:
        """The layers of an image, bottom first, with the blobs they came from."""
        if (holder := self._holder(image_id)) is not self:
            return holder.image_layers(image_id)
        return [
            LayerInfo(diff_id=r[0], blob=r[1], size=r[2])
            for r in self._db.execute(
                "SELECT l.diff_id, l.blob, l.size FROM image_layers i "
                "JOIN layers l ON l.diff_id = i.diff_id WHERE i.image_id = ? ORDER BY i.position",
                (image_id,),
            )
        ]

    def image_config_bytes(self, image_id: str) -> bytes:
        if (holder := self._holder(image_id)) is not self:
            return holder.image_config_bytes(image_id)
        row = self._db.execute("SELECT config FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise ImageNotFound(f"image {image_id} is not in the store", hint=_HINT_LIST)
        return str(row[0]).encode()

    def image_manifest_digest(self, image_id: str) -> str | None:
        if (holder := self._holder(image_id)) is not self:
            return holder.image_manifest_digest(image_id)
        row = self._db.execute("SELECT manifest FROM images WHERE id = ?", (image_id,)).fetchone()
        return None if row is None else row[0]

    def tag_image(self, ref: str, name: str) -> Image:
        """Give the image ``ref`` the (normalised) name ``name`` too."""
        image = self.resolve_image(ref)
        with self._writer() as db:
            self._pin(db, image)
            db.execute(
                "INSERT INTO names(name, image_id) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                (name, image.id),
            )
        return self._load_image(image.id)

    def repo_digest(self, image_id: str, repository: str) -> str | None:
        """The digest (``sha256:...``) that ``registry/repository`` served this image
        under when it was pulled from there, if it was."""
        if (holder := self._holder(image_id)) is not self:
            return holder.repo_digest(image_id, repository)
        row = self._db.execute(
            "SELECT ref FROM digests WHERE image_id = ? AND substr(ref, 1, ?) = ? "
            "ORDER BY rowid DESC LIMIT 1",
            (image_id, len(repository) + 1, repository + "@"),
        ).fetchone()
        return None if row is None else str(row[0]).partition("@")[2]

    def add_digest_ref(self, digest_ref: str, image_id: str) -> None:
        """Remember that ``registry/repository@sha256:...`` was pulled as this image, so
        that ``run --pull=missing`` by digest finds it (Docker's RepoDigests)."""
        with self._writer() as db:
            db.execute(
                "INSERT INTO digests(ref, image_id) VALUES (?, ?) "
                "ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id",
                (digest_ref, image_id),
            )

    def untag(self, name: str) -> bool:
        with self._writer() as db:
            return db.execute("DELETE FROM names WHERE name = ?", (name,)).rowcount > 0

    def _extract_new_layer(
        self, blob: Path, blob_digest: str, max_bytes: int | None, diff_id: str | None
    ) -> tuple[LayerInfo, bool]:
        """Extract, verify, then move into place. Returns the layer and whether this call
        created it (False: another command stored the same diff_id meanwhile)."""
        work = self.mkdtemp("layer-")
        try:
            from .extract import DEFAULT_MAX_BYTES, extract_layer

            guard = self.space_guard(f"layer sha256:{blob_digest[:12]}")
            limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
            result = extract_layer(blob, work / "layer", max_bytes=limit, guard=guard)
            info = LayerInfo(diff_id=result.diff_id, blob=blob_digest, size=result.size)
            _check_diff_id(info, diff_id)
            self.add_blob(blob, blob_digest, guard)  # only once it proved to be a sound layer
            # One syncfs-like flush instead of an fsync per file: the layer must be on
            # disk before its name is.
            storefs.share_tree(work / "layer", self._share)
            os.sync()
            final = self.layer_dir(result.diff_id)
            with self._writer() as db:
                new = not final.is_dir()
                if new:
                    os.rename(work / "layer", final)
                    _fsync_dir(final.parent)
                new = new and (
                    db.execute(
                        "INSERT INTO layers(diff_id, blob, size) VALUES (?, ?, ?) "
                        "ON CONFLICT(diff_id) DO NOTHING",
                        (result.diff_id, blob_digest, result.size),
                    ).rowcount
                    == 1
                )
            return info, new
        finally:
            rmtree_forcefully(work)

    def discard_layers(self, diff_ids: Sequence[str]) -> None:
        """Take back layers an import put into the store (`add_layer`'s ``created``) when
        the import fails later: those no image uses are removed with their blobs.

        A concurrent command that found one of them in the store and has not yet added
        its image (refcount still 0) will fail to add it and can simply be run again.
        """
        with self._writer() as db:
            for diff_id in dict.fromkeys(diff_ids):
                self._drop_unused_layer(db, diff_id)
        for path in self.tmp.glob("gone-*"):
            rmtree_forcefully(path)

    def _drop_unused_layer(self, db: sqlite3.Connection, diff_id: str) -> bool:
        """Under the writer lock: remove the layer (row, directory, and its blob unless
        another layer came from it) if no image uses it. Its directory goes to
        tmp/gone-*, for the caller to delete after the transaction."""
        row = db.execute("SELECT refcount, blob FROM layers WHERE diff_id = ?", (diff_id,))
        found = row.fetchone()
        if found is None or found[0] > 0:
            return False
        if db.execute("SELECT 1 FROM image_layers WHERE diff_id = ?", (diff_id,)).fetchone():
            return False
        blob = found[1]
        db.execute("DELETE FROM layers WHERE diff_id = ?", (diff_id,))
        gone = self.tmp / f"gone-{diff_id}-{os.urandom(4).hex()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.layer_dir(diff_id), gone)
        if not db.execute("SELECT 1 FROM layers WHERE blob = ?", (blob,)).fetchone():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.blob_path(blob))
        return True

    # -- images -------------------------------------------------------------------------

    def add_image(
        self,
        config: bytes,
        diff_ids: Sequence[str],
        names: Sequence[str] = (),
        manifest_digest: str | None = None,
    ) -> Image:
        """Register an image whose layers are already stored (`add_layer`).

        ``names`` must be normalised; a name already used by another image moves to this
        one (like ``docker tag``). Re-adding an existing image only adds names.
        """
        import hashlib

        image_id = hashlib.sha256(config).hexdigest()
        try:
            doc = json.loads(config)
        except ValueError as exc:
            raise ImageError(f"image config is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ImageError("image config is not a JSON object")
        ImageConfig.from_oci(doc)  # validate early
        created = str(doc.get("created") or "")
        import tempfile

        fd, tmpname = tempfile.mkstemp(prefix="config-", dir=self.tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(config)
            f.flush()
            os.fsync(f.fileno())
        with self._writer() as db:
            final = self.blob_path(image_id)
            if final.exists():
                os.unlink(tmpname)
            else:
                storefs.share_tree(Path(tmpname), self._share)
                os.replace(tmpname, final)
            exists = db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone()
            if not exists:
                size = 0
                for diff_id in diff_ids:
                    row = db.execute(
                        "SELECT size FROM layers WHERE diff_id = ?", (diff_id,)
                    ).fetchone()
                    if row is None or not self.layer_dir(diff_id).is_dir():
                        raise StoreError(f"layer sha256:{diff_id} is not in the store")
                    size += row[0]
                db.execute(
                    "INSERT INTO images(id, config, manifest, created, added, size) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (image_id, config.decode(), manifest_digest, created, _now(), size),
                )
                for pos, diff_id in enumerate(diff_ids):
                    db.execute(
                        "INSERT INTO image_layers(image_id, position, diff_id) VALUES (?, ?, ?)",
                        (image_id, pos, diff_id),
                    )
                    db.execute(
                        "UPDATE layers SET refcount = refcount + 1 WHERE diff_id = ?", (diff_id,)
                    )
            for name in names:
                db.execute(
                    "INSERT INTO names(name, image_id) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                    (name, image_id),
                )
        return self._load_image(image_id)

    # -- read-only image stores (`--image-store`) ----------------------------------------

    def _source(self, image_id: str) -> Path | None:
        """The read-only store holding `image_id` when this store only pins it."""
        row = self._db.execute(
            "SELECT store FROM image_sources WHERE image_id = ?", (image_id,)
        ).fetchone()
        return None if row is None else Path(row[0])

    def _holder(self, image_id: str) -> Store:
        """The store whose layers make up `image_id`: this one, a configured image store,
        or the one a pinned image came from (opened on demand: a container keeps working
        when its image store is no longer given on the command line)."""
        if self.read_only:
            return self
        source = self._source(image_id)
        if source is None:
            if self._db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                return self
            for other in self.image_stores:
                if other._db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                    return other
            return self
        for other in (*self.image_stores, *self._sources.values()):
            if other.root == source:
                return other
        opened = self._sources[source] = Store.open_read_only(source)
        return opened

    def find_blob(self, digest: str) -> Path:
        """Where blob ``digest`` (hex) is: here, else in the read-only store holding an
        image that has it (`blob_path` when no store has it)."""
        own = self.blob_path(digest)
        if own.is_file() or self.read_only:
            return own
        for other in (*self.image_stores, *self._sources.values()):
            if other.blob_path(digest).is_file():
                return other.blob_path(digest)
        return own

    def adopt_layers(self, image: Image) -> list[str]:
        """Make the layers of ``image`` (of a read-only image store) layers of this store
        too, extracted again from their blobs there: a commit (or build) on it makes an
        image of this store, which must not depend on a store its owner may empty. Done
        once per layer; returns the diff_ids this call added (for `discard_layers`)."""
        if image.store is None:
            return []
        holder = self._holder(image.id)
        created: list[str] = []
        for info in holder.image_layers(image.id):
            if self.layer_for_blob(info.blob) is None:
                self.add_layer(
                    holder.blob_path(info.blob),
                    digest=info.blob,
                    diff_id=info.diff_id,
                    created=created,
                )
        return created

    def _pin(self, db: sqlite3.Connection, image: Image) -> None:
        """Under the writer lock: give an image of a read-only store the row here that
        containers (and names) of this store refer to, with where it lives."""
        if image.store is None:
            return
        db.execute(
            "INSERT INTO images(id, config, manifest, created, added, size) "
            "VALUES (?, ?, NULL, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
            (
                image.id,
                self._holder(image.id).image_config_bytes(image.id).decode(),
                image.created,
                _now(),
                image.size,
            ),
        )
        db.execute(
            "INSERT INTO image_sources(image_id, store) VALUES (?, ?) "
            "ON CONFLICT(image_id) DO UPDATE SET store = excluded.store",
            (image.id, os.fspath(image.store)),
        )

    def _unpin_unused(self, db: sqlite3.Connection) -> None:
        """Under the writer lock: drop pins that no container and no name uses."""
        unused = db.execute(
            "SELECT image_id FROM image_sources WHERE image_id NOT IN "
            "(SELECT image_id FROM containers) AND image_id NOT IN (SELECT image_id FROM names)"
        ).fetchall()
        for (image_id,) in unused:
            db.execute("DELETE FROM image_sources WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM digests WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))

    def _load_image(self, image_id: str) -> Image:
        if (holder := self._holder(image_id)) is not self:
            found = holder._load_image(image_id)
            names = tuple(
                r[0]
                for r in self._db.execute(
                    "SELECT name FROM names WHERE image_id = ? ORDER BY name", (image_id,)
                )
            )
            return replace(found, names=tuple(sorted({*found.names, *names})), store=holder.root)
        row = self._db.execute(
            "SELECT config, created, size FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        if row is None:
            raise ImageNotFound(f"image {image_id} is not in the store", hint=_HINT_LIST)
        names = tuple(
            r[0]
            for r in self._db.execute(
                "SELECT name FROM names WHERE image_id = ? ORDER BY name", (image_id,)
            )
        )
        layers = tuple(
            self.layer_dir(r[0])
            for r in self._db.execute(
                "SELECT diff_id FROM image_layers WHERE image_id = ? ORDER BY position",
                (image_id,),
            )
        )
        return Image(
            id=image_id,
            names=names,
            layers=layers,
            config=ImageConfig.from_oci(json.loads(row[0])),
            created=row[1],
            size=row[2],
        )

    def images(self) -> list[Image]:
        """All images, most recently added first: this store's, then those of each
        read-only image store (`Image.store` set) that this one does not have."""
        ids = (
            [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM image_sources) "
                    "ORDER BY added DESC, id"
                )
            ]
            if not self.read_only
            else [r[0] for r in self._db.execute("SELECT id FROM images ORDER BY added DESC, id")]
        )
        out = [self._load_image(i) for i in ids]
        seen = set(ids)
        for other in self.image_stores:
            for image in other.images():
                if image.id not in seen:
                    seen.add(image.id)
                    out.append(replace(image, store=other.root))
        return out

    def resolve_image(self, ref: str) -> Image:
        """Find an image by name or id (`_resolve_here`), here first, then in each
        read-only image store in order."""
        try:
            return self._resolve_here(ref)
        except ImageNotFound:
            for other in self.image_stores:
                with contextlib.suppress(ImageNotFound):
                    return replace(other._resolve_here(ref), store=other.root)
            raise

    def _resolve_here(self, ref: str) -> Image:
        """Find an image by name or id.

        Order: full id (``sha256:`` optional); exact normalised name (``busybox`` ->
        ``localhost/busybox:latest``); an unqualified name matched against every registry
        (``busybox`` also finds ``docker.io/library/busybox:latest``; ambiguous -> error);
        a unique id prefix of at least 4 hex digits.
        """
        if "@" in ref:  # NAME@sha256:DIGEST: what an earlier pull by that digest stored
            from .registry.reference import parse_reference

            with contextlib.suppress(UsageError):
                key = parse_reference(ref).digest_ref
                hit = self._db.execute(
                    "SELECT image_id FROM digests WHERE ref = ?", (key,)
                ).fetchone()
                if hit is not None:
                    return self._load_image(hit[0])
        bare = ref.removeprefix("sha256:")
        if (
            _HEX64.fullmatch(bare)
            and self._db.execute("SELECT 1 FROM images WHERE id = ?", (bare,)).fetchone()
        ):
            return self._load_image(bare)
        with contextlib.suppress(UsageError):
            name = normalize_name(ref)
            row = self._db.execute("SELECT image_id FROM names WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return self._load_image(row[0])
        short = _short_candidates(ref)
        if short is not None:
            path, tag = short
            wanted = {path, f"library/{path}"}
            found: dict[str, str] = {}
            for name_, image_id in self._db.execute("SELECT name, image_id FROM names"):
                repo, t = split_name(name_)
                if t == tag and repo.partition("/")[2] in wanted:
                    found[name_] = image_id
            if len(set(found.values())) == 1:
                return self._load_image(next(iter(found.values())))
            if len(found) > 1:
                raise ImageError(
                    f"image name {ref!r} is ambiguous: {', '.join(sorted(found))}",
                    hint="use the full name",
                )
        if _HEXPREFIX.fullmatch(bare):
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM images WHERE substr(id, 1, ?) = ?", (len(bare), bare)
                )
            ]
            if len(ids) == 1:
                return self._load_image(ids[0])
            if len(ids) > 1:
                raise ImageError(f"image id prefix {ref!r} is ambiguous", hint="use more digits")
        raise ImageNotFound(f"no such image: {ref}", hint=_HINT_LIST)

    def remove_image(self, ref: str, *, force: bool = False) -> list[str]:
        """Remove an image and the layers (and their blobs) no other image uses; refuse
        while a container uses it, unless ``force`` (which removes those containers, as
        ``podman rmi --force``). Returns the removed diff_ids. An image of a read-only
        image store is refused, except a name given to it here, which is untagged."""
        image = self.resolve_image(ref)
        if image.store is not None:
            return self._remove_shared(ref, image)
        if force:
            for c in self.containers():
                if c.image_id == image.id:
                    self.remove_container(c.id)
        with self._writer() as db:
            used = db.execute(
                "SELECT name FROM containers WHERE image_id = ?", (image.id,)
            ).fetchall()
            if used:
                raise ImageError(
                    f"image {image.id[:12]} is used by container(s) "
                    + ", ".join(r[0] for r in used),
                    hint="remove the containers first, or use `rsbox rmi --force`",
                )
            doomed = self._delete_image(db, image.id)
        for path in self.tmp.glob("gone-*"):
            rmtree_forcefully(path)
        return doomed

    def _remove_shared(self, ref: str, image: Image) -> list[str]:
        with contextlib.suppress(UsageError):
            name = normalize_name(ref)
            with self._writer() as db:
                if db.execute("DELETE FROM names WHERE name = ?", (name,)).rowcount:
                    self._unpin_unused(db)
                    return []
        raise ImageError(
            f"image {image.id[:12]} is in the read-only image store {image.store}",
            hint=f"its owner can remove it with `rsbox --root {image.store} rmi {ref}`",
        )

    def prune_image(self, image_id: str, *, dangling_only: bool) -> PrunedImage | None:
        """`image prune`: remove the image (as `remove_image`) only if, under the writer
        lock, no container uses it and, with ``dangling_only``, it has no name (a digest
        it was pulled by is not a name: Docker's prune removes such images too). None
        when it is in use, named, or gone already."""
        with self._writer() as db:
            if not db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                return None
            if db.execute("SELECT 1 FROM containers WHERE image_id = ?", (image_id,)).fetchone():
                return None
            names = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM names WHERE image_id = ? ORDER BY name", (image_id,)
                )
            ]
            digests = [
                r[0]
                for r in db.execute(
                    "SELECT ref FROM digests WHERE image_id = ? ORDER BY ref", (image_id,)
                )
            ]
            if dangling_only and names:
                return None
            layers = self._delete_image(db, image_id)
        for path in self.tmp.glob("gone-*"):
            rmtree_forcefully(path)
        return PrunedImage(image_id, tuple(names), tuple(digests), tuple(layers))

    def _delete_image(self, db: sqlite3.Connection, image_id: str) -> list[str]:
        """Under the writer lock: the image's rows, the layers (and blobs) no other image
        uses, its config blob. Layer directories go to tmp/gone-*, for the caller to
        delete after the transaction. Returns the removed diff_ids."""
        own = [
            r[0]
            for r in db.execute("SELECT diff_id FROM image_layers WHERE image_id = ?", (image_id,))
        ]
        for diff_id in own:
            db.execute("UPDATE layers SET refcount = refcount - 1 WHERE diff_id = ?", (diff_id,))
        db.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
        db.execute("DELETE FROM names WHERE image_id = ?", (image_id,))
        db.execute("DELETE FROM digests WHERE image_id = ?", (image_id,))
        db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        # Only this image's layers: a layer with refcount 0 may belong to an import
        # in progress in another command (add_layer, then add_image).
        doomed = [d for d in dict.fromkeys(own) if self._drop_unused_layer(db, d)]
        if not db.execute("SELECT 1 FROM layers WHERE blob = ?", (image_id,)).fetchone():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.blob_path(image_id))  # the config blob
        return doomed

    # -- containers ---------------------------------------------------------------------

    def create_container(
        self, image: Image, name: str | None, config: Mapping[str, object]
    ) -> Container:
        """Create containers/<id>/{upper,rootfs,config.json} and its record."""
        if name is not None and not _CONTAINER_NAME.fullmatch(name):
            raise ContainerError(
                f"invalid container name {name!r}",
                hint="use letters, digits and . _ - (starting with a letter or digit)",
            )
        cid = random_hex(32)
        work = self.mkdtemp("container-")
        local = self._local_upper_dir()
        try:
            for sub in ("upper", "rootfs"):
                if sub == "upper" and local is not None:
                    (local / sub).mkdir()
                    os.chmod(local / sub, 0o755)
                    os.symlink(local / sub, work / sub)
                    continue
                (work / sub).mkdir()
                os.chmod(work / sub, 0o755)  # the container's "/", whatever the umask
            with open(work / "config.json", "w") as f:
                json.dump(dict(config), f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            with self._writer() as db:
                self._pin(db, image)
                if not db.execute("SELECT 1 FROM images WHERE id = ?", (image.id,)).fetchone():
                    raise ImageNotFound(f"image {image.id[:12]} was removed", hint=_HINT_LIST)
                if name is None:
                    name = self._auto_name(db)
                elif db.execute("SELECT 1 FROM containers WHERE name = ?", (name,)).fetchone():
                    raise ContainerError(
                        f"the container name {name!r} is already in use",
                        hint=f"remove it with `rsbox rm {name}` or choose another --name",
                    )
                db.execute(
                    "INSERT INTO containers(id, name, image_id, created) VALUES (?, ?, ?, ?)",
                    (cid, name, image.id, _now()),
                )
                os.rename(work, self.root / "containers" / cid)
                local = None
        finally:
            if work.exists():
                rmtree_forcefully(work)
            if local is not None:
                rmtree_forcefully(local)
        return self._container(cid, name, image.id)

    def _local_upper_dir(self) -> Path | None:
        """A new directory on local disk for a writable layer, when `plan` keeps them
        out of the store (rootless.storefs); None: the layer lives in the store."""
        if self.plan is None or not self.plan.local_uppers:
            return None
        base = storefs.private_dir(self.tmp_root)
        import tempfile

        return Path(tempfile.mkdtemp(prefix="upper-", dir=base))

    @property
    def tmp_root(self) -> Path:
        """Where writable layers go when they cannot stay in the store."""
        return self._tmp_root or storefs.default_tmp_root()

    def _container(self, cid: str, name: str, image_id: str) -> Container:
        d = self.root / "containers" / cid
        upper = d / "upper"
        # A writable layer on local disk (`_local_upper_dir`) is named by a symlink.
        with contextlib.suppress(OSError):
            upper = Path(os.readlink(upper))
        return Container(
            id=cid, name=name, image_id=image_id, dir=d, upper=upper, rootfs=d / "rootfs"
        )

    @staticmethod
    def _auto_name(db: sqlite3.Connection) -> str:
        from random import SystemRandom  # secrets.choice's own source, without secrets

        choice = SystemRandom().choice
        for _ in range(100):
            name = f"{choice(_ADJECTIVES)}_{choice(_NOUNS)}"
            if not db.execute("SELECT 1 FROM containers WHERE name = ?", (name,)).fetchone():
                return name
        return f"rsbox_{os.urandom(6).hex()}"

    def container(self, ref: str) -> Container:
        """By full id, name, or unique id prefix (rootless.containers_lookup)."""
        return self._container(*find_row(self._db, ref))

    def containers(self) -> list[Container]:
        return [
            self._container(*r)
            for r in self._db.execute(
                "SELECT id, name, image_id FROM containers ORDER BY created DESC"
            )
        ]

    def rename_container(self, ref: str, name: str) -> Container:
        """Give the container ``ref`` (id, prefix or name) the name ``name``, as
        `docker rename`: a valid name that no other container has."""
        c = self.container(ref)
        if not _CONTAINER_NAME.fullmatch(name):
            raise ContainerError(
                f"invalid container name {name!r}",
                hint="use letters, digits and . _ - (starting with a letter or digit)",
            )
        if name == c.name:
            raise ContainerError(
                f"container {c.name} is already named {name!r}", hint="choose another name"
            )
        with self._writer() as db:
            other = db.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
            if other is not None:
                raise ContainerError(
                    f"the container name {name!r} is already in use by container {other[0][:12]}",
                    hint=f"remove it with `rsbox rm {name}` or choose another name",
                )
            if (
                db.execute("UPDATE containers SET name = ? WHERE id = ?", (name, c.id)).rowcount
                != 1
            ):
                raise ContainerError(f"no such container: {ref}", hint="it was removed meanwhile")
        return self._container(c.id, name, c.image_id)

    def remove_container(self, cid: str) -> None:
        """Delete the container's record and directory (``cid``: id, prefix or name)."""
        c = self.container(cid)
        gone = self.tmp / f"gone-{c.id}"
        with self._writer() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (c.id,))
            self._unpin_unused(db)
            with contextlib.suppress(FileNotFoundError):
                os.rename(c.dir, gone)
        if c.upper != c.dir / "upper":
            rmtree_forcefully(c.upper.parent)  # a writable layer kept on local disk
        rmtree_forcefully(gone)


_ADJECTIVES = (
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nimble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty",
)  # fmt: skip
_NOUNS = (
    "albatross", "badger", "cheetah", "dolphin", "eagle", "falcon", "gecko", "heron",
    "ibis", "jaguar", "koala", "lemur", "marmot", "narwhal", "otter", "panda", "quokka",
    "raven", "salmon", "tapir", "urchin", "vole", "walrus", "yak", "zebra",
)  # fmt: skip
