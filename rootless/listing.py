"""What `ps`, `images`, `stats` and `system df` show: Docker's rows and their schemas.

Each schema is Docker's formatter context for that command (docker/cli,
cli/command/formatter/container.go, image.go, disk_usage.go, volume.go, buildcache.go,
cli/command/container/formatter_stats.go; read for the semantics): the field names a
template may use, the column header of each, the fields `{{json .}}` shows (the set in
Docker's documented example) and the default table. The values are computed here from
the store, once per row; `.Size` of a container walks its files, so, as Docker, it is
only computed when the format names `.Size`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rootless.format import (
    Row,
    Schema,
    ellipsis,
    go_time,
    human_duration,
    human_size,
    label_header,
    truncate_id,
)
from rootless.lifecycle import CONFIG_NAME, State, parse_time, read_json, state_of
from rootless.store import Container, Image, Store, split_name

CONTAINER = Schema(
    kind="container",
    headers={
        "ID": "CONTAINER ID",
        "Names": "NAMES",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Size": "SIZE",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Networks": "NETWORKS",
    },
    json_fields=(
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    ),
    default="table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
    methods={"Label": label_header},
)

IMAGE = Schema(
    kind="image",
    headers={
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "Digest": "DIGEST",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Size": "SIZE",
        "Containers": "CONTAINERS",
        "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE",
    },
    json_fields=(
        "Containers",
        "CreatedAt",
        "CreatedSince",
        "Digest",
        "ID",
        "Repository",
        "SharedSize",
        "Size",
        "Tag",
        "UniqueSize",
    ),
    default="table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t"
    "{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}",
)

STATS = Schema(
    kind="stats",
    headers={
        "Container": "CONTAINER",
        "Name": "NAME",
        "ID": "CONTAINER ID",
        "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT",
        "MemPerc": "MEM %",
        "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O",
        "PIDs": "PIDS",
    },
    json_fields=(
        "BlockIO",
        "CPUPerc",
        "Container",
        "ID",
        "MemPerc",
        "MemUsage",
        "Name",
        "NetIO",
        "PIDs",
    ),
    default="table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
    "{{.BlockIO}}\t{{.PIDs}}",
)

DISK_USAGE = Schema(
    kind="disk usage",
    headers={
        "Type": "TYPE",
        "TotalCount": "TOTAL",
        "Active": "ACTIVE",
        "Size": "SIZE",
        "Reclaimable": "RECLAIMABLE",
    },
    json_fields=("Active", "Reclaimable", "Size", "TotalCount", "Type"),
    default="table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
)

# `system df -v`: one table per kind, in Docker's columns.
DF_IMAGES = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}"
DF_CONTAINERS = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}"
_VOLUME_HEADERS = {
    "Name": "VOLUME NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "Mountpoint": "MOUNTPOINT",
    "Labels": "LABELS",
    "Links": "LINKS",
    "Size": "SIZE",
    "Group": "GROUP",
    "Availability": "AVAILABILITY",
    "Status": "STATUS",
}
_VOLUME_JSON = ("Driver", "Labels", "Links", "Mountpoint", "Name", "Scope", "Size")
VOLUME = Schema(  # `system df -v`
    kind="volume",
    headers=_VOLUME_HEADERS,
    json_fields=_VOLUME_JSON,
    default="table {{.Name}}\t{{.Links}}\t{{.Size}}",
    methods={"Label": label_header},
)
VOLUME_LS = Schema(  # `volume ls`
    kind="volume",
    headers=_VOLUME_HEADERS,
    json_fields=_VOLUME_JSON,
    default="table {{.Driver}}\t{{.Name}}",
    methods={"Label": label_header},
)
BUILD_CACHE = Schema(
    kind="build cache record",
    headers={
        "ID": "CACHE ID",
        "CacheType": "CACHE TYPE",
        "Size": "SIZE",
        "CreatedSince": "CREATED",
        "LastUsedSince": "LAST USED",
        "UsageCount": "USAGE",
        "Shared": "SHARED",
    },
    json_fields=(
        "CacheType",
        "CreatedSince",
        "ID",
        "LastUsedSince",
        "Shared",
        "Size",
        "UsageCount",
    ),
    default="table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t"
    "{{.UsageCount}}\t{{.Shared}}",
)


def _ago(when: datetime | None, now: datetime) -> str:
    return human_duration((now - when).total_seconds()) if when else ""


def status_text(st: State, now: datetime | None = None) -> str:
    """Docker's STATUS: `Up 5 minutes`, `Exited (0) 2 hours ago`, `Created`."""
    now = now or datetime.now(UTC)
    if st.status == "running":
        return f"Up {_ago(parse_time(st.started_at), now) or 'Less than a second'}"
    if st.status == "exited":
        when = parse_time(st.finished_at or st.started_at)
        return f"Exited ({st.exit_code}) {_ago(when, now) or 'Less than a second'} ago"
    return "Created"


