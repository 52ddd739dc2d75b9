"""`rsbox commit`, `diff`, `cp`, `export`, `history`: a container's changes, out as an
image, a list, files or a tarball. The work is in rootless.images.commit, rootless.cp,
rootless.snapshot and fs.changes; the handlers parse and print."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rootless.commands import Context
from rootless.errors import UsageError

if TYPE_CHECKING:
    from rootless.store import Container, Store

CP_HELP = """\
Copy files between a container and the host, as docker cp:
  rsbox cp [OPTIONS] CONTAINER:SRC DEST|-
  rsbox cp [OPTIONS] SRC|- CONTAINER:DEST
`-` is a tar stream on stdin or stdout. Works for running and stopped containers."""


def _bool(text: str) -> bool:
    value = text.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("commit", help="create an image from a container's changes")
    c.add_argument(
        "-c",
        "--change",
        action="append",
        default=[],
        metavar="INSTRUCTION",
        help="apply a Containerfile instruction to the image's config "
        "(CMD ENTRYPOINT ENV EXPOSE LABEL STOPSIGNAL USER VOLUME WORKDIR)",
    )
    c.add_argument("-m", "--message", default="", help="the commit message (history COMMENT)")
    c.add_argument("-a", "--author", default="", help='the author ("Name <email>")')
    c.add_argument(
        "-p",
        "--pause",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="freeze a running container while committing, where it has a cgroup freezer "
        "(default true)",
    )
    c.add_argument("--compression", default="gzip", choices=["gzip", "zstd"])
    c.add_argument(
        "--timestamp",
        metavar="SECONDS",
        help="created time of the image, and the latest mtime in its layer (reproducible "
        "commits; default $SOURCE_DATE_EPOCH if set)",
    )
    c.add_argument("-q", "--quiet", action="store_true", help="accepted; only the id is printed")
    c.add_argument("container")
    c.add_argument("name", nargs="?", metavar="NAME[:TAG]")
    c.set_defaults(handler=_commit)

    d = sub.add_parser("diff", help="list the changes to a container's filesystem (A/C/D)")
    d.add_argument("container")
    d.set_defaults(handler=_diff)

    p = sub.add_parser(
        "cp",
        help="copy files between a container and the host",
        description=CP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-a", "--archive", action="store_true", help="keep uid/gid of the source")
    p.add_argument("-L", "--follow-link", action="store_true", help="follow a symlink SRC")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.set_defaults(handler=_cp)

    e = sub.add_parser("export", help="write a container's filesystem as a tar archive")
    e.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    e.add_argument("container")
    e.set_defaults(handler=_export)

    h = sub.add_parser("history", help="show the history of an image")
    h.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    h.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    h.add_argument(
        "-H",
        "--human",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="sizes and dates in human readable form (default true)",
    )
    h.add_argument("image")
    h.set_defaults(handler=_history)


def _commit(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.images.commit import CommitOptions, commit, timestamp_option
    from rootless.store import normalize_name

    names = [normalize_name(ns.name)] if ns.name else []
    opts = CommitOptions(
        changes=tuple(ns.change),
        message=ns.message,
        author=ns.author,
        compression=ns.compression,
        timestamp=timestamp_option(ns.timestamp, os.environ),
        pause=ns.pause,
    )
    with ctx.store() as store:
        image = commit(store, store.container(ns.container), names, opts)
    print(f"sha256:{image.id}")
    return 0


def _diff(ns: argparse.Namespace, ctx: Context) -> int:
    from fs.changes import upper_changes
    from rootless.snapshot import container_stack, mount_points, settled

    with ctx.store() as store:
        c = store.container(ns.container)
        with settled(c):
            changes = upper_changes(container_stack(store, c), mount_points(c))
    out = sys.stdout.buffer
    for ch in changes.diff:
        out.write(f"{ch.kind} /".encode() + os.fsencode(ch.path) + b"\n")
    out.flush()
    return 0


def _cp(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.cp import copy_in, copy_out, parse_arg
    from rootless.format import human_size

    src, dest = parse_arg(ns.source), parse_arg(ns.destination)
    if src.container is not None and dest.container is not None:
        raise UsageError(
            "copying between containers is not supported",
            hint="copy to the host first, then into the other container",
        )
    if src.container is None and dest.container is None:
        raise UsageError(
            "rsbox cp needs a container on one side",
            hint="write the container's side as CONTAINER:PATH",
        )
    with ctx.store() as store:
        if src.container is not None:
            c = store.container(src.container)
            with _stdout_reader_may_leave():
                total = copy_out(store, c, src.path, dest.path, follow=ns.follow_link)
            where = dest.path
        else:
            assert dest.container is not None
            c = store.container(dest.container)
            total, refused = copy_in(
                store, c, src.path, dest.path, archive=ns.archive, follow=ns.follow_link
            )
            where = f"{dest.container}:{dest.path}"
            if refused:
                print(
                    f"rsbox: warning: {refused} entries keep root's ids: the running container "
                    "maps no other ids (a single-id user namespace); stop it and copy again to "
                    "keep them",
                    file=sys.stderr,
                )
    if not ns.quiet and where != "-" and sys.stderr.isatty():
        print(f"Successfully copied {human_size(total)} to {where}", file=sys.stderr)
    return 0


def _export(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.snapshot import export

    with ctx.store() as store:
        c = store.container(ns.container)
        if ns.output is None:
            if sys.stdout.isatty():
                raise UsageError(
                    "cowardly refusing to write a tar archive to a terminal",
                    hint="use -o FILE or redirect the output",
                )
            with _stdout_reader_may_leave():
                export(store, c, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return 0
        _export_to_file(store, c, Path(ns.output))
    return 0


@contextlib.contextmanager
def _stdout_reader_may_leave() -> Iterator[None]:
    """`rsbox export c | tar t | head`: the reader going away ends the command quietly
    (stdout is pointed at /dev/null, so that nothing flushes into the closed pipe)."""
    try:
        yield
    except BrokenPipeError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _export_to_file(store: Store, c: Container, output: Path) -> None:
    """tmp + rename beside `output`: never a half-written archive under its name."""
    import tempfile

    from rootless.errors import ContainerError
    from rootless.snapshot import export

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    except OSError as exc:
        raise ContainerError(
            f"cannot write {output}: {exc.strerror}",
            hint=f"check that {output.parent} exists and that you can write there",
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            export(store, c, f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _history(ns: argparse.Namespace, ctx: Context) -> int:
    from datetime import UTC, datetime

    from rootless.format import ellipsis, human_duration, human_size, tabwrite
    from rootless.image_commands import parse_created
    from rootless.images.commit import history_rows

    with ctx.store() as store:
        image = store.resolve_image(ns.image)
        rows = history_rows(store, image)

    def ident(image_id: str | None) -> str:
        if image_id is None:
            return "<missing>"
        return f"sha256:{image_id}" if ns.no_trunc else image_id[:12]

    if ns.quiet:
        for row in rows:
            print(ident(row.image_id))
        return 0
    now = datetime.now(UTC)
    lines = ["IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT"]
    for row in rows:
        when = parse_created(row.created)
        if when is None:
            created = ""
        elif ns.human:
            created = human_duration((now - when).total_seconds()) + " ago"
        else:
            created = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        by = row.created_by.replace("\t", " ")
        if not ns.no_trunc:
            by = ellipsis(by, 45)
        size = human_size(row.size, 3) if ns.human else str(row.size)
        lines.append(f"{ident(row.image_id)}\t{created}\t{by}\t{size}\t{row.comment}")
    sys.stdout.write(tabwrite("\n".join(lines) + "\n"))
    return 0
