"""`rsbox build`: argv -> `BuildOptions` -> rootless.images.build."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rootless.commands import Context
from rootless.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("build", help="build an image from a Containerfile or Dockerfile")
    b.add_argument(
        "-f",
        "--file",
        type=Path,
        metavar="FILE",
        help="default: CONTEXT/Containerfile, else CONTEXT/Dockerfile",
    )
    b.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        metavar="NAME",
        help="name the image (repeatable)",
    )
    b.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="KEY alone takes the value from the environment",
    )
    b.add_argument("--target", metavar="STAGE", help="build up to this stage")
    b.add_argument(
        "--no-cache", action="store_true", help="run every step, ignoring the layer cache"
    )
    b.add_argument(
        "--pull", nargs="?", const="always", default="missing", metavar="missing|always|never"
    )
    b.add_argument(
        "--platform", metavar="OS/ARCH", help="only this machine's platform is supported"
    )
    b.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument(
        "--network",
        default="host",
        metavar="host|none",
        help="RUN steps' network (default host, as podman build)",
    )
    b.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="SRC:DST[:ro]",
        help="bind a host path into every RUN step (not into the image)",
    )
    b.add_argument(
        "--host-ca",
        action="store_true",
        help="give RUN steps the host's CA bundle (not baked into the image; see README)",
    )
    b.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    b.add_argument("--userns", default="auto", metavar="auto|single")
    b.add_argument("--compression", default="gzip", metavar="gzip|zstd")
    b.add_argument(
        "--timestamp",
        metavar="SECONDS",
        help="created time and mtime clamp (default $SOURCE_DATE_EPOCH if set)",
    )
    b.add_argument("context", nargs="?", default=".", help="the build context directory")
    b.set_defaults(handler=_build)


def _pairs(items: list[str], what: str, from_env: bool) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}", hint=f"use {what} KEY=VALUE")
        if not eq:
            if not from_env:
                raise UsageError(f"invalid {what} {item!r}", hint=f"use {what} KEY=VALUE")
            if key not in os.environ:
                continue  # Docker drops a --build-arg KEY the environment does not have
            value = os.environ[key]
        out.append((key, value))
    return out


def _build(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.images.build import BuildOptions, build, find_containerfile
    from rootless.images.commit import timestamp_option
    from rootless.images.layer_tar import check_compression
    from rootless.runspec import BUILD_USERNS_MODES, Volume
    from rootless.store import normalize_name

    context = Path(ns.context)
    if not context.is_dir():
        raise UsageError(
            f"the build context {ns.context} is not a directory", hint="give a directory"
        )
    if ns.pull not in ("missing", "always", "never"):
        raise UsageError(
            f"invalid --pull value {ns.pull!r}", hint="use --pull=missing|always|never"
        )
    if ns.network not in ("host", "none"):
        raise UsageError(
            f"unsupported --network {ns.network!r} for a build",
            hint="RUN steps use the host's network (default) or none",
        )
    if ns.userns not in BUILD_USERNS_MODES:
        raise UsageError(f"unsupported --userns {ns.userns!r}", hint="use auto or single")
    volumes = tuple(Volume.parse(v) for v in ns.volume)
    for v in volumes:
        if v.kind != "bind":
            raise UsageError(
                f"rsbox build -v takes a host path: {v.name or v.target!r} is not one",
                hint="use -v /host/dir:/dir (named volumes and tmpfs are for rsbox run)",
            )
    opts = BuildOptions(
        context=context.absolute(),
        containerfile=find_containerfile(context, ns.file),
        names=tuple(normalize_name(t) for t in ns.tag),
        build_args=dict(_pairs(ns.build_arg, "--build-arg", True)),
        target=ns.target,
        no_cache=ns.no_cache,
        pull=ns.pull,
        platform=ns.platform,
        labels=tuple(_pairs(ns.label, "--label", False)),
        network=ns.network,
        volumes=volumes,
        host_ca=ns.host_ca,
        quiet=ns.quiet,
        userns=ns.userns,
        compression=check_compression(ns.compression),
        timestamp=timestamp_option(ns.timestamp, os.environ),
    )
    with ctx.store() as store:
        image = build(store, opts)
    print(image.id if ns.quiet else f"sha256:{image.id}", flush=True)
    return 0