@dataclass(frozen=True)
class ContainerView:
    """A container as `ps` sees it: the store's record, its state, what `run` saved."""

    container: Container
    state: State
    image_name: str  # as given to `run`
    image: Image | None  # None: its image is gone (should not happen; shown anyway)
    command: str
    created: datetime | None
    created_text: str | None  # as config.json has it
    ports: tuple[str, ...]  # Docker's `0.0.0.0:8080->80/tcp`
    mounts: tuple[str, ...]  # volume names, bind mount sources
    network: str
    local_volumes: int = 0  # named and anonymous volumes it mounts

    @property
    def labels(self) -> Mapping[str, str]:
        return self.image.config.labels if self.image else {}

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.image.layers) if self.image else ()


def container_views(store: Store) -> list[ContainerView]:
    """Every container, newest first."""
    from rootless.errors import ImageNotFound
    from rootless.network import Port
    from rootless.runspec import RunSpec

    images: dict[str, Image | None] = {}
    out = []
    for c in store.containers():
        cfg = read_json(c.dir / CONFIG_NAME)
        if c.image_id not in images:
            try:
                images[c.image_id] = store.resolve_image(c.image_id)
            except ImageNotFound:
                images[c.image_id] = None
        spec_doc = cfg.get("spec")
        spec = RunSpec.from_json(spec_doc) if isinstance(spec_doc, dict) else None
        ports: list[str] = []
        if spec is not None:
            for text in spec.publish:
                p = Port.parse(text)
                ports.append(f"0.0.0.0:{p.host}->{p.container}/{p.proto}")
        plan = cfg.get("plan") or {}
        argv = plan.get("argv") or cfg.get("command") or []
        out.append(
            ContainerView(
                container=c,
                state=state_of(c.id, c.dir),
                image_name=str(cfg.get("image") or c.image_id[:12]),
                image=images[c.image_id],
                command=" ".join(str(a) for a in argv),
                created=parse_time(cfg.get("created")),
                created_text=cfg.get("created"),
                ports=tuple(ports),
                # Docker's .Mounts: a volume's name, else the bind's source (no tmpfs).
                mounts=tuple(v.name or str(v.source) for v in spec.volumes if v.kind != "tmpfs")
                if spec
                else (),
                local_volumes=sum(v.kind == "volume" for v in spec.volumes) if spec else 0,
                network=spec.network if spec else "",
            )
        )
    return out


def container_size(c: Container) -> int:
    from rootless.housekeeping import disk_usage

    return disk_usage([c.upper])


def container_row(
    view: ContainerView,
    *,
    trunc: bool = True,
    with_size: bool = False,
    size: int | None = None,
    now: datetime | None = None,
) -> Row:
    """Docker's ContainerContext for one container. `size`: the writable layer's, known
    already (`system df -v`, which shows no virtual size); else, `with_size`, it is
    computed when the template asks for it."""
    now = now or datetime.now(UTC)
    c = view.container
    labels = view.labels

    def size_text() -> str:
        if size is not None:
            return human_size(size, 3)
        if not with_size:
            return "0B"
        rw = container_size(c)
        rootfs = rw + (view.image.size if view.image else 0)
        return f"{human_size(rw, 3)} (virtual {human_size(rootfs, 3)})"

    mounts = [ellipsis(m, 15) if trunc else m for m in view.mounts]
    values: dict[str, Any] = {
        "ID": c.id[:12] if trunc else c.id,
        "Names": c.name,
        "Image": view.image_name or "<no image>",
        "Command": _go_quote(ellipsis(view.command, 20) if trunc else view.command),
        "CreatedAt": go_time(view.created) if view.created else "",
        "RunningFor": f"{_ago(view.created, now) or 'Less than a second'} ago",
        "Ports": ", ".join(view.ports),
        "State": view.state.status,
        "Status": status_text(view.state, now),
        "Size": size_text,
        "Labels": ",".join(sorted(f"{k}={v}" for k, v in labels.items())),
        "Label": lambda name: labels.get(name, ""),
        "Mounts": ",".join(mounts),
        "LocalVolumes": str(view.local_volumes),
        "Networks": view.network,
    }
    return Row(CONTAINER, values)


