"""`rsbox system df|prune|info`: the store as a whole (Docker's `system` group)."""

from __future__ import annotations

import argparse

from rootless.commands.containers import FORMAT_HELP, lazy
from rootless.commands.info import show_info


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("system", help="system df, system prune, system info")
    ssub = group.add_subparsers(dest="system_command", required=True, parser_class=type(group))

    p = ssub.add_parser("df", help="disk space of images, containers, volumes, build cache")
    p.add_argument("-v", "--verbose", action="store_true", help="each image and container")
    p.add_argument("--format", metavar="FORMAT", help=FORMAT_HELP)
    p.set_defaults(handler=lazy("system_df", "rootless.verbs_cli"))

    p = ssub.add_parser(
        "prune", help="remove stopped containers and dangling images (-a: unused images)"
    )
    p.add_argument(
        "-a", "--all", action="store_true", help="every image no container uses, not only untagged"
    )
    p.add_argument(
        "--volumes",
        action="store_true",
        help="also the anonymous volumes no container uses",
    )
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=lazy("system_prune", "rootless.verbs_cli"))

    ssub.add_parser("info", help="what this host allows, with fixes (as rsbox info)").set_defaults(
        handler=show_info
    )
