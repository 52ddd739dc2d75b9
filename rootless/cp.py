"""`rsbox cp`: files between a container and the host, with `docker cp`'s rules.

    rsbox cp [-a] [-L] [-q] CONTAINER:SRC DEST|-
    rsbox cp [-a] [-L] [-q] SRC|- CONTAINER:DEST

An argument is a container's when it has a `:` and does not start with `/` or `.`
(`./a:b` is a host file). Container paths are taken from the container's root.

The path rules (Docker's, docs.docker.com "docker container cp"):

- SRC a file: DEST missing -> created as that file (its directory must exist; a DEST
  ending in `/` must be an existing directory); DEST a file -> overwritten; DEST a
  directory -> the file goes into it under its own name.
- SRC a directory: DEST missing -> created, holding SRC's content; DEST a file -> error;
  DEST a directory -> SRC goes into it, or with SRC ending in `/.` its content does.
- `-` as SRC: a tar stream on stdin (plain, gzip, zstd, xz or bzip2), extracted into
  DEST, which must be a directory; `-` as DEST: a tar stream of SRC on stdout.
- Symlinks in a container path resolve inside the container's root (an absolute link
  starts again at the container's `/`, never the host's). SRC's last component is
  copied as the link it is unless `-L`; DEST is followed to the end.
- Owners: what is copied into a container belongs to its root (0:0), or with `-a`
  keeps the ids of the source (host ids, or the tar stream's); what is copied out
  belongs to the user running rsbox (an unprivileged user can do nothing else).

Where the files are:

- Out of a container: its root filesystem as fs.changes.merged_entries reads it from
  the store (image layers and upper, whiteouts applied, the container's owners and
  modes), after rootless.snapshot.settled has brought a running container's writes to
  disk. Volumes mounted into the container are not part of it (copy from their host
  path), nor are the kernel's /proc, /sys and /dev.
- Into a stopped container: through the union's own operations (fs.union.Union, no
  mount): copy-up, whiteouts and the metadata overrides are written exactly as the
  container's own writes would be, while we hold its monitor lock (it cannot start
  meanwhile).
- Into a running container: through its mount, from a helper inside its user and mount
  namespaces that executes nothing (rootless.launch.enter: sealed, the container's
  seccomp filter, no imports); the tar stream reaches it on a pipe. Writing the upper
  from outside would bypass the FUSE server and the kernel's caches of that mount.
  With a single-id user namespace, `-a` cannot give a running container ids it does not
  map (the kernel refuses them before the FUSE server sees them): those files keep
  root's ids, with a warning; a stopped container takes any id.

`Target` is what both writers implement; `apply_archive` is the one place the rules for
writing live. It imports nothing at run time (the helper cannot import).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, TypeVar

from fs.changes import Entry, Stack, merged_entries
from fs.resolve import join
from rootless.errors import ContainerError, RsboxError, UsageError
from rootless.store import Container, Store

P = TypeVar("P")
C = TypeVar("C")

MAX_SYMLINKS = 40  # as the kernel (ELOOP)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CpArg:
    container: str | None  # None: the host (or "-")
    path: str


def parse_arg(text: str) -> CpArg:
    if text == "-" or text.startswith(("/", ".")):
        return CpArg(None, text)
    ctr, sep, path = text.partition(":")
    if not sep or not ctr:
        return CpArg(None, text)
    return CpArg(ctr, path or "/")


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_scoped(path: str, readlink: Callable[[str], str | None], follow_last: bool) -> str:
    """`path` with its symlinks resolved inside the container's root (the last component
    only with `follow_last`); `readlink(p)` is the target of the symlink at the resolved
    relative path `p`, or None when it is not one. Returns a relative path, "" for /."""
    todo = _parts(path)
    todo.reverse()
    done: list[str] = []
    hops = 0
    while todo:
        name = todo.pop()
        if name == "..":
            if done:
                done.pop()
            continue
        target = readlink("/".join([*done, name])) if (todo or follow_last) else None
        if target is None:
            done.append(name)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + path.lstrip("/"))
        if target.startswith("/"):
            done = []
        todo.extend(reversed(_parts(target)))
    return "/".join(done)


# --- out of a container --------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What `cp` copies out: the entry at `path` (relative; "" the root) and whether its
    content goes alone (`dir/.`)."""

    path: str
    entry: Entry | None  # None for the root directory
    contents_only: bool

    @property
    def is_dir(self) -> bool:
        return self.entry is None or self.entry.is_dir