def _go_quote(text: str) -> str:
    """Go's strconv.Quote (what Docker's COMMAND column shows): JSON's escapes for what
    Go escapes too, non-ASCII printable characters kept."""
    import json

    return json.dumps(text, ensure_ascii=False)


def image_rows(
    store: Store,
    image: Image,
    names: Sequence[str] | None = None,
    *,
    trunc: bool = True,
    now: datetime | None = None,
    usage: tuple[int, int, int] | None = None,
) -> list[Row]:
    """Docker's image rows: one per name (`<none>` `<none>` for an image without one).
    `names`: those to show (a `reference` filter shows only the matching ones).
    `usage`: (size, shared size, containers) from `system df -v`; else the uncompressed
    size, and N/A as `docker images` shows."""
    now = now or datetime.now(UTC)
    names = list(image.names if names is None else names)
    manifest = store.image_manifest_digest(image.id)
    from rootless.image_commands import parse_created

    created = parse_created(image.created)
    pairs = [split_name(n) for n in names] or [("<none>", "<none>")]
    if usage is None:
        size_text, shared, unique, users = human_size(image.size, 3), "N/A", "N/A", "N/A"
    else:
        size, shared_size, count = usage
        size_text = human_size(size, 3)
        shared, unique, users = human_size(shared_size), human_size(size - shared_size), str(count)
    rows = []
    for repo, tag in pairs:
        values: dict[str, Any] = {
            "ID": truncate_id(image.id) if trunc else f"sha256:{image.id}",
            "Repository": repo,
            "Tag": tag,
            "Digest": f"sha256:{manifest}" if manifest and names else "<none>",
            "CreatedSince": f"{_ago(created, now) or 'Less than a second'} ago" if created else "",
            "CreatedAt": go_time(created) if created else "",
            "Size": size_text,
            "Containers": users,
            "SharedSize": shared,
            "UniqueSize": unique,
        }
        rows.append(Row(IMAGE, values))
    return rows


def disk_usage_rows(usage: Any) -> list[Row]:
    """The four lines of `system df` (a `housekeeping.DiskUsage`)."""
    rows = []
    for kind, u in (
        ("Images", usage.images),
        ("Containers", usage.containers),
        ("Local Volumes", usage.volumes),
        ("Build Cache", usage.build_cache),
    ):
        reclaimable = human_size(u.reclaimable)
        if u.size > 0 and kind != "Build Cache":
            reclaimable += f" ({u.reclaimable * 100 // u.size}%)"
        rows.append(
            Row(
                DISK_USAGE,
                {
                    "Type": kind,
                    "TotalCount": str(u.total),
                    "Active": str(u.active),
                    "Size": human_size(u.size),
                    "Reclaimable": reclaimable,
                },
            )
        )
    return rows


def volume_row(
    name: str, mountpoint: str, labels: Mapping[str, str], usage: tuple[int, int] | None = None
) -> Row:
    """Docker's volume row; `usage` (links, bytes) only in `system df -v`, else N/A as
    `volume ls` shows. Labels in name order (Docker's come in map order)."""
    links, size = (str(usage[0]), human_size(usage[1])) if usage else ("N/A", "N/A")
    values: dict[str, Any] = {
        "Name": name,
        "Driver": "local",
        "Scope": "local",
        "Mountpoint": mountpoint,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Label": lambda key: labels.get(key, ""),
        "Links": links,
        "Size": size,
        "Group": "N/A",
        "Availability": "N/A",
        "Status": "N/A",
    }
    return Row(VOLUME, values)
