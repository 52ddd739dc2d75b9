"""The registry side of rsbox: OCI distribution spec v2 client, pull, push, credentials.

    reference.py  image references: ``alpine`` -> docker.io/library/alpine:latest, digests
    conf.py       containers-registries.conf(5): short names, aliases, rewrites, mirrors, blocks
    auth.py       credentials (rsbox's own file, Docker's and Podman's) and login/logout
    client.py     the HTTP client on trio (httpx): auth challenges, TLS, retries
    pull.py       registry -> store: manifests, platform selection, streamed layers
    push.py       store -> registry: blob checks, uploads, cross-repo mounts, manifest put

Errors are `RegistryError` (a subclass of `ImageError`, so exit code 125) with a hint.
"""

from __future__ import annotations

from rootless.errors import ImageError


class RegistryError(ImageError):
    """A registry refused, failed or sent something rsbox will not use."""


class AuthError(RegistryError):
    """Missing or wrong credentials."""
