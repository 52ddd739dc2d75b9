"""The handlers of `rename`, `stats`, `pause`, `unpause`, the prunes and `system df`.

Thin: argv values in, a library call (rootless.housekeeping, rootless.stats,
rootless.listing), Docker's text out. What each prints is Docker's (docker/cli: the
docs of each command and cli/command/{container,image,system}/prune.go, df.go, stats.go):

* a prune asks `WARNING! ... Are you sure you want to continue? [y/N] ` unless `-f`,
  reads one line of stdin (`y` or `Y` is yes; anything else, or none, cancels quietly
  with status 0), then prints `Deleted Containers:` / `Deleted Images:` sections, each
  followed by an empty line, and `Total reclaimed space: SIZE`;
* `stats` prints Docker's table (or --format) once a second, each frame drawn over the
  last as Docker draws it; `--no-stream` reads twice, a second apart (as the daemon does
  for a one-shot reading), and prints one table. Where its figures come from is said on
  stderr (rootless.stats).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rootless.commands import Context
from rootless.errors import ContainerError

if TYPE_CHECKING:
    from rootless.format import OutputFormat, Row
    from rootless.housekeeping import PruneReport
    from rootless.stats import Sample
    from rootless.store import Container, Store

CONTAINER_WARNING = "WARNING! This will remove all stopped containers."
DANGLING_WARNING = "WARNING! This will remove all dangling images."
ALL_IMAGES_WARNING = (
    "WARNING! This will remove all images without at least one container associated to them."
)
VOLUMES_WARNING = (
    "WARNING! This will remove anonymous local volumes not used by at least one container."
)
ALL_VOLUMES_WARNING = (
    "WARNING! This will remove all local volumes not used by at least one container."
)


def confirm(message: str) -> bool:
    """Docker's prompt (internal/prompt.Confirm): the question on stdout, one line of
    stdin; only `y` (any case, spaces around) is yes."""
    sys.stdout.write(f"{message} [y/N] ")
    sys.stdout.flush()
    return sys.stdin is not None and sys.stdin.readline().strip().lower() == "y"


def _running(c: Container) -> bool:
    from rootless.lifecycle import monitor_pid

    return monitor_pid(c.id) is not None


def _print_report(
    report: PruneReport, containers: bool, images: bool, volumes: bool = False
) -> None:
    from rootless.format import human_size

    if containers and report.containers:
        print("Deleted Containers:\n" + "".join(f"{cid}\n" for cid in report.containers))
    if volumes and report.volumes:
        print("Deleted Volumes:\n" + "".join(f"{name}\n" for name in report.volumes))
    if images and report.images:
        print("Deleted Images:\n" + "".join(f"{what}: {x}\n" for what, x in report.images))
    print("Total reclaimed space:", human_size(report.reclaimed))


def _prune_containers(store: Store, report: PruneReport) -> None:
    from rootless.containers_cli import remove_container
    from rootless.housekeeping import prune_containers

    prune_containers(store, _running, lambda c: remove_container(store, c, False), report)


def container_prune(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.housekeeping import PruneReport

    if not ns.force and not confirm(f"{CONTAINER_WARNING}\nAre you sure you want to continue?"):
        return 0
    report = PruneReport()
    with ctx.store() as store:
        _prune_containers(store, report)
    _print_report(report, containers=True, images=False)
    return 0


def image_prune(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.housekeeping import PruneReport, prune_images

    warning = ALL_IMAGES_WARNING if ns.all else DANGLING_WARNING
    if not ns.force and not confirm(f"{warning}\nAre you sure you want to continue?"):
        return 0
    report = PruneReport()
    with ctx.store() as store:
        prune_images(store, all_unused=ns.all, report=report)
    _print_report(report, containers=False, images=True)
    return 0


def system_prune(ns: argparse.Namespace, ctx: Context) -> int:
    """Docker's `system prune`: stopped containers, then (--volumes) the anonymous
    volumes no container uses, then dangling (or, -a, unused) images. rsbox has no
    networks or build cache: nothing is said of them."""
    from rootless.housekeeping import PruneReport, prune_images, prune_volumes

    images = (
        "all images without at least one container associated to them"
        if ns.all
        else "all dangling images"
    )
    volumes = "  - all anonymous volumes not used by at least one container\n" if ns.volumes else ""
    question = (
        f"WARNING! This will remove:\n  - all stopped containers\n{volumes}  - {images}\n\n"
        "Are you sure you want to continue?"
    )
    if not ns.force and not confirm(question):
        return 0
    report = PruneReport()
    with ctx.store() as store:
        _prune_containers(store, report)
        if ns.volumes:
            prune_volumes(store, all_volumes=False, keep=lambda v: False, report=report)
        prune_images(store, all_unused=ns.all, report=report)
    _print_report(report, containers=True, images=True, volumes=True)
    return 0


def volume_prune(ns: argparse.Namespace, ctx: Context) -> int:
    """`volume prune [-a] [--filter label=...|label!=...] [-f]`."""
    from rootless.filters import VolumeFilter
    from rootless.housekeeping import PruneReport, prune_volumes

    filt = VolumeFilter.parse(ns.filter, ("label", "label!"))
    warning = ALL_VOLUMES_WARNING if ns.all else VOLUMES_WARNING
    if not ns.force and not confirm(f"{warning}\nAre you sure you want to continue?"):
        return 0
    report = PruneReport()
    with ctx.store() as store:
        prune_volumes(
            store,
            all_volumes=ns.all,
            keep=lambda v: not filt.matches(v.name, v.labels, in_use=False),
            report=report,
        )
    _print_report(report, containers=False, images=False, volumes=True)
    return 0


def system_df(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.format import OutputFormat
    from rootless.housekeeping import compute_disk_usage
    from rootless.listing import DISK_USAGE, disk_usage_rows

    fmt = OutputFormat.parse(ns.format, DISK_USAGE)
    with ctx.store() as store:
        usage = compute_disk_usage(store, _running)
        if ns.verbose:
            sys.stdout.write(_df_verbose(store, usage, ns.format))
            return 0
    sys.stdout.write(fmt.render(disk_usage_rows(usage), DISK_USAGE))
    return 0


def _df_verbose(store: Store, usage: object, format_text: str | None) -> str:
    """`system df -v`: Docker's four tables, or a template over {Images, Containers,
    Volumes, BuildCache} (lists of rows) when --format is given."""
    from rootless.format import OutputFormat, human_size
    from rootless.gotemplate import Template
    from rootless.housekeeping import DiskUsage
    from rootless.listing import (
        BUILD_CACHE,
        CONTAINER,
        DF_CONTAINERS,
        DF_IMAGES,
        IMAGE,
        VOLUME,
        container_row,
        container_views,
        image_rows,
        volume_row,
    )

    assert isinstance(usage, DiskUsage)
    table = format_text in (None, "table")
    images = [
        image_rows(
            store,
            item.image,
            item.image.names[:1],
            trunc=table,
            usage=(item.size, item.shared, item.containers),
        )[0]
        for item in usage.image_items
    ]
    views = {v.container.id: v for v in container_views(store)}
    containers = [
        container_row(views[item.container.id], trunc=table, size=item.size)
        for item in usage.container_items
        if item.container.id in views
    ]
    volumes = [
        volume_row(v.volume.name, str(v.volume.mountpoint), v.volume.labels, (v.links, v.size))
        for v in usage.volume_items
    ]
    if not table:
        template = Template.parse(str(format_text))
        doc = {"Images": images, "Containers": containers, "Volumes": volumes, "BuildCache": []}
        return template.execute(doc)
    parts = [
        "Images space usage:\n\n",
        OutputFormat.parse(DF_IMAGES, IMAGE).render(images, IMAGE),
        "\nContainers space usage:\n\n",
        OutputFormat.parse(DF_CONTAINERS, CONTAINER).render(containers, CONTAINER),
        "\nLocal Volumes space usage:\n\n",
        OutputFormat.parse(VOLUME.default, VOLUME).render(volumes, VOLUME),
        f"\nBuild cache usage: {human_size(usage.build_cache.size)}\n\n",
        OutputFormat.parse(BUILD_CACHE.default, BUILD_CACHE).render([], BUILD_CACHE),
    ]
    return "".join(parts)


def rename(ns: argparse.Namespace, ctx: Context) -> int:
    """`docker rename CONTAINER NEW_NAME`: silent on success."""
    from rootless.lifecycle import CONFIG_NAME, atomic_write_json, read_json

    with ctx.store() as store:
        c = store.rename_container(ns.container, ns.name.removeprefix("/"))
        # config.json keeps the name `run` gave for the record; the store's is the truth.
        config = read_json(c.dir / CONFIG_NAME)
        if config.get("name") not in (None, c.name):
            config["name"] = c.name
            with contextlib.suppress(OSError):
                atomic_write_json(c.dir / CONFIG_NAME, config)
    return 0


# --- stats ---------------------------------------------------------------------------------


def _targets(store: Store, refs: Sequence[str], all_: bool) -> list[tuple[str, Container]]:
    """(what the user typed, or the full id when they named none; the container)."""
    if refs:
        return [(ref, store.container(ref)) for ref in refs]
    return [(c.id, c) for c in store.containers() if all_ or _running(c)]


def _sample(c: Container) -> Sample:
    from rootless.cgroups import recorded
    from rootless.lifecycle import container_pid, monitor_pid, runtime_dir
    from rootless.stats import sample, with_cgroup

    mon = monitor_pid(c.id)
    pid1 = container_pid(mon) if mon else None
    s = sample(pid1, mon or None)
    cg = recorded(runtime_dir(c.id)) if s.running else None
    return with_cgroup(s, cg.container) if cg is not None else s


def _stats_rows(
    targets: Sequence[tuple[str, Container]],
    before: dict[str, Sample],
    after: dict[str, Sample],
    limit: int,
    trunc: bool,
) -> list[Row]:
    from rootless.format import Row, bytes_size, human_size
    from rootless.listing import STATS
    from rootless.stats import usage

    rows = []
    for ref, c in targets:
        u = usage(before[c.id], after[c.id], limit)
        rows.append(
            Row(
                STATS,
                {
                    "Container": ref,
                    "Name": c.name or "--",
                    "ID": c.id[:12] if trunc else c.id,
                    "CPUPerc": f"{u.cpu_percent:.2f}%",
                    "MemUsage": f"{bytes_size(u.memory)} / {bytes_size(u.memory_limit)}",
                    "MemPerc": f"{u.memory_percent:.2f}%",
                    "NetIO": f"{human_size(u.net_rx, 3)} / {human_size(u.net_tx, 3)}",
                    "BlockIO": f"{human_size(u.block_read, 3)} / {human_size(u.block_write, 3)}",
                    "PIDs": str(u.pids),
                },
            )
        )
    return rows


def stats(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.cgroups import recorded
    from rootless.format import OutputFormat
    from rootless.lifecycle import runtime_dir
    from rootless.listing import STATS
    from rootless.stats import CGROUP_NOTE, SOURCE_NOTE, host_memory

    fmt = OutputFormat.parse(ns.format, STATS)
    limit = host_memory()
    interval = 1.0
    with ctx.store() as store:
        targets = _targets(store, ns.containers, ns.all)
        own = any(recorded(runtime_dir(c.id)) for _, c in targets)
        print(CGROUP_NOTE if own else SOURCE_NOTE, file=sys.stderr, flush=True)
        before = {c.id: _sample(c) for _, c in targets}
        if ns.no_stream:
            if not targets:
                return 0
            time.sleep(interval)
            after = {c.id: _sample(c) for _, c in targets}
            rows = _stats_rows(targets, before, after, limit, not ns.no_trunc)
            sys.stdout.write(fmt.render(rows, STATS))
            return 0
        return _stream(store, ns, fmt, targets, before, limit, interval)


def _stream(
    store: Store,
    ns: argparse.Namespace,
    fmt: OutputFormat,
    targets: list[tuple[str, Container]],
    before: dict[str, Sample],
    limit: int,
    interval: float,
) -> int:
    """Docker's live view: a frame a second, drawn over the last one (cursor home, each
    line cleared to its end, the rest of the screen cleared). Without names, containers
    come and go as they start and stop."""
    from rootless.listing import STATS

    while True:
        time.sleep(interval)
        after = {c.id: _sample(c) for _, c in targets}
        rows = _stats_rows(targets, before, after, limit, not ns.no_trunc)
        frame = "".join(f"{line}\033[K\n" for line in fmt.render(rows, STATS).split("\n"))
        sys.stdout.write(f"\033[H{frame}\033[J")
        sys.stdout.flush()
        if not ns.containers:
            targets = _targets(store, (), ns.all)
            if not targets and not ns.all:
                sys.stdout.write("\033[H\033[J")
                return 0
        before = {c.id: after.get(c.id) or _sample(c) for _, c in targets}


# --- pause ---------------------------------------------------------------------------------


def _freeze(ns: argparse.Namespace, ctx: Context, value: str, verb: str) -> int:
    from rootless.lifecycle import container_pid, monitor_pid
    from rootless.stats import container_freezer

    code = 0
    with ctx.store() as store:
        for ref in ns.containers:
            try:
                c = store.container(ref)
                mon = monitor_pid(c.id)
                pid1 = container_pid(mon) if mon else None
                if pid1 is None:
                    raise ContainerError(f"container {c.name} is not running", hint="rsbox ps -a")
                freezer = container_freezer(c.id, pid1)
                if isinstance(freezer, str):
                    raise ContainerError(
                        f"cannot {verb} container {c.name}: {freezer}",
                        hint="rsbox puts no container in a cgroup of its own on this host "
                        "(no delegated cgroup v2, see `rsbox info`); "
                        f"`rsbox stop {c.name}` stops it instead",
                    )
                try:
                    freezer.write_text(value)
                except OSError as exc:
                    raise ContainerError(
                        f"cannot {verb} container {c.name}: {freezer}: {exc.strerror}"
                    ) from exc
            except ContainerError as exc:
                print(exc.line(), file=sys.stderr)
                code = 125
                continue
            print(ref, flush=True)
    return code


def pause(ns: argparse.Namespace, ctx: Context) -> int:
    return _freeze(ns, ctx, "1", "pause")


def unpause(ns: argparse.Namespace, ctx: Context) -> int:
    return _freeze(ns, ctx, "0", "unpause")
