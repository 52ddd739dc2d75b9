"""`ps --filter` and `images --filter`: Docker's keys, parsed once into typed values.

Docker's rules (docker/cli docs container_ls.md and image_ls.md; the daemon's list code
for the details): `--filter KEY=VALUE`, repeatable; values of one key are OR-ed, different
keys AND-ed. For containers: `status` (created, restarting, running, removing, paused,
exited, dead; asking for a status lists stopped containers without `-a`), `name` (a
regular expression searched in the name), `id` (a prefix), `label` (`KEY` or
`KEY=VALUE`), `ancestor` (an image by name, id or id prefix, or any image built on top of
it: here, an image whose layers start with its layers), `exited` (an exit code). For
images: `dangling` (true: untagged; false: tagged), `label`, `reference` (a shell
pattern, `*` not crossing `/`, matched against the name with and without its tag, and
without `localhost/` or `docker.io/library/`).

A container's labels are its image's (rsbox's `run` has no --label).

For volumes (docs volume_ls.md, volume_prune.md): `dangling` (true: no container, running
or not, uses it), `driver` (only `local` exists), `label`, `label!` (the volume has not that
label, or not that value), `name` (a part of the name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rootless.errors import UsageError
from rootless.pathmatch import compile_pattern

STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
CONTAINER_KEYS = ("ancestor", "exited", "id", "label", "name", "status")
IMAGE_KEYS = ("dangling", "label", "reference")
VOLUME_KEYS = ("dangling", "driver", "label", "label!", "name")


def _boolean(key: str, values: Sequence[str]) -> bool | None:
    found = {v.lower() for v in values}
    if not found:
        return None
    if not found <= {"true", "false", "1", "0"} or len(found) > 1:
        raise UsageError(
            f"invalid filter '{key}={','.join(sorted(found))}'",
            hint=f"use {key}=true or {key}=false",
        )
    return found.pop() in ("true", "1")


def _split(items: Sequence[str], known: Sequence[str], what: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise UsageError(
                f"bad format of filter {item!r} (expected name=value)",
                hint=f"e.g. --filter {known[0]}=VALUE",
            )
        if key not in known:
            raise UsageError(
                f"invalid filter {key!r} for {what}", hint=f"{what} take: {', '.join(known)}"
            )
        out.setdefault(key, []).append(value)
    return out


def _labels(values: Sequence[str]) -> tuple[tuple[str, str | None], ...]:
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        out.append((key, val if sep else None))
    return tuple(out)


def labels_match(wanted: Sequence[tuple[str, str | None]], labels: Mapping[str, str]) -> bool:
    """Docker's MatchKVList: every wanted label present (with that value, if given)."""
    return all(k in labels and (v is None or labels[k] == v) for k, v in wanted)


@dataclass(frozen=True)
class ContainerFilter:
    status: frozenset[str] = frozenset()
    names: tuple[re.Pattern[str], ...] = ()
    ids: tuple[str, ...] = ()
    labels: tuple[tuple[str, str | None], ...] = ()
    ancestors: tuple[str, ...] = ()  # as given; resolved against the store by the caller
    exited: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, items: Sequence[str]) -> ContainerFilter:
        given = _split(items, CONTAINER_KEYS, "containers")
        for s in given.get("status", []):
            if s not in STATUSES:
                raise UsageError(
                    f"invalid filter 'status={s}'", hint=f"a status is one of {', '.join(STATUSES)}"
                )
        codes = []
        for code in given.get("exited", []):
            if not code.lstrip("-").isdigit():
                raise UsageError(f"invalid filter 'exited={code}'", hint="give an exit code")
            codes.append(int(code))
        names = []
        for pattern in given.get("name", []):
            try:
                names.append(re.compile(pattern))
            except re.error as exc:
                raise UsageError(
                    f"invalid filter 'name={pattern}': {exc}",
                    hint="name takes a regular expression",
                ) from None
        return cls(
            status=frozenset(given.get("status", [])),
            names=tuple(names),
            ids=tuple(given.get("id", [])),
            labels=_labels(given.get("label", [])),
            ancestors=tuple(given.get("ancestor", [])),
            exited=frozenset(codes),
        )

    @property
    def shows_stopped(self) -> bool:
        """A status filter lists stopped containers without `-a` (as the daemon does)."""
        return bool(self.status)

    def matches(
        self,
        *,
        cid: str,
        name: str,
        status: str,
        exit_code: int | None,
        labels: Mapping[str, str],
        image_layers: Sequence[str],
        ancestors: Sequence[Sequence[str]],
    ) -> bool:
        """`ancestors`: the layer lists of the `ancestor` images that exist (an image
        not in the store matches nothing, as in Docker)."""
        if self.status and status not in self.status:
            return False
        if self.names and not any(p.search(name) or p.search("/" + name) for p in self.names):
            return False
        if self.ids and not any(cid.startswith(i) for i in self.ids):
            return False
        if self.labels and not labels_match(self.labels, labels):
            return False
        if self.exited and (status != "exited" or exit_code not in self.exited):
            return False
        if self.ancestors:
            return any(list(image_layers[: len(a)]) == list(a) for a in ancestors)
        return True