def find_source(stack: Stack, src: str, follow: bool, name: str) -> Source:
    def readlink(p: str) -> str | None:
        found = stack.lookup(p)
        if found is None or found.dirs:
            return None
        st = found.layer.lstat(p)
        return os.readlink(found.layer.at(p)) if st and stat.S_ISLNK(st.st_mode) else None

    contents_only = src.endswith("/.") or src in (".", "/.")
    path = resolve_scoped(src, readlink, follow or src.endswith("/") or contents_only)
    found = stack.lookup(path)
    if found is None:
        raise ContainerError(
            f"could not find the file {'/' + src.lstrip('/')} in container {name}",
            hint=f"list it with: rsbox exec {name} ls -la {posixpath.dirname('/' + src.lstrip('/'))}",
        )
    entry = stack.entry(path, found) if path else None
    source = Source(path, entry, contents_only)
    if (src.endswith("/") or contents_only) and not source.is_dir:
        raise ContainerError(
            f"{'/' + src.lstrip('/')} in container {name} is not a directory",
            hint="drop the trailing / to copy the file",
        )
    return source


def source_items(stack: Stack, source: Source, top: str) -> Iterator[tuple[Entry, str]]:
    """The entries to copy with their names in the archive: SRC itself as `top`, what is
    below it under `top/` (`top` "": straight into the destination, SRC itself left out)."""
    if source.entry is not None and top:
        yield source.entry, top
    if not source.is_dir:
        return
    cut = len(source.path) + 1 if source.path else 0
    for e in merged_entries(stack, source.path):
        yield e, join(top, e.path[cut:]) if top else e.path[cut:]


def host_destination(dest: str, source: Source) -> tuple[Path, str]:
    """(the host directory to extract into, the name SRC gets there; "" = its content
    goes straight into that directory) by Docker's rules."""
    base = posixpath.basename(source.path) or "/"
    p = Path(dest)
    if p.is_dir():
        return p, "" if source.contents_only else base
    if p.exists():
        if source.is_dir:
            raise UsageError(
                f"cannot copy a directory to the file {dest}", hint="give a directory as DEST"
            )
        return p.parent, p.name
    if dest.endswith("/") and not source.is_dir:
        raise UsageError(f"the destination directory {dest} does not exist", hint="create it first")
    if not p.parent.is_dir():
        raise UsageError(
            f"the destination directory {p.parent} does not exist", hint="create it first"
        )
    return p.parent, p.name


def write_source(stack: Stack, source: Source, top: str, out: BinaryIO) -> int:
    """The tar stream of `source` onto `out`; returns the bytes of file data copied."""
    from rootless.images.layer_tar import TarWriter

    writer = TarWriter(out)
    total = 0
    for entry, name in source_items(stack, source, top):
        if name:
            writer.add(entry, name)
            total += entry.size
    writer.close()
    return total


