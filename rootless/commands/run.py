"""`rsbox run`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rootless.commands import Context
from rootless.errors import UsageError

if TYPE_CHECKING:
    from rootless.store import Image, Store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="run a command in a new container")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument(
        "-d", "--detach", action="store_true", help="run in the background, print the id"
    )
    r.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    r.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument(
        "-v", "--volume", action="append", default=[], metavar="SRC|NAME:DST[:ro]", help="or DST"
    )
    r.add_argument(
        "--mount", action="append", default=[], metavar="type=bind|volume|tmpfs,src=,dst=[,ro]"
    )
    r.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]")
    r.add_argument("-w", "--workdir", metavar="DIR")
    r.add_argument("-u", "--user", metavar="UID[:GID]")
    r.add_argument("--hostname", metavar="NAME")
    r.add_argument("--name", metavar="NAME")
    r.add_argument("--entrypoint", metavar="CMD")
    r.add_argument(
        "--network",
        "--net",
        default=None,
        metavar="pasta[:OPT,...]|slirp4netns|none|host",
        help="default: a network of its own, through pasta (else slirp4netns)",
    )
    r.add_argument("-p", "--publish", action="append", default=[], metavar="HOST:CTR[/udp]")
    r.add_argument("--add-host", action="append", default=[], metavar="NAME:IP")
    r.add_argument("--memory", "-m", metavar="SIZE", help="e.g. 64m (see rsbox info)")
    r.add_argument("--cpus", metavar="N")
    r.add_argument("--cpu-shares", "-c", type=int, metavar="N", help="relative weight, e.g. 512")
    r.add_argument("--pids-limit", type=int, metavar="N")
    r.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    r.add_argument(
        "--cgroup-parent",
        metavar="PATH",
        help="the delegated cgroup v2 to make the container's cgroup in (default: your own)",
    )
    r.add_argument(
        "--cgroups",
        default="enabled",
        metavar="enabled|disabled",
        help="disabled: no cgroup of the container's own even where delegated (rlimits only)",
    )
    r.add_argument("--log-opt", action="append", default=[], metavar="max-size=10m|max-file=3")
    r.add_argument(
        "--init", action="store_true", help="a minimal pid 1 that reaps and forwards signals"
    )
    r.add_argument("--restart", default="no", metavar="no|on-failure[:N]")
    r.add_argument(
        "--cap-add", action="append", default=[], metavar="CAP", help="e.g. NET_ADMIN, ALL"
    )
    r.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="e.g. CHOWN, ALL")
    r.add_argument(
        "--privileged",
        action="store_true",
        help="every capability of the user namespace, no masked paths, no seccomp filter",
    )
    r.add_argument(
        "--userns",
        default="auto",
        metavar="auto|single|keep-id",
        help="keep-id: you are your own uid and gid inside (Podman's keep-id)",
    )
    r.add_argument(
        "--security-opt", action="append", default=[], metavar="seccomp=PATH|NAME|unconfined"
    )
    r.add_argument(
        "--seccomp-learn",
        type=Path,
        metavar="OUT.json",
        help="run under a filter that records every syscall; write the profile it needs",
    )
    r.add_argument(
        "--pull",
        choices=("missing", "always", "never"),
        metavar="missing|always|never",
        help="pull the image first (default: missing, or the config file's [run] pull)",
    )
    r.add_argument("image")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    r.set_defaults(handler=_run)


def network_choice(asked: str | None) -> tuple[str, tuple[str, ...]]:
    """(mode, pasta's options). Default, as Podman: a network namespace of the container's
    own, wired by the first tool found (pasta, then slirp4netns); the host's network is an
    explicit choice (`--network host`)."""
    from rootless.runspec import parse_network

    if asked is not None:
        return parse_network(asked)
    from rootless.network import default_tool

    tool = default_tool()
    if tool is None:
        raise UsageError(
            "no tool for the container's own network: neither pasta nor slirp4netns is installed",
            hint="install passt (pasta) or slirp4netns, or choose --network host or --network none",
        )
    return tool, ()


def seccomp_choice(opts: Sequence[str], default: str = "default") -> str:
    choice = default
    for opt in opts:
        key, eq, value = opt.partition("=")
        if key != "seccomp" or not eq or not value:
            raise UsageError(
                f"unsupported --security-opt {opt!r}",
                hint="use --security-opt seccomp=PATH|unconfined",
            )
        choice = value
    return choice


def _image(store: Store, ref: str, pull: str) -> Image:
    """The image to run, resolved once; pulled first as `docker run --pull` does
    (rootless.image_commands)."""
    from rootless.errors import ImageNotFound

    if pull != "always":
        try:
            return store.resolve_image(ref)
        except ImageNotFound:
            if pull == "never":
                raise
    # Only now: importing the pull machinery costs `run` ~60 ms.
    from rootless.image_commands import ensure_image

    ensure_image(store, ref, pull)
    return store.resolve_image(ref)


def _run(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.launch.caps import parse_cap
    from rootless.mountspec import parse_mount_flag, parse_tmpfs_flag
    from rootless.runspec import RunSpec, Volume

    settings = ctx.settings()  # the config file's defaults; flags override them
    # One store, opened once and left open: the CLI ends `run` with os._exit, and the
    # close of the last connection would checkpoint the WAL (an fsync) on every start.
    store = ctx.store()
    image = _image(store, ns.image, ns.pull or settings.pull or "missing")
    network_mode, network_options = network_choice(
        ns.network if ns.network is not None else settings.network
    )
    spec = RunSpec(
        image=ns.image,
        command=tuple(ns.cmd),
        remove=ns.rm,
        interactive=ns.interactive,
        tty=ns.tty,
        env=tuple(ns.env),
        volumes=(
            *(Volume.parse(v) for v in ns.volume),
            *(parse_mount_flag(m) for m in ns.mount),
            *(parse_tmpfs_flag(t) for t in ns.tmpfs),
        ),
        workdir=ns.workdir,
        user=ns.user,
        hostname=ns.hostname,
        name=ns.name,
        entrypoint=ns.entrypoint,
        network=network_mode,
        network_options=network_options,
        publish=tuple(ns.publish),
        add_hosts=tuple(ns.add_host),
        memory=ns.memory,
        cpus=ns.cpus,
        cpu_shares=ns.cpu_shares,
        pids_limit=ns.pids_limit,
        ulimits=tuple(ns.ulimit),
        cgroup_parent=ns.cgroup_parent,
        cgroups=ns.cgroups,
        log_opts=(*settings.log_opts, *ns.log_opt),  # a repeated key: the last wins
        init=ns.init,
        restart=ns.restart,
        userns=ns.userns,
        cap_add=tuple(parse_cap(c) for c in ns.cap_add),
        cap_drop=tuple(parse_cap(c) for c in ns.cap_drop),
        privileged=ns.privileged,
        # Docker's --privileged: no filter, unless one is asked for by name (refused).
        seccomp=seccomp_choice(
            ns.security_opt,
            "unconfined" if ns.privileged else settings.seccomp or "default",
        ),
        seccomp_learn=ns.seccomp_learn.absolute() if ns.seccomp_learn else None,
        detach=ns.detach,
        host_env=dict(os.environ),
    )
    from rootless.launch.gather import run

    return run(store, image, spec, ctx.helper)
