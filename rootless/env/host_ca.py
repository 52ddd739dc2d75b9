"""`host_ca` (default on): the host's CA certificates, in place of the image's, in the
project's running container.

Campus and corporate networks put a TLS-inspecting proxy between a machine and PyPI or
npm's registry; the host trusts the proxy's CA, an image's own bundle does not (this is
the case on the machines rsbox is built on). The build's RUN steps get the host's bundle
from the builder (`rsbox build --host-ca`: a file of its own plus SSL_CERT_FILE,
PIP_CERT, NODE_EXTRA_CA_CERTS... pointing at it, see rootless.images.build). The running
container gets it bound read-only over the image's own bundle, at each of the places
distributions keep one that exists in the image, so every tool that reads the system
bundle (OpenSSL, pip, curl, git, Debian's node) trusts what the host trusts, and no
variable of the user's is overridden. An image without any of these files gets nothing
(the environment then trusts what the image trusts, i.e. nothing: add ca-certificates to
[build] apt). Which of the paths the image has is looked up once, when `env build` makes
the image, and kept in rsbox.lock (`ca_bundles`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rootless.errors import ConfigError
from rootless.images.build import HOST_CA_SOURCE
from rootless.store import Image, Store, rmtree_forcefully

#: Where distributions keep the bundle OpenSSL reads: Debian/Ubuntu (also Alpine's
#: ca-certificates), Fedora/RHEL, Alpine's /etc/ssl/cert.pem.
BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def image_bundles(store: Store, image: Image) -> tuple[str, ...]:
    """The BUNDLES paths that exist in `image` (a file, or a symlink the container's
    mount resolves inside its own root)."""
    from fs.changes import Stack

    empty = store.mkdtemp("read-")
    try:
        stack = Stack.of(image.layers, empty)
        return tuple(p for p in BUNDLES if (found := stack.lookup(p[1:])) and not found.dirs)
    finally:
        rmtree_forcefully(empty)


def bind_args(path: Path, bundles: Sequence[str]) -> list[str]:
    """`rsbox run` volume arguments binding the host's bundle over each of `bundles`."""
    if not bundles:
        return []
    if not HOST_CA_SOURCE.is_file():
        raise ConfigError(
            f"{path}: host_ca: the host has no CA bundle at {HOST_CA_SOURCE}",
            hint="install ca-certificates on the host, or set host_ca = false",
        )
    source = os.path.realpath(HOST_CA_SOURCE)
    args: list[str] = []
    for target in bundles:
        args += ["-v", f"{source}:{target}:ro"]
    return args
