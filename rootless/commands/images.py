"""`rsbox import`, `images`, `pull`, `push`, `tag`, `rmi`, `image inspect`, `load`, `save`,
`login`, `logout`."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from rootless.aliases import IMAGE
from rootless.commands import Context
from rootless.commands.containers import filter_and_format
from rootless.errors import UsageError

if TYPE_CHECKING:
    from rootless.registry.client import TransportOptions


def _tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-verify",
        default="true",
        choices=["true", "false"],
        help="verify the registry's TLS certificate (false also allows plain HTTP)",
    )
    p.add_argument("--cert-dir", metavar="DIR", help="CA certificates (*.crt) for the registry")
    p.add_argument("--creds", metavar="USER:PASS", help="credentials for this command only")


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
    im.add_argument("-q", "--quiet", action="store_true", help="image ids only")
    im.add_argument(
        "-a", "--all", action="store_true", help="also untagged intermediate images (of builds)"
    )
    im.add_argument("--no-trunc", action="store_true")
    filter_and_format(im, "dangling=true|false, label=KEY[=VALUE], reference=PATTERN")
    im.set_defaults(handler=_images)

    p = sub.add_parser("pull", help="pull an image from a registry (or oci:DIR[:TAG])")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    _tls_flags(p)
    p.add_argument("image")
    p.set_defaults(handler=_pull)

    ps = sub.add_parser("push", help="push an image to a registry (or oci:DIR[:TAG])")
    ps.add_argument("-q", "--quiet", action="store_true")
    _tls_flags(ps)
    ps.add_argument("source")
    ps.add_argument("destination", nargs="?")
    ps.set_defaults(handler=_push)

    t = sub.add_parser("tag", help="give an image another name")
    t.add_argument("source")
    t.add_argument("target", nargs="+")
    t.set_defaults(handler=_tag)

    r = sub.add_parser("rmi", help="remove images (and their layers no other image uses)")
    r.add_argument("-f", "--force", action="store_true", help="also remove their containers")
    r.add_argument("images", nargs="+")
    r.set_defaults(handler=_rmi)

    # `rsbox inspect` belongs to containers; images are inspected as in Podman:
    # `rsbox image inspect`. Docker's other forms (`image ls`, `image rm`...) are the
    # plain verbs (rootless.aliases).
    group = sub.add_parser(
        "image",
        help="image commands: inspect, prune, and Docker's forms of the verbs above",
        description="Docker's management forms: "
        + ", ".join(f"image {a}" for a in IMAGE)
        + " are the plain verbs (image ls is images, image rm is rmi).",
    )
    isub = group.add_subparsers(dest="image_command", required=True, parser_class=type(group))
    ins = isub.add_parser("inspect", help="show images as JSON (like podman image inspect)")
    ins.add_argument(
        "-f", "--format", metavar="TEMPLATE", help="a Go template for each, e.g. {{.Id}}"
    )
    ins.add_argument("images", nargs="+")
    ins.set_defaults(handler=_inspect)
    pr = isub.add_parser("prune", help="remove dangling images (-a: every image no container uses)")
    pr.add_argument(
        "-a", "--all", action="store_true", help="every image no container uses, not only untagged"
    )
    pr.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    pr.set_defaults(handler=_prune)

    ld = sub.add_parser("load", help="load images from a docker-archive or oci-archive")
    ld.add_argument("-i", "--input", required=True, metavar="FILE")
    ld.add_argument("-q", "--quiet", action="store_true")
    ld.set_defaults(handler=_load)

    sv = sub.add_parser("save", help="save images to a docker-archive or oci-archive")
    sv.add_argument("-o", "--output", required=True, metavar="FILE")
    sv.add_argument("--format", default="docker-archive", choices=["docker-archive", "oci-archive"])
    sv.add_argument("images", nargs="+")
    sv.set_defaults(handler=_save)

    li = sub.add_parser("login", help="store credentials for a registry (checked first)")
    li.add_argument("-u", "--username")
    li.add_argument("-p", "--password")
    li.add_argument("--password-stdin", action="store_true")
    _tls_flags(li)
    li.add_argument("registry")
    li.set_defaults(handler=_login)

    lo = sub.add_parser("logout", help="forget rsbox's credentials for a registry")
    lo.add_argument("registry")
    lo.set_defaults(handler=_logout)


def _opts(ns: argparse.Namespace) -> TransportOptions:
    from rootless import image_commands

    return image_commands.transport_options(
        tls_verify=ns.tls_verify == "true", cert_dir=ns.cert_dir, creds=ns.creds
    )


def _import(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    print(image_commands.cmd_import(ctx.store(), ns.source, ns.reference))
    return 0


def _images(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    text = image_commands.cmd_images(
        ctx.store(),
        ns.format or "table",
        filters=ns.filter,
        quiet=ns.quiet,
        trunc=not ns.no_trunc,
        all_images=ns.all,
    )
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _pull(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    image = image_commands.cmd_pull(
        ctx.store(), ns.image, opts=_opts(ns), platform=ns.platform, quiet=ns.quiet
    )
    print(image.id)
    return 0


def _push(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    digest = image_commands.cmd_push(
        ctx.store(), ns.source, ns.destination, opts=_opts(ns), quiet=ns.quiet
    )
    if not ns.quiet:
        print(digest)
    return 0


def _tag(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    store = ctx.store()
    for target in ns.target:
        image_commands.cmd_tag(store, ns.source, target)
    return 0


def _rmi(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    for line in image_commands.cmd_rmi(ctx.store(), ns.images, force=ns.force):
        print(line)
    return 0


def _inspect(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    sys.stdout.write(image_commands.cmd_inspect(ctx.store(), ns.images, ns.format) + "\n")
    return 0


def _prune(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.verbs_cli import image_prune

    return image_prune(ns, ctx)


def _load(ns: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path

    from rootless import image_archive

    for image in image_archive.load(ctx.store(), Path(ns.input)):
        print(f"Loaded image: {', '.join(image.names) or image.id}")
    return 0


def _save(ns: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path

    from rootless import image_archive

    image_archive.save(ctx.store(), ns.images, Path(ns.output), ns.format)
    return 0


def _login(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    username = ns.username or input("Username: ")
    if ns.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif ns.password is not None:
        password = ns.password
    else:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise UsageError(
            "login needs a username and a password", hint="rsbox login -u USER REGISTRY"
        )
    print(image_commands.cmd_login(ns.registry, username, password, _opts(ns)))
    return 0


def _logout(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless import image_commands

    print(image_commands.cmd_logout(ns.registry))
    return 0
