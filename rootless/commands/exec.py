"""`rsbox exec`: its parser and handler, on their own so that `exec` imports nothing else.

The whole path of `exec` (this module, rootless.containers_lookup, rootless.running,
rootless.launch.exec and become) imports neither pathlib, dataclasses, typing nor
sqlite3 (for a full id): measured under load, those four cost ~22 ms of CPU, and `exec`
went from 116 to 40 ms of CPU (README, Benchmarks).
"""

from __future__ import annotations

import argparse

from rootless.commands import Context
from rootless.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-w", "--workdir", metavar="DIR")
    p.add_argument("-u", "--user", metavar="UID[:GID]")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(handler=_exec)


def _exec(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.containers_lookup import container_dir
    from rootless.launch.exec import exec_in

    if not ns.cmd:
        raise UsageError("exec needs a command", hint="rsbox exec CONTAINER COMMAND [ARG...]")
    if ns.workdir is not None and not ns.workdir.startswith("/"):
        raise UsageError(f"working directory {ns.workdir!r} is not absolute", hint="use -w /path")
    cid, cdir = container_dir(ctx.root_arg, ns.container)
    return exec_in(cdir, cid, ns.cmd, ns.env, ns.workdir, ns.user, ns.tty, ns.interactive)
