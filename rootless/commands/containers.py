"""`rsbox ps|logs|stop|kill|start|restart|rm|wait|inspect|top|port|rename|stats|pause|
unpause` and `rsbox container prune`: the parsers (`exec` has its own module).

The handlers live in `rootless.containers_cli` and `rootless.verbs_cli`, imported only
when one of these commands runs, so that `rsbox run` parses its command line without them.
Docker's management forms (`container ls`, `container rm`...) are the same verbs
(rootless.aliases); `container` itself holds `prune`, which has no short form.
"""

from __future__ import annotations

import argparse
import importlib

from rootless.aliases import CONTAINER
from rootless.commands import Context, Handler

FORMAT_HELP = "table, json, or a Go template ('{{.ID}}', 'table {{.ID}}\\t{{.Names}}')"


def lazy(name: str, module: str = "rootless.containers_cli") -> Handler:
    def handler(ns: argparse.Namespace, ctx: Context) -> int:
        real: Handler = getattr(importlib.import_module(module), name)
        return real(ns, ctx)

    return handler


def filter_and_format(p: argparse.ArgumentParser, filter_keys: str) -> None:
    """A listing's Docker options: repeatable `-f/--filter KEY=VALUE` (rootless.filters
    parses them) and `--format` (rootless.format)."""
    p.add_argument(
        "-f", "--filter", action="append", default=[], metavar="KEY=VALUE", help=filter_keys
    )
    p.add_argument("--format", metavar="FORMAT", help=FORMAT_HELP)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also stopped containers")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("--no-trunc", action="store_true")
    filter_and_format(
        p, "status, name, id, label, ancestor, exited (repeat: same key OR, keys AND)"
    )
    p.set_defaults(handler=lazy("_ps"))

    p = sub.add_parser("logs", help="print a detached container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all", metavar="N")
    p.add_argument("container")
    p.set_defaults(handler=lazy("_logs"))

    p = sub.add_parser("stop", help="SIGTERM, then SIGKILL after a grace period")
    p.add_argument("-t", "--time", type=int, default=10, metavar="SECS")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=lazy("_stop"))

    p = sub.add_parser("kill", help="send a signal to a container's pid 1")
    p.add_argument("-s", "--signal", default="KILL", metavar="SIG")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=lazy("_kill"))

    p = sub.add_parser("start", help="start stopped containers (detached)")
    p.add_argument("-a", "--attach", action="store_true", help="run in the foreground")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=lazy("_start"))

    p = sub.add_parser("restart", help="stop, then start containers")
    p.add_argument("-t", "--time", type=int, default=10, metavar="SECS")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=lazy("_restart"))

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill running ones first")
    p.add_argument("-v", "--volumes", action="store_true", help="also their anonymous volumes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=lazy("_rm"))

    p = sub.add_parser("wait", help="wait for containers to exit, print their codes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=lazy("_wait"))

    p = sub.add_parser("inspect", help="a container's configuration and state as JSON")
    p.add_argument(
        "-f", "--format", metavar="TEMPLATE", help="a Go template for each, e.g. {{.State.Status}}"
    )
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=lazy("_inspect"))

    p = sub.add_parser("port", help="a container's published ports")
    p.add_argument("container")
    p.set_defaults(handler=lazy("_port"))

    p = sub.add_parser("top", help="the processes of a running container")
    p.add_argument("container")
    p.set_defaults(handler=lazy("_top"))

    p = sub.add_parser("rename", help="give a container another name")
    p.add_argument("container")
    p.add_argument("name")
    p.set_defaults(handler=lazy("rename", "rootless.verbs_cli"))

    p = sub.add_parser(
        "stats",
        help="CPU, memory, pids, network and block I/O of containers (from /proc: "
        "containers have no cgroup of their own here)",
    )
    p.add_argument("-a", "--all", action="store_true", help="also stopped containers")
    p.add_argument("--no-stream", action="store_true", help="one reading, then exit")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", metavar="FORMAT", help=FORMAT_HELP)
    p.add_argument("containers", nargs="*")
    p.set_defaults(handler=lazy("stats", "rootless.verbs_cli"))

    for verb, what in (("pause", "freeze"), ("unpause", "thaw")):
        p = sub.add_parser(
            verb, help=f"{what} a container's processes (needs a cgroup freezer of its own)"
        )
        p.add_argument("containers", nargs="+")
        p.set_defaults(handler=lazy(verb, "rootless.verbs_cli"))

    group = sub.add_parser(
        "container",
        help="container commands: prune, and Docker's forms of the verbs above",
        description="Docker's management forms: "
        + ", ".join(f"container {a}" for a in CONTAINER)
        + " are the plain verbs (container ls is ps).",
    )
    csub = group.add_subparsers(dest="container_command", required=True, parser_class=type(group))
    p = csub.add_parser("prune", help="remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=lazy("container_prune", "rootless.verbs_cli"))
