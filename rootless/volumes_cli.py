"""The handlers of `rsbox volume create|ls|inspect|rm` (prune: rootless.verbs_cli).

What each prints is Docker's (docs volume_create.md, volume_ls.md, volume_inspect.md,
volume_rm.md): `create` the name; `ls` the `DRIVER  VOLUME NAME` table or --format;
`inspect` a JSON array indented by four spaces, or the template once per volume; `rm`
each name it removed. A failing name is one `rsbox: error:` line on stderr, the others
are still done, and the status is 125 (Docker's CLI says 1; 125 is rsbox's "the command
failed" everywhere else). `rm -f` follows Podman: it removes the containers that use
the volume first (Docker refuses an in-use volume even with -f), and a name that does not
exist is no error.
"""

from __future__ import annotations

import argparse
import json
import sys

from rootless.commands import Context
from rootless.errors import ContainerError, UsageError, VolumeError


def create(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.volumes import Volumes

    if ns.driver != "local":
        raise UsageError(f"unknown volume driver {ns.driver!r}", hint="rsbox has the local driver")
    if ns.opt:
        raise UsageError(
            f"volume options are not supported: {', '.join(ns.opt)}",
            hint="the local driver's type/device/o mount a filesystem, which needs root; "
            "use `run --tmpfs` or --mount type=tmpfs for a tmpfs",
        )
    labels = {}
    for item in ns.label:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label {item!r}", hint="use --label KEY=VALUE")
        labels[key] = value
    with ctx.store() as store:
        rec, _ = Volumes(store).create(ns.name, labels)
    print(rec.name)
    return 0


def ls(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.filters import VolumeFilter
    from rootless.format import OutputFormat
    from rootless.listing import VOLUME_LS, volume_row
    from rootless.volumes import Volumes

    filt = VolumeFilter.parse(ns.filter)
    text = "{{.Name}}" if ns.quiet else ns.format
    fmt = OutputFormat.parse(text, VOLUME_LS)
    with ctx.store() as store:
        vols = Volumes(store)
        used = vols.users()
        rows = [
            volume_row(v.name, str(v.mountpoint), v.labels)
            for v in vols.all()
            if filt.matches(v.name, v.labels, v.name in used)
        ]
    sys.stdout.write(fmt.render(rows, VOLUME_LS))
    return 0


def inspect(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.gotemplate import Template
    from rootless.volumes import Volumes

    template = Template.parse(ns.format) if ns.format and ns.format != "json" else None
    docs = []
    code = 0
    with ctx.store() as store:
        vols = Volumes(store)
        for name in ns.volumes:
            try:
                docs.append(vols.get(name).inspect())
            except (VolumeError, UsageError) as exc:
                print(exc.line(), file=sys.stderr)
                code = 125
    if template is not None:
        out = "".join(template.execute(doc) + "\n" for doc in docs)
        sys.stdout.write(out)
    else:
        print(json.dumps(docs, indent=4))
    return code


def rm(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.containers_cli import remove_container
    from rootless.volumes import Volumes

    code = 0
    with ctx.store() as store:
        vols = Volumes(store)
        for name in ns.volumes:
            try:
                if ns.force:
                    if vols.find(name) is None:
                        continue
                    for c in vols.users().get(name, []):
                        remove_container(store, c, True)
                vols.remove(name)
            except (VolumeError, UsageError, ContainerError) as exc:
                print(exc.line(), file=sys.stderr)
                code = 125
                continue
            print(name, flush=True)
    return code
