"""`rsbox volume create|ls|inspect|rm|prune` (Docker's `volume` group): the parsers."""

from __future__ import annotations

import argparse

from rootless.commands import Handler
from rootless.commands.containers import filter_and_format, lazy


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("volume", help="volume create, ls, inspect, rm, prune")
    vsub = group.add_subparsers(dest="volume_command", required=True, parser_class=type(group))

    def handler(name: str) -> Handler:
        return lazy(name, "rootless.volumes_cli")

    p = vsub.add_parser("create", help="create a volume (a random name if none is given)")
    p.add_argument("-d", "--driver", default="local", metavar="local")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("name", nargs="?")
    p.set_defaults(handler=handler("create"))

    p = vsub.add_parser("ls", aliases=["list"], help="list volumes")
    p.add_argument("-q", "--quiet", action="store_true", help="names only")
    filter_and_format(p, "dangling, driver, label, label!, name")
    p.set_defaults(handler=handler("ls"))

    p = vsub.add_parser("inspect", help="volumes as JSON")
    p.add_argument("-f", "--format", metavar="TEMPLATE", help="a Go template for each")
    p.add_argument("volumes", nargs="+")
    p.set_defaults(handler=handler("inspect"))

    p = vsub.add_parser("rm", aliases=["remove"], help="remove volumes no container uses")
    p.add_argument(
        "-f", "--force", action="store_true", help="also remove the containers that use them"
    )
    p.add_argument("volumes", nargs="+")
    p.set_defaults(handler=handler("rm"))

    p = vsub.add_parser("prune", help="remove the anonymous volumes no container uses")
    p.add_argument("-a", "--all", action="store_true", help="named volumes too")
    p.add_argument(
        "--filter", action="append", default=[], metavar="KEY=VALUE", help="label, label!"
    )
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=lazy("volume_prune", "rootless.verbs_cli"))