def through_pipe(
    produce: Callable[[BinaryIO], P], consume: Callable[[BinaryIO], C], name: str
) -> tuple[P, C]:
    """Run `produce(writer)` on a thread into a pipe while `consume(reader)` reads it
    here; (what each returned). If the producer failed, its error is the one raised: it
    is why the stream broke off (a consumer's error then only follows from it)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    produced: list[P] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with open(w, "wb") as out:
                produced.append(produce(out))
        except BrokenPipeError:
            pass
        except BaseException as exc:
            failed.append(exc)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    try:
        with open(r, "rb") as raw:
            consumed = consume(raw)
    except BaseException:
        t.join()
        if failed:
            raise failed[0] from None
        raise
    t.join()
    if failed:
        raise failed[0]
    return produced[0], consumed


def extract_to_host(produce: Callable[[BinaryIO], int], where: Path) -> int:
    """Run `produce(stream)` in a thread writing a tar into a pipe, and extract that
    stream into the host directory `where` (rootless.extract: no write outside it)."""
    from rootless.extract import extract_stream

    total, _ = through_pipe(produce, lambda raw: extract_stream(raw, where), "cp-tar")
    return total


# --- into a container ----------------------------------------------------------------------


class Target(Protocol):
    """A container's root, written with the container's semantics; paths relative to
    its root ("" is /), their parents resolved (no symlink below the destination is ever
    followed)."""

    refused: int  # entries whose ids the container could not take

    def kind(self, path: str) -> str | None:
        """ "dir", "link", "file" (any other type), or None when missing."""

    def readlink(self, path: str) -> str: ...
    def remove(self, path: str) -> None: ...
    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> None: ...
    def write(self, path: str, data: IO[bytes], mode: int, uid: int, gid: int) -> None: ...
    def symlink(self, path: str, target: str, uid: int, gid: int) -> None: ...
    def link(self, path: str, existing: str) -> None: ...
    def mknod(self, path: str, mode: int, rdev: int, uid: int, gid: int) -> None: ...
    def set_attrs(
        self, path: str, mode: int | None, uid: int | None, gid: int | None, mtime: int
    ) -> None: ...


@dataclass(frozen=True)
class Plan:
    """What arrives and where it goes (decided by apply_archive against the target)."""

    dest: str  # the container path as given
    stream: bool  # `-`: a tar stream whose members go into DEST
    src_base: str = ""  # the archive's top name (a host SRC's base name)
    src_dir: bool = False
    contents_only: bool = False
    archive: bool = False  # -a: keep the archive's ids, else 0:0


def _where(target: Target, plan: Plan) -> str:
    """The container path the archive's top lands on (Docker's rules, module docstring)."""

    def readlink(p: str) -> str | None:
        return target.readlink(p) if target.kind(p) == "link" else None

    shown = "/" + plan.dest.lstrip("/")
    dest = resolve_scoped(plan.dest, readlink, True)
    kind = target.kind(dest)
    if plan.stream or (plan.src_dir and plan.contents_only and kind == "dir"):
        if kind != "dir":
            raise ContainerError(
                f"the destination {shown} must be an existing directory",
                hint="create it first (rsbox exec CONTAINER mkdir -p DIR)",
            )
        return dest
    if kind == "dir":
        return join(dest, plan.src_base)
    if kind is not None:
        if plan.src_dir:
            raise ContainerError(
                f"cannot copy a directory to the file {shown}", hint="give a directory as DEST"
            )
        return dest
    parent = posixpath.dirname(dest)
    if plan.dest.endswith("/") or (parent and target.kind(parent) != "dir"):
        missing = shown if plan.dest.endswith("/") else "/" + parent
        raise ContainerError(
            f"the destination directory {missing} does not exist in the container",
            hint="create it first (rsbox exec CONTAINER mkdir -p DIR)",
        )
    return dest


def _member_path(name: str) -> list[str]:
    parts = _parts(name)
    if ".." in parts:
        raise ContainerError(
            f"archive member {name!r} points outside the destination",
            hint="the tar stream is malformed or hostile",
        )
    return parts


def apply_archive(target: Target, tar: tarfile.TarFile, plan: Plan) -> int:
    """Write the archive into the container; returns the bytes of file data."""
    top = _where(target, plan)
    total = 0
    dirs: list[tuple[str, int, int, int, int]] = []

    def place(name: str) -> str | None:
        parts = _member_path(name)
        if plan.stream:
            return join(top, "/".join(parts)) if parts else top
        base = _parts(plan.src_base)
        if parts[: len(base)] != base:
            return None  # not below the top: nothing of ours wrote it
        rest = "/".join(parts[len(base) :])
        return join(top, rest) if rest else top

    for member in tar:
        path = place(member.name)
        if path is None:
            continue
        uid, gid = (member.uid, member.gid) if plan.archive else (0, 0)
        mode = member.mode & 0o7777
        existing = target.kind(path)
        if member.isdir():
            if existing == "dir":
                # The destination's own directory keeps its attributes when only the
                # content arrives (`dir/.`, a stream); a directory inside is replaced.
                if path == top and (plan.stream or plan.contents_only):
                    continue
            else:
                if existing is not None:
                    target.remove(path)
                target.mkdir(path, mode, uid, gid)
            dirs.append((path, mode, uid, gid, int(member.mtime)))
            continue
        if existing == "dir":
            raise ContainerError(
                f"cannot overwrite the directory /{path} with a non-directory",
                hint="remove it first, or copy to another name",
            )
        if existing is not None:
            target.remove(path)
        if member.isreg():
            data = tar.extractfile(member)
            assert data is not None
            target.write(path, data, mode, uid, gid)
            total += member.size
        elif member.issym():
            target.symlink(path, member.linkname, uid, gid)
        elif member.islnk():
            linked = place(member.linkname)
            if linked is None:
                raise ContainerError(
                    f"hard link {member.name!r} points outside what is copied",
                    hint="the tar stream is malformed",
                )
            target.link(path, linked)
            continue
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = (
                stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            )
            target.mknod(path, kind | mode, os.makedev(member.devmajor, member.devminor), uid, gid)
        else:
            continue  # sockets and the like: nothing a tar can hold
        target.set_attrs(path, None, None, None, int(member.mtime))
    for where, dmode, duid, dgid, mtime in reversed(dirs):  # children first: mtimes stay
        target.set_attrs(where, dmode, duid, dgid, mtime)
    return total


class OsTarget:
    """The container's root, from the helper inside its mount namespace: plain syscalls
    (the kernel resolves every path inside the container's root; the last component is
    never followed). `refused` counts entries whose ids the container does not map
    (EINVAL from chown: a single-id user namespace); they keep root's."""

    def __init__(self) -> None:
        self.refused = 0

    def kind(self, path: str) -> str | None:
        try:
            st = os.lstat("/" + path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(st.st_mode):
            return "dir"
        return "link" if stat.S_ISLNK(st.st_mode) else "file"

    def readlink(self, path: str) -> str:
        return os.readlink("/" + path)

    def remove(self, path: str) -> None:
        os.unlink("/" + path)

    def _own(self, path: str | int, uid: int, gid: int) -> None:
        if (uid, gid) == (os.getuid(), os.getgid()):
            return  # created with our ids: root's, or the user's own under --userns keep-id
        try:
            if isinstance(path, int):
                os.fchown(path, uid, gid)
            else:
                os.chown("/" + path, uid, gid, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.refused += 1

    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> None:
        os.mkdir("/" + path, 0o700)
        self._own(path, uid, gid)

    def write(self, path: str, data: IO[bytes], mode: int, uid: int, gid: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open("/" + path, flags, 0o600)
        try:
            while chunk := data.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            self._own(fd, uid, gid)
            os.fchmod(fd, mode)  # after the chown, which clears setuid bits
        finally:
            os.close(fd)

    def symlink(self, path: str, target: str, uid: int, gid: int) -> None:
        os.symlink(target, "/" + path)
        self._own(path, uid, gid)

    def link(self, path: str, existing: str) -> None:
        os.link("/" + existing, "/" + path, follow_symlinks=False)

    def mknod(self, path: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        os.mknod("/" + path, mode, rdev)
        self._own(path, uid, gid)

    def set_attrs(
        self, path: str, mode: int | None, uid: int | None, gid: int | None, mtime: int
    ) -> None:
        if uid is not None and gid is not None:
            self._own(path, uid, gid)
        if mode is not None:
            # chmod follows a symlink (lchmod needs /proc/self, which this helper outside
            # the container's pid namespace has not): only directories come here, and a
            # container swapping one for a link redirects it inside its own root at most.
            os.chmod("/" + path, mode)
        os.utime("/" + path, (mtime, mtime), follow_symlinks=False)


def apply_inside(fd: int, report_fd: int, plan: Plan) -> None:
    """Work for rootless.launch.enter.run_inside: read a plain tar stream from `fd`, apply
    it to the container's root, write "BYTES REFUSED" on `report_fd` (the helper has no
    terminal: the caller tells the user)."""
    target = OsTarget()
    with open(fd, "rb") as raw:
        try:
            with tarfile.open(
                fileobj=raw, mode="r|", encoding="utf-8", errors="surrogateescape"
            ) as tar:
                total = apply_archive(target, tar, plan)
        except tarfile.TarError as exc:
            raise ContainerError(
                f"cannot copy into the container: {exc}",
                hint="the tar stream is damaged or not a tar",
            ) from exc
        except OSError as exc:
            raise error_of(exc, "into the container") from exc
        while raw.read(_CHUNK):
            pass  # the tar's padding: the writer must never see a closed pipe
    os.write(report_fd, f"{total} {target.refused}".encode())


class UnionTarget:
    """A stopped container's root through fs.union.Union's operations (no mount)."""

    def __init__(self, lowers: tuple[Path, ...], upper: Path) -> None:
        from fs.union import Union, UnionSpec

        self.union = Union(UnionSpec(lowers, upper))
        self.refused = 0  # any id goes into the union's metadata

    def _ino(self, path: str) -> int:
        from fs.union import ROOT_INODE

        ino = ROOT_INODE
        for name in _parts(path):
            ino = self.union.lookup(ino, name).ino
        return ino

    def _parent(self, path: str) -> tuple[int, str]:
        head, _, name = path.rpartition("/")
        return self._ino(head), name

    def kind(self, path: str) -> str | None:
        try:
            mode = self.union.getattr(self._ino(path)).mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(mode):
            return "dir"
        return "link" if stat.S_ISLNK(mode) else "file"

    def readlink(self, path: str) -> str:
        return self.union.readlink(self._ino(path))

    def remove(self, path: str) -> None:
        self.union.unlink(*self._parent(path))

    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> None:
        parent, name = self._parent(path)
        self.union.mkdir(parent, name, mode, uid, gid)

    def write(self, path: str, data: IO[bytes], mode: int, uid: int, gid: int) -> None:
        parent, name = self._parent(path)
        fh, _ = self.union.create(parent, name, mode, os.O_WRONLY, uid, gid)
        try:
            off = 0
            while chunk := data.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    n = self.union.write(fh, off, bytes(view))
                    off += n
                    view = view[n:]
        finally:
            self.union.release(fh)

    def symlink(self, path: str, target: str, uid: int, gid: int) -> None:
        parent, name = self._parent(path)
        self.union.symlink(parent, name, target, uid, gid)

    def link(self, path: str, existing: str) -> None:
        parent, name = self._parent(path)
        self.union.link(self._ino(existing), parent, name)

    def mknod(self, path: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        parent, name = self._parent(path)
        self.union.mknod(parent, name, mode, rdev, uid, gid)

    def set_attrs(
        self, path: str, mode: int | None, uid: int | None, gid: int | None, mtime: int
    ) -> None:
        self.union.setattr(
            self._ino(path), mode=mode, uid=uid, gid=gid, mtime_ns=mtime * 1_000_000_000
        )


# --- the host side of a copy in --------------------------------------------------------------


def host_source(src: str, follow: bool) -> tuple[Path, os.stat_result]:
    p = Path(src)
    try:
        st = os.stat(p) if follow else os.lstat(p)
    except OSError as exc:
        raise UsageError(f"cannot copy {src}: {exc.strerror}", hint="check the path") from exc
    return p, st


def write_host_tree(src: Path, base: str, archive: bool, follow: bool, out: BinaryIO) -> None:
    """A tar stream of the host path `src` named `base`; owners 0:0 unless `archive`."""

    def own(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if not archive:
            info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        real = Path(os.path.realpath(src)) if follow else src
        tar.add(real, arcname=base, recursive=True, filter=own)


def copy_stream(reader: Any, out: BinaryIO) -> None:
    shutil.copyfileobj(reader, out, _CHUNK)


def error_of(exc: OSError, what: str) -> RsboxError:
    where = f" ({exc.filename})" if exc.filename else ""
    return ContainerError(
        f"cannot copy {what}: {exc.strerror or exc}{where}",
        hint="check the paths; `rsbox cp --help` has the rules",
    )


def stdout_is_terminal() -> bool:
    with contextlib.suppress(AttributeError, ValueError):
        return sys.stdout.isatty()
    return False


# --- the two directions, end to end ----------------------------------------------------------


def copy_out(store: Store, c: Container, src: str, dest: str, *, follow: bool) -> int:
    """`cp CONTAINER:SRC DEST|-`; returns the bytes of file data copied."""
    from rootless.snapshot import container_stack, settled

    with settled(c):
        stack = container_stack(store, c)
        try:
            source = find_source(stack, src, follow, c.name)
            base = posixpath.basename(source.path) or c.name
            if dest == "-":
                if stdout_is_terminal():
                    raise UsageError(
                        "cowardly refusing to write a tar stream to a terminal",
                        hint="redirect the output, or give a DEST path",
                    )
                top = "" if source.contents_only else base
                total = write_source(stack, source, top, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                return total
            where, top = host_destination(dest, source)
            return extract_to_host(lambda out: write_source(stack, source, top, out), where)
        except OSError as exc:
            raise error_of(exc, f"{c.name}:{src}") from exc


def copy_in(
    store: Store, c: Container, src: str, dest: str, *, archive: bool, follow: bool
) -> tuple[int, int]:
    """`cp SRC|- CONTAINER:DEST`; returns (bytes of file data, entries whose ids the
    container refused)."""
    from rootless.extract import open_decompressed
    from rootless.snapshot import settled

    if src == "-":
        plan = Plan(dest=dest, stream=True, archive=archive)
        stdin = sys.stdin.buffer

        def produce(out: BinaryIO) -> None:
            copy_stream(open_decompressed(stdin), out)

    else:
        path, st = host_source(src, follow)
        base = Path(os.path.abspath(src)).name
        if not base:
            raise UsageError(
                "cannot copy the host's root directory", hint="name a directory below /"
            )
        is_dir = stat.S_ISDIR(st.st_mode)
        plan = Plan(
            dest=dest,
            stream=False,
            src_base=base,
            src_dir=is_dir,
            contents_only=is_dir and (src.endswith("/.") or src == "."),
            archive=archive,
        )

        def produce(out: BinaryIO) -> None:
            write_host_tree(path, base, archive, follow, out)

    with settled(c) as running:
        try:
            if running:
                return _copy_in_running(c, plan, produce)
            image = store.resolve_image(c.image_id)
            target = UnionTarget(image.layers, c.upper)

            def consume(raw: BinaryIO) -> int:
                with tarfile.open(
                    fileobj=raw, mode="r|", encoding="utf-8", errors="surrogateescape"
                ) as tar:
                    total = apply_archive(target, tar, plan)
                    while raw.read(_CHUNK):
                        pass
                return total

            _, total = through_pipe(produce, consume, "cp-feed")
            return total, 0
        except OSError as exc:
            raise error_of(exc, f"{src} to {c.name}:{dest}") from exc
        except tarfile.TarError as exc:
            raise ContainerError(
                f"cannot copy {src} to {c.name}:{dest}: {exc}",
                hint="the tar stream is damaged or not a tar",
            ) from exc


def _copy_in_running(
    c: Container, plan: Plan, produce: Callable[[BinaryIO], None]
) -> tuple[int, int]:
    from rootless.launch.enter import run_inside, running_pid1

    pid1 = running_pid1(c.id)
    if pid1 is None:
        raise ContainerError(
            f"container {c.name} is starting or stopping", hint="try again in a moment"
        )
    data_r, data_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    mine = {data_r, data_w, rep_r, rep_w}  # still open here

    def close(fd: int) -> None:
        if fd in mine:
            mine.discard(fd)
            os.close(fd)

    def feed(_pid: int) -> None:
        close(data_r)  # the helper has its copies
        close(rep_w)
        mine.discard(data_w)  # closed by the file object
        try:
            with open(data_w, "wb") as out:
                produce(out)
        except BrokenPipeError:
            pass  # the helper stopped reading: its error says why

    try:
        run_inside(
            pid1,
            c.dir,
            apply_inside,
            data_r,
            rep_w,
            plan,
            keep=(data_r, rep_w),
            while_running=feed,
        )
        report = os.read(rep_r, 64).decode().split()
    finally:
        for fd in list(mine):
            close(fd)
    total, refused = (int(report[0]), int(report[1])) if len(report) == 2 else (0, 0)
    return total, refused