def _pattern(glob: str) -> re.Pattern[str]:
    """Go's path.Match, as Docker matches a reference: `*` and `?` never match `/`."""
    try:
        return compile_pattern(glob)
    except ValueError as exc:
        raise UsageError(
            f"invalid reference pattern {glob!r}: {exc}",
            hint="escape a literal [ ] - or \\ with \\",
        ) from None


def short_forms(name: str) -> list[str]:
    """What a reference pattern is matched against for the stored name
    `localhost/busybox:latest`: it, `localhost/busybox`, `busybox:latest`, `busybox`."""
    repo, _, tag = name.rpartition(":")
    forms = [name, repo]
    for prefix in ("localhost/", "docker.io/library/", "docker.io/"):
        if repo.startswith(prefix):
            forms += [f"{repo[len(prefix) :]}:{tag}", repo[len(prefix) :]]
            break
    return forms


@dataclass(frozen=True)
class ImageFilter:
    dangling: bool | None = None
    labels: tuple[tuple[str, str | None], ...] = ()
    references: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def parse(cls, items: Sequence[str]) -> ImageFilter:
        given = _split(items, IMAGE_KEYS, "images")
        dangling = None
        values = {v.lower() for v in given.get("dangling", [])}
        if values:
            if not values <= {"true", "false", "1", "0"} or len(values) > 1:
                raise UsageError(
                    f"invalid filter 'dangling={','.join(sorted(values))}'",
                    hint="use dangling=true or dangling=false",
                )
            dangling = values.pop() in ("true", "1")
        return cls(
            dangling=dangling,
            labels=_labels(given.get("label", [])),
            references=tuple(_pattern(p) for p in given.get("reference", [])),
        )

    def matches(self, names: Sequence[str], labels: Mapping[str, str]) -> bool:
        """Dangling: no name (what `image prune` removes)."""
        if self.dangling is not None and self.dangling != (not names):
            return False
        if self.labels and not labels_match(self.labels, labels):
            return False
        return not self.references or bool(self.names_shown(names))

    def names_shown(self, names: Sequence[str]) -> list[str]:
        """With `reference`, an image shows only its names that match (as Docker)."""
        if not self.references:
            return list(names)
        return [
            n for n in names if any(p.fullmatch(f) for p in self.references for f in short_forms(n))
        ]


@dataclass(frozen=True)
class VolumeFilter:
    dangling: bool | None = None
    drivers: tuple[str, ...] = ()
    labels: tuple[tuple[str, str | None], ...] = ()
    not_labels: tuple[tuple[str, str | None], ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, items: Sequence[str], keys: Sequence[str] = VOLUME_KEYS) -> VolumeFilter:
        given = _split(items, keys, "volumes")
        return cls(
            dangling=_boolean("dangling", given.get("dangling", [])),
            drivers=tuple(given.get("driver", [])),
            labels=_labels(given.get("label", [])),
            not_labels=_labels(given.get("label!", [])),
            names=tuple(given.get("name", [])),
        )

    def matches(self, name: str, labels: Mapping[str, str], in_use: bool) -> bool:
        if self.dangling is not None and self.dangling == in_use:
            return False
        if self.drivers and "local" not in self.drivers:
            return False
        if self.labels and not labels_match(self.labels, labels):
            return False
        if any(labels_match([kv], labels) for kv in self.not_labels):
            return False
        return not self.names or any(n in name for n in self.names)
