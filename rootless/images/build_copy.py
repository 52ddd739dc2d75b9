"""COPY and ADD in `rsbox build`: what a step adds, as tar payloads, and where they go.

A step's sources become one or more *payloads*: a tar file (in the store's tmp/) holding
exactly the members the step writes, each with the owner and mode the image gets, and
the `rootless.cp.Plan` that places it (Docker's `cp` rules are COPY's rules: a file onto
a missing name becomes that name, into a directory keeps its own; a directory's content
goes into the destination). The cache key hashes the payloads, so it covers every
name, byte, mode, owner and mtime the step reads (BuildKit hashes its inputs the same
way); placing them writes the step's writable layer through fs.union (rootless.cp's
UnionTarget), without starting the container.

The rules, as Docker documents them for COPY/ADD:

- Sources are relative to the context (``..`` cannot leave it), after .dockerignore;
  ``*``, ``?`` and ``[...]`` match within one path component (Go's filepath.Match). A
  source that matches nothing is an error. A directory source copies its content, not
  itself. Symlinks inside are copied as symlinks.
- The destination is relative to WORKDIR; several sources need a destination ending in
  ``/``. Missing parent directories are created (mode 0755, owned by the --chown owner
  when given, else root, as BuildKit and buildah do).
- Owners: context files and heredocs become 0:0, ``--from`` files keep theirs; --chown
  sets both (``USER`` alone: the group is the same number, Docker's documented rule;
  names are looked up in the image's /etc/passwd and /etc/group). --chmod sets the mode
  (octal only).
- ADD extracts a local tar archive (plain, gzip, bzip2, xz) into the destination,
  keeping its owners; remote sources (URLs, git) are refused with a hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fs.changes import Stack
from rootless.cp import Plan, Target, apply_archive, find_source, resolve_scoped, source_items
from rootless.errors import BuildError, ContainerError
from rootless.images.instructions import Add, Copy, Heredoc
from rootless.pathmatch import compile_pattern
from rootless.userdb import resolve_user

_GLOB = re.compile(r"[*?\[]")
_REMOTE = re.compile(r"^(https?|git|ssh)://|^git@|\.git(#.*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


@dataclass(frozen=True)
class Payload:
    tar: Path  # the members, in order
    plan: Plan  # where they go (rootless.cp.apply_archive)
    mkdir: str  # a directory to create first (mkdir -p), "" for none


def _fail(ins: Copy | Add, detail: str, hint: str) -> BuildError:
    return BuildError(f"line {ins.line}: {ins.keyword}: {detail}", hint=hint)


def parse_chown(text: str, passwd: str, group: str) -> Owner:
    """--chown=USER[:GROUP] by Docker's rules (see the module docstring)."""
    user, colon, grp = text.partition(":")
    found = resolve_user(f"{user}:{grp}" if colon else user, passwd, group)
    if not colon:
        return Owner(found.uid, found.uid)
    return Owner(found.uid, found.gid)


def parse_chmod(ins: Copy | Add, text: str) -> int:
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise _fail(ins, f"invalid --chmod {text!r}", "give an octal mode such as --chmod=0755")
    return int(text, 8)


def match_sources(pattern: str, files: Sequence[str]) -> list[str]:
    """The context paths (relative, "" the root) a COPY source names."""
    cleaned = posixpath.normpath("/" + pattern).lstrip("/")
    if not _GLOB.search(cleaned):
        return [cleaned] if cleaned == "" or cleaned in files else []
    regex = compile_pattern(cleaned)
    return [f for f in files if regex.fullmatch(f)]


class _TarOut:
    """One payload being written into a temporary file, hashed as it goes."""

    def __init__(self, tmp: Path) -> None:
        fd, name = tempfile.mkstemp(prefix="copy-", suffix=".tar", dir=tmp)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._tar = tarfile.open(  # noqa: SIM115 (closed by close())
            fileobj=self._file, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
        )

    def add(self, info: tarfile.TarInfo, data: IO[bytes] | None = None) -> None:
        info.uname = info.gname = ""
        self._tar.addfile(info, data)

    def close(self) -> Path:
        self._tar.close()
        self._file.close()
        return self.path


