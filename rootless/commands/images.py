"""`rsbox import`, `rsbox images`."""

from __future__ import annotations

import argparse

from rootless.commands import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser(
        "import",
        help="make a one-layer image from a rootfs dir or tarball, "
        "or import an OCI layout (oci:DIR[:TAG])",
    )
    i.add_argument("source")
    i.add_argument("reference")
    i.set_defaults(handler=_import)

    im = sub.add_parser("images", help="list images")
    im.add_argument("--format", default="table", choices=["table", "json"])
    im.set_defaults(handler=_images)


def _import(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    print(image_commands.cmd_import(ctx.store(), ns.source, ns.reference))
    return 0


def _images(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    print(image_commands.cmd_images(ctx.store(), ns.format))
    return 0
