"""Image references as Docker and Podman read them.

``alpine`` -> ``docker.io/library/alpine:latest``; ``ghcr.io/o/r:1``;
``localhost:5000/x@sha256:<hex>``. The first component is a registry when it contains a
``.`` or a ``:`` or is ``localhost`` (distribution/reference's rule). Docker Hub's API
lives at ``registry-1.docker.io``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from rootless.errors import UsageError

DOCKER_HUB = "docker.io"
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::\d+)?|\[[0-9a-fA-F:]+\](?::\d+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    registry: str  # as written by the user: docker.io, localhost:5000
    repository: str  # library/alpine
    tag: str | None
    digest: str | None  # sha256:<hex>

    @property
    def endpoint(self) -> str:
        """host[:port] of the API."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """The local name: registry/repository:tag (tag ``latest`` for digest-only refs
        is not invented: those get the digest's first 12 hex digits as a tag-less name)."""
        return f"{self.repo}:{self.tag or 'latest'}"

    @property
    def repo(self) -> str:
        """registry/repository, as written."""
        return f"{self.registry}/{self.repository}"

    def at(self, digest: str) -> str:
        """registry/repository@DIGEST: this repository's image with that digest."""
        return f"{self.repo}@{digest}"

    @property
    def digest_ref(self) -> str | None:
        """registry/repository@sha256:... for a reference with a digest, else None."""
        return self.at(self.digest) if self.digest else None

    def __str__(self) -> str:
        s = self.repo
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def registry_part(name: str) -> str | None:
    """The registry a name starts with, or None for a short name (``alpine``,
    ``library/alpine``): the first component is a registry when it contains a ``.`` or a
    ``:`` or is ``localhost`` and something follows it."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def valid_registry(host: str) -> bool:
    """host[:port] (or [v6]:port), as the grammar allows it in a reference."""
    return bool(_DOMAIN.fullmatch(host))


def parse_reference(ref: str) -> Reference:
    """Parse a reference; raises UsageError with a hint when it is not one."""
    hint = "an image reference looks like [REGISTRY/]NAME[:TAG][@sha256:DIGEST]"
    name, at, digest = ref.partition("@")
    if at and not DIGEST.fullmatch(digest):
        raise UsageError(f"invalid digest in {ref!r}", hint="digests are sha256:<64 hex digits>")
    registry = registry_part(name)
    path = name[len(registry) + 1 :] if registry is not None else name
    if registry is None:
        registry = DOCKER_HUB
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise UsageError(f"invalid tag {tag!r} in {ref!r}", hint=hint)
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _DOMAIN.fullmatch(registry):
        raise UsageError(f"invalid registry {registry!r} in {ref!r}", hint=hint)
    if not path or not all(_PATH_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise UsageError(f"invalid image reference {ref!r}", hint=hint)
    if tag is None and not at:
        tag = "latest"
    return Reference(registry, path, tag, digest if at else None)


def is_loopback(registry: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1 (with or without a port): plain HTTP is allowed."""
    host = registry
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
