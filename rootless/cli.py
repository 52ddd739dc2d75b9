"""The `rsbox` command line: argv -> typed values -> one library call per command.

Errors are printed as one line, `rsbox: error: MESSAGE (hint: HINT)`, never a traceback
(set RSBOX_DEBUG=1 to see one), with Docker's exit codes: 125 when rsbox fails, 126 when
the command cannot be executed, 127 when it is not found, else the command's own status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rootless.errors import RsboxError, UsageError
from rootless.prefork import Helper, wants_helper


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rsbox", description="Rootless containers for people who do not have root.")
    p.add_argument(
        "--root", type=Path, help="store directory (default: $RSBOX_ROOT or $XDG_DATA_HOME/rsbox)"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a command in a new container")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    r.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
    r.add_argument("-w", "--workdir", metavar="DIR")
    r.add_argument("-u", "--user", metavar="UID[:GID]")
    r.add_argument("--hostname", metavar="NAME")
    r.add_argument("--name", metavar="NAME")
    r.add_argument("--entrypoint", metavar="CMD")
    r.add_argument("--network", "--net", default="host", metavar="host|none")
    r.add_argument("--userns", default="auto", metavar="auto|single")
    r.add_argument("--security-opt", action="append", default=[], metavar="seccomp=PATH|unconfined")
    r.add_argument("image")
    r.add_argument("cmd", nargs=argparse.REMAINDER)

    i = sub.add_parser(
        "import",
        help="make a one-layer image from a rootfs dir or tarball, "
        "or import an OCI layout (oci:DIR[:TAG])",
    )
    i.add_argument("source")
    i.add_argument("reference")

    im = sub.add_parser("images", help="list images")
    im.add_argument("--format", default="table", choices=["table", "json"])

    sub.add_parser("info", help="what this host allows, with fixes")
    return p


def _seccomp_choice(opts: Sequence[str]) -> str:
    choice = "default"
    for opt in opts:
        key, eq, value = opt.partition("=")
        if key != "seccomp" or not eq or not value:
            raise UsageError(
                f"unsupported --security-opt {opt!r}",
                hint="use --security-opt seccomp=PATH|unconfined",
            )
        choice = value
    return choice


def _cmd_run(store_root: Path | None, ns: argparse.Namespace, helper: Helper | None) -> int:
    from rootless.run import run
    from rootless.runspec import RunSpec, Volume

    spec = RunSpec(
        image=ns.image,
        command=tuple(ns.cmd),
        remove=ns.rm,
        interactive=ns.interactive,
        tty=ns.tty,
        env=tuple(ns.env),
        volumes=tuple(Volume.parse(v) for v in ns.volume),
        workdir=ns.workdir,
        user=ns.user,
        hostname=ns.hostname,
        name=ns.name,
        entrypoint=ns.entrypoint,
        network=ns.network,
        userns=ns.userns,
        seccomp=_seccomp_choice(ns.security_opt),
        host_env=dict(os.environ),
    )
    spec.validate()
    return run(store_root, spec, helper)


def _dispatch(ns: argparse.Namespace, helper: Helper | None) -> int:
    if ns.command == "run":
        return _cmd_run(ns.root, ns, helper)
    if ns.command == "info":
        from rootless.info import render_info

        print(render_info())
        return 0
    from rootless import image_commands
    from rootless.store import Store

    store = Store.open(ns.root)
    if ns.command == "import":
        print(image_commands.cmd_import(store, ns.source, ns.reference))
    elif ns.command == "images":
        print(image_commands.cmd_images(store, ns.format))
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else list(argv)
    helper = None
    if wants_helper(args):
        # First thing: P1 imports the FUSE server while we do the rest (rootless.prefork).
        helper = Helper()
    try:
        ns = _build_parser().parse_args(args)
        code = _dispatch(ns, helper)
    except RsboxError as exc:
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        print(f"rsbox: error: {exc.message}{hint}", file=sys.stderr)
        if os.environ.get("RSBOX_DEBUG"):
            raise
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    finally:
        if helper is not None and not helper.used:
            helper.abort()
    sys.stdout.flush()
    sys.exit(code)