def _info(name: str, st: os.stat_result, owner: Owner | None, mode: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid, info.gid = (owner.uid, owner.gid) if owner else (0, 0)
    info.mode = mode if mode is not None else stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    return info


class ContextReader:
    """The build context as a build may read it: the files .dockerignore keeps."""

    def __init__(self, root: Path, files: Sequence[str]) -> None:
        self.root = root
        self.files = tuple(files)
        self._set = frozenset(files)

    def _lstat(self, rel: str) -> os.stat_result:
        return os.lstat(self.root / rel) if rel else os.stat(self.root)

    def is_dir(self, rel: str) -> bool:
        return stat.S_ISDIR(self._lstat(rel).st_mode)

    def below(self, rel: str) -> Iterator[str]:
        prefix = rel + "/" if rel else ""
        return (f for f in self.files if f.startswith(prefix) and f != rel)

    def add_member(
        self, out: _TarOut, rel: str, name: str, owner: Owner | None, mode: int | None
    ) -> None:
        path = self.root / rel
        st = os.lstat(path)
        info = _info(name, st, owner, mode)
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            out.add(info)
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
            info.mode = 0o777
            out.add(info)
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                out.add(info, f)
        # sockets, fifos, devices in a context: not something a build copies (BuildKit)


def _dest_path(ins: Copy | Add, workdir: str) -> str:
    dest = ins.dest
    joined = posixpath.join(workdir or "/", dest)
    norm = posixpath.normpath(joined)
    if dest.endswith("/") or dest in (".", "./") or dest.endswith("/."):
        norm = norm.rstrip("/") + "/"
    return norm


def _as_dir(dest: str) -> str:
    return dest if dest.endswith("/") else dest + "/"


def payloads(
    ins: Copy | Add,
    *,
    workdir: str,
    tmp: Path,
    context: ContextReader | None,
    stage: Stack | None,
    owner: Owner | None,
) -> list[Payload]:
    """The step's payloads (see the module docstring); `context` for context files,
    `stage` for ``--from``. The caller removes the tar files."""
    mode = parse_chmod(ins, ins.chmod) if ins.chmod else None
    dest = _dest_path(ins, workdir)
    if isinstance(ins, Copy) and (ins.parents or ins.excludes):
        flag = "--parents" if ins.parents else "--exclude"
        raise _fail(ins, f"{flag} is not supported", f"drop {flag}; list the sources instead")
    if isinstance(ins, Add):
        if ins.checksum or ins.keep_git_dir is not None:
            raise _fail(
                ins, "--checksum and --keep-git-dir are for remote sources", "drop the flag"
            )
        for src in ins.sources:
            if _REMOTE.search(src):
                raise _fail(
                    ins,
                    f"remote source {src!r} is not supported",
                    "download it in a RUN step (curl, wget, git clone), or put it "
                    "into the build context and ADD it from there",
                )
    made: list[Payload] = []
    try:
        count = len(ins.sources) + len(ins.heredocs)
        if count > 1 and not dest.endswith("/"):
            raise _fail(
                ins,
                f"with more than one source the destination must be a directory ending in /: {ins.dest}",
                f"write {ins.dest}/",
            )
        for doc in ins.heredocs:
            made.append(_heredoc(doc, dest, tmp, owner, mode))
        if stage is not None:
            assert isinstance(ins, Copy)  # only COPY takes --from
            for src in ins.sources:
                made.append(_from_stage(ins, src, dest, tmp, stage, owner, mode))
        else:
            assert context is not None
            for src in ins.sources:
                try:
                    found = match_sources(src, context.files)
                except ValueError as exc:
                    raise _fail(
                        ins, f"bad pattern {src!r}: {exc}", "escape a literal [ ] - or \\ with \\"
                    ) from None
                if not found:
                    raise _fail(
                        ins,
                        f"no source files were specified: {src!r} matches nothing in the context",
                        "check the path, and that .dockerignore does not exclude it",
                    )
                if len(found) > 1 and not dest.endswith("/"):
                    raise _fail(
                        ins,
                        f"{src!r} matches several files: the destination must end in /",
                        f"write {ins.dest}/",
                    )
                for rel in found:
                    made.append(_from_context(ins, rel, dest, tmp, context, owner, mode))
        return made
    except BaseException as exc:
        for p in made:
            p.tar.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            where = exc.filename or "a source"
            raise _fail(
                ins,
                f"cannot read {where}: {exc.strerror or exc}",
                "make it readable, or exclude it in .dockerignore",
            ) from exc
        if isinstance(exc, tarfile.TarError):
            raise _fail(ins, f"cannot extract the archive: {exc}", "check the archive") from exc
        raise


def _heredoc(doc: Heredoc, dest: str, tmp: Path, owner: Owner | None, mode: int | None) -> Payload:
    out = _TarOut(tmp)
    data = doc.body.encode()
    info = tarfile.TarInfo(doc.name)
    info.uid, info.gid = (owner.uid, owner.gid) if owner else (0, 0)
    info.mode = mode if mode is not None else 0o644
    info.size = len(data)
    out.add(info, io.BytesIO(data))
    return Payload(out.close(), _plan(dest, doc.name), _parent(dest))


def _plan(dest: str, base: str | None = None) -> Plan:
    """Members whose top is `base` (a file: Docker's cp rules), or, without, the content
    of a directory that goes into `dest`; ids as the payload says (`archive`)."""
    if base is None:
        return Plan(dest=dest, stream=True, archive=True)
    return Plan(dest=dest, stream=False, src_base=base, archive=True)


def _parent(dest: str) -> str:
    """What must exist before the payload is placed: the destination itself when it
    names a directory (ends in /), else its parent."""
    return dest if dest.endswith("/") else posixpath.dirname(dest)


def _from_context(
    ins: Copy | Add,
    rel: str,
    dest: str,
    tmp: Path,
    context: ContextReader,
    owner: Owner | None,
    mode: int | None,
) -> Payload:
    out = _TarOut(tmp)
    try:
        if context.is_dir(rel):
            for sub in context.below(rel):
                name = sub[len(rel) + 1 :] if rel else sub
                context.add_member(out, sub, name, owner, mode)
            d = _as_dir(dest)
            return Payload(out.close(), _plan(d), d)
        base = posixpath.basename(rel)
        if isinstance(ins, Add) and _is_archive(context.root / rel):
            _extract_into(out, context.root / rel, owner, mode)
            d = _as_dir(dest)
            return Payload(out.close(), _plan(d), d)
        context.add_member(out, rel, base, owner, mode)
        return Payload(out.close(), _plan(dest, base), _parent(dest))
    except BaseException:
        with contextlib.suppress(Exception):
            out.close()
        out.path.unlink(missing_ok=True)
        raise


def _is_archive(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode) and tarfile.is_tarfile(path)
    except OSError:
        return False


def _extract_into(out: _TarOut, archive: Path, owner: Owner | None, mode: int | None) -> None:
    """ADD's auto-extraction: the archive's members, named as in it (checked by
    rootless.cp.apply_archive: nothing outside the destination). Directories the
    archive leaves out are made (0755, root's unless --chown), as tar itself does."""
    seen: set[str] = set()
    with tarfile.open(archive, "r:*") as src:
        for member in src:
            name = posixpath.normpath(member.name).lstrip("/")
            if name in ("", "."):
                continue
            parts = name.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in seen:
                    seen.add(parent)
                    made = tarfile.TarInfo(parent)
                    made.type, made.mode = tarfile.DIRTYPE, 0o755
                    made.mtime = int(member.mtime)
                    if owner is not None:
                        made.uid, made.gid = owner.uid, owner.gid
                    out.add(made)
            seen.add(name)
            info = member  # the header, with our owner/mode decisions
            info.name = name
            if owner is not None:
                info.uid, info.gid = owner.uid, owner.gid
            if mode is not None and not member.issym():
                info.mode = mode
            data = src.extractfile(member) if member.isreg() else None
            out.add(info, data)


def _from_stage(
    ins: Copy,
    src: str,
    dest: str,
    tmp: Path,
    stack: Stack,
    owner: Owner | None,
    mode: int | None,
) -> Payload:
    from rootless.images.layer_tar import TarWriter

    try:
        source = find_source(stack, src, True, f"--from={ins.from_}")
    except ContainerError as exc:
        raise _fail(
            ins,
            f"{src}: no such file in --from={ins.from_}",
            "check the path (it is taken from the root of that stage or image)",
        ) from exc
    fd, name = tempfile.mkstemp(prefix="from-", suffix=".tar", dir=tmp)
    raw = Path(name)
    try:
        base = posixpath.basename(source.path)
        top = "" if source.is_dir else base
        with os.fdopen(fd, "wb") as f:
            writer = TarWriter(f)
            for entry, member in source_items(stack, source, top):
                if member:
                    writer.add(entry, member)
            writer.close()
        out = _TarOut(tmp)
        try:
            with tarfile.open(raw, "r|") as t:
                for info in t:
                    if owner is not None:
                        info.uid, info.gid = owner.uid, owner.gid
                    if mode is not None and not info.issym():
                        info.mode = mode
                    out.add(info, t.extractfile(info) if info.isreg() else None)
            path = out.close()
        except BaseException:
            with contextlib.suppress(Exception):
                out.close()
            out.path.unlink(missing_ok=True)
            raise
    finally:
        raw.unlink(missing_ok=True)
    if source.is_dir:
        d = _as_dir(dest)
        return Payload(path, _plan(d), d)
    return Payload(path, _plan(dest, base), _parent(dest))


def digest(items: Sequence[Payload]) -> str:
    """What the cache key covers of a COPY/ADD: every payload's bytes and placement."""
    h = hashlib.sha256()
    for p in items:
        h.update(repr((p.plan, p.mkdir)).encode())
        with open(p.tar, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def mkdirs(target: Target, path: str, owner: Owner | None) -> None:
    """mkdir -p inside the container's root, symlinks resolved inside it."""

    def readlink(p: str) -> str | None:
        return target.readlink(p) if target.kind(p) == "link" else None

    uid, gid = (owner.uid, owner.gid) if owner else (0, 0)
    done = ""
    for part in [p for p in path.split("/") if p not in ("", ".")]:
        candidate = resolve_scoped(f"{done}/{part}" if done else part, readlink, True)
        kind = target.kind(candidate)
        if kind is None:
            target.mkdir(candidate, 0o755, uid, gid)
        elif kind != "dir":
            raise ContainerError(
                f"cannot create the directory /{candidate}: a file is in the way",
                hint="remove it in an earlier step, or choose another destination",
            )
        done = candidate


def place(target: Target, items: Sequence[Payload], owner: Owner | None) -> None:
    """Write the payloads into the container's root."""
    for p in items:
        if p.mkdir:
            mkdirs(target, p.mkdir, owner)
        with tarfile.open(p.tar, "r|", encoding="utf-8", errors="surrogateescape") as tar:
            apply_archive(target, tar, p.plan)
