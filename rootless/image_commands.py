"""`rsbox import` and `rsbox images`: argument values in, printable text out.

The CLI module parses argv and prints; these functions hold the behaviour.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from .errors import UsageError
from .image_import import import_rootfs
from .store import Image, Store, split_name


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


def _rows(image: Image) -> list[tuple[str, str]]:
    return [split_name(n) for n in image.names] or [("<none>", "<none>")]


def cmd_images(store: Store, fmt: str = "table") -> str:
    """List images: ``table`` (like ``podman images``) or ``json``.

    JSON objects: Id (hex), Names (normalised), Size (bytes, uncompressed), Created (the
    config's RFC 3339 string), Layers (``sha256:<diff_id>``, bottom first).
    """
    images = store.images()
    if fmt == "json":
        return json.dumps(
            [
                {
                    "Id": image.id,
                    "Names": list(image.names),
                    "Size": image.size,
                    "Created": image.created,
                    "Layers": [f"sha256:{p.name}" for p in image.layers],
                }
                for image in images
            ],
            indent=4,
        )
    if fmt != "table":
        raise UsageError(f"unknown format {fmt!r}", hint="use --format table or --format json")
    header = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
    table = [header]
    for image in images:
        for repo, tag in _rows(image):
            table.append(
                (repo, tag, image.id[:12], human_ago(image.created), human_size(image.size))
            )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ]
    return "\n".join(lines)
