"""The image commands (import, images, pull, push, tag, rmi, inspect, login, load,
save): argument values in, printable text out.

The CLI module parses argv and prints; these functions hold the behaviour.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import PULL_POLICIES
from .errors import UsageError
from .image_import import import_rootfs
from .store import Image, Store, normalize_name, split_name

if TYPE_CHECKING:
    from .registry.client import TransportOptions
    from .registry.reference import Reference


def cmd_import(store: Store, src: str, ref: str) -> str:
    """Import SRC (directory, tarball, ``oci:DIR[:TAG]``) as REF; return the image id."""
    if not src:
        raise UsageError("rsbox import needs a source", hint="rsbox import SRC NAME")
    if not ref:
        raise UsageError("rsbox import needs an image name", hint="rsbox import SRC NAME")
    return import_rootfs(store, src, ref).id


def human_size(size: int) -> str:
    """Decimal units with 3 significant digits, as Podman prints them (``4.26 MB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def parse_created(created: str) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Go writes 9 digits; Python takes 6)."""
    if not created:
        return None
    text = created.replace("Z", "+00:00")
    head, dot, tail = text.partition(".")
    if dot:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[:digits][:6].ljust(6, "0") + tail[digits:]
        text = f"{head}.{tail}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def human_ago(created: str, now: datetime | None = None) -> str:
    dt = parse_created(created)
    if dt is None:
        return "unknown"
    seconds = int(((now or datetime.now(UTC)) - dt).total_seconds())
    if seconds < 1:
        return "Less than a second ago"
    for limit, div, unit in (
        (60, 1, "second"),
        (3600, 60, "minute"),
        (86400, 3600, "hour"),
        (86400 * 14, 86400, "day"),
        (86400 * 60, 86400 * 7, "week"),
        (86400 * 730, 86400 * 30, "month"),
    ):
        if seconds < limit:
            n = seconds // div
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{seconds // (86400 * 365)} years ago"


def cmd_images(
    store: Store,
    fmt: str = "table",
    *,
    filters: Sequence[str] = (),
    quiet: bool = False,
    trunc: bool = True,
    all_images: bool = False,
) -> str:
    """List images: ``table`` (like ``podman images``), ``json``, or a Go template
    (``{{.ID}}``, ``table {{.Repository}}\\t{{.Tag}}``: Docker's fields, rootless.listing).
    ``filters``: ``--filter`` items (rootless.filters); ``quiet``: ids only; untagged
    intermediate images (rootless.images.commit.intermediate_ids) only with ``all_images``.

    JSON objects: Id (hex), Names (normalised), Size (bytes, uncompressed), Created (the
    config's RFC 3339 string), Layers (``sha256:<diff_id>``, bottom first), ReadOnly
    (from a read-only `--image-store`, Podman's field). The table gains a last column,
    R/O, when it shows an image of a read-only store.
    """
    from .filters import ImageFilter
    from .format import OutputFormat
    from .listing import IMAGE, image_rows

    wanted = ImageFilter.parse(filters)
    template = None
    if quiet or fmt not in ("table", "json"):
        template = OutputFormat.parse("{{.ID}}" if quiet else fmt, IMAGE)
    shown: list[tuple[Image, list[str]]] = []
    hidden: set[str] = set()
    if not all_images:
        from .images.commit import intermediate_ids

        hidden = intermediate_ids(store)
    for image in store.images():
        if image.id not in hidden and wanted.matches(image.names, image.config.labels):
            shown.append((image, wanted.names_shown(image.names)))
    images = [image for image, _ in shown]
    if template is not None:
        rows = [r for image, names in shown for r in image_rows(store, image, names, trunc=trunc)]
        return template.render(rows, IMAGE)
    if fmt == "json":
        return json.dumps(
            [
                {
                    "Id": image.id,
                    "Names": list(image.names),
                    "Size": image.size,
                    "Created": image.created,
                    "Layers": [f"sha256:{p.name}" for p in image.layers],
                    "ReadOnly": image.store is not None,
                }
                for image in images
            ],
            indent=4,
        )
    marked = any(image.store is not None for image in images)
    header: tuple[str, ...] = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
    header += ("R/O",) if marked else ()
    table = [header]
    for image, names in shown:
        for repo, tag in [split_name(n) for n in names] or [("<none>", "<none>")]:
            row: tuple[str, ...] = (
                repo,
                tag,
                image.id[:12],
                human_ago(image.created),
                human_size(image.size),
            )
            row += (("yes" if image.store is not None else "no"),) if marked else ()
            table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ]
    return "\n".join(lines)


# --- registry commands ------------------------------------------------------------------


def transport_options(
    tls_verify: bool = True, cert_dir: str | None = None, creds: str | None = None
) -> TransportOptions:
    from .registry.auth import Credentials
    from .registry.client import TransportOptions, insecure_from_env

    credentials = None
    if creds:
        user, sep, password = creds.partition(":")
        if not sep:
            raise UsageError(
                "--creds needs USER:PASSWORD", hint="rsbox pull --creds USER:PASS IMAGE"
            )
        credentials = Credentials(user, password)
    return TransportOptions(
        tls_verify=tls_verify,
        cert_dir=Path(cert_dir) if cert_dir else None,
        insecure=insecure_from_env(),
        credentials=credentials,
    )


def cmd_pull(
    store: Store,
    ref: str,
    *,
    opts: TransportOptions,
    platform: str | None = None,
    quiet: bool = False,
) -> Image:
    """Pull REF (a registry reference, or ``oci:DIR[:TAG]``) into the store."""
    if ref.startswith("oci:"):
        from .oci_layout import parse_oci_ref

        path, tag = parse_oci_ref(ref)
        return import_rootfs(store, ref, f"{path.name.lower() or 'image'}:{tag or 'latest'}")
    from .registry import conf
    from .registry.progress import make_progress
    from .registry.pull import Platform, pull

    image, _ = pull(
        store,
        conf.load().candidates(ref),
        opts=opts,
        platform=Platform.parse(platform) if platform else None,
        progress=make_progress(quiet),
    )
    return image


def cmd_tag(store: Store, src: str, dest: str) -> None:
    store.tag_image(src, normalize_name(dest))


def cmd_rmi(store: Store, refs: list[str], force: bool = False) -> list[str]:
    """Remove images (a name that is one of several of an image only untags it, like
    ``podman rmi``). Returns the lines to print."""
    out: list[str] = []
    for ref in refs:
        image = store.resolve_image(ref)
        with contextlib.suppress(UsageError):
            name = normalize_name(ref)
            if name in image.names and len(image.names) > 1:
                store.untag(name)
                out.append(f"Untagged: {name}")
                continue
        store.remove_image(image.id, force=force)
        out.extend(f"Untagged: {n}" for n in image.names)
        out.append(f"Deleted: {image.id}")
    return out


def cmd_inspect(store: Store, refs: list[str], fmt: str | None = None) -> str:
    """JSON like ``podman image inspect``; with ``fmt`` (a Go template, as ``docker image
    inspect --format``) the template's text for each image, one per line."""
    docs = []
    for ref in refs:
        image = store.resolve_image(ref)
        config = json.loads(store.image_config_bytes(image.id))
        manifest = store.image_manifest_digest(image.id)
        repo_digests = (
            [f"{split_name(n)[0]}@sha256:{manifest}" for n in image.names] if manifest else []
        )
        docs.append(
            {
                "Id": image.id,
                "Digest": f"sha256:{manifest}" if manifest else "",
                "RepoTags": list(image.names),
                "RepoDigests": repo_digests,
                "Created": image.created,
                "Config": config.get("config") or {},
                "Architecture": config.get("architecture", ""),
                "Os": config.get("os", ""),
                "Variant": config.get("variant", ""),
                "Size": image.size,
                "RootFS": {
                    "Type": "layers",
                    "Layers": [f"sha256:{p.name}" for p in image.layers],
                },
                "Labels": dict(image.config.labels),
                "History": config.get("history") or [],
            }
        )
    if fmt and fmt != "json":
        from .gotemplate import Template

        template = Template.parse(fmt)
        return "\n".join(template.execute(doc) for doc in docs)
    return json.dumps(docs, indent=4)


def cmd_login(registry: str, username: str, password: str, opts: TransportOptions) -> str:
    """Check the credentials against the registry, then store them (mode 0600)."""
    from .registry.auth import Credentials, store_credentials
    from .registry.push import check_login

    creds = Credentials(username, password)
    check_login(registry, dataclasses.replace(opts, credentials=creds))
    store_credentials(registry, creds)
    return "Login Succeeded!"


def cmd_logout(registry: str) -> str:
    from .registry.auth import remove_credentials

    if not remove_credentials(registry):
        raise UsageError(
            f"not logged in to {registry}",
            hint="credentials from docker/podman files are removed with their own logout",
        )
    return f"Removed login credentials for {registry}"


def cmd_push(
    store: Store, src: str, dest: str | None, *, opts: TransportOptions, quiet: bool = False
) -> str:
    """Push the local image SRC to DEST (default: SRC's own name); DEST may be
    ``oci:DIR[:TAG]``. Returns the manifest digest."""
    if src.startswith("oci:"):  # a layout pushed as it is (multi-platform indexes too)
        import trio

        from .oci_layout import parse_oci_ref
        from .registry.progress import make_progress
        from .registry.push import push_layout
        from .registry.reference import parse_reference

        if not dest or dest.startswith("oci:"):
            raise UsageError(
                "push oci:DIR[:TAG] needs a registry destination",
                hint="rsbox push oci:DIR:TAG REGISTRY/NAME:TAG",
            )
        path, tag = parse_oci_ref(src)
        ref = parse_reference(dest)
        opts = _push_options(ref, opts)
        progress = make_progress(quiet)
        return trio.run(lambda: push_layout(path, tag, ref, opts=opts, progress=progress))
    image = store.resolve_image(src)
    target = dest or src
    if target.startswith("oci:"):
        from .oci_layout import parse_oci_ref
        from .registry.push import save_oci_layout

        path, tag = parse_oci_ref(target)
        return save_oci_layout(store, image, path, tag or "latest")
    from .registry.progress import make_progress
    from .registry.push import push
    from .registry.reference import parse_reference

    if dest is None and image.names and src not in image.names:
        with contextlib.suppress(UsageError):
            name = normalize_name(src)
            target = name if name in image.names else target
    reference = parse_reference(target)
    if reference.digest:
        raise UsageError("cannot push to a digest", hint="push to NAME:TAG")
    opts = _push_options(reference, opts)
    digest, _ = push(store, image, reference, opts=opts, progress=make_progress(quiet))
    return digest


def _push_options(ref: Reference, opts: TransportOptions) -> TransportOptions:
    """registries.conf on a push, as Podman: no mirror or rewrite, but a blocked name is
    refused and an insecure one may use plain HTTP or an untrusted certificate."""
    from .registry import conf

    registries = conf.load()
    registries.check_push(ref)
    return dataclasses.replace(opts, tls_verify=False) if registries.insecure(ref) else opts


def ensure_image(store: Store, ref: str, policy: str = "missing") -> None:
    """`rsbox run --pull=POLICY`: pull REF first when it is missing (like `docker run`),
    always, or never. Local-only names (``localhost/...``) and ids are never pulled:
    there is no registry to ask. Progress goes to stderr, the command's output is its own.
    """
    from .errors import ImageNotFound

    if policy not in PULL_POLICIES:
        raise UsageError(f"invalid --pull value {policy!r}", hint="use --pull=missing|always|never")
    if policy == "never":
        return
    if policy == "missing":
        try:
            store.resolve_image(ref)
            return
        except ImageNotFound:
            pass
    from .registry.reference import parse_reference

    try:
        reference = parse_reference(ref)
    except UsageError:
        return  # not a registry reference (an id prefix?): let `run` report it
    if reference.registry == "localhost":
        return
    from .registry.client import TransportOptions, insecure_from_env

    cmd_pull(store, ref, opts=TransportOptions(insecure=insecure_from_env()), quiet=False)
