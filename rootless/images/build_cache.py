"""The layer cache of `rsbox build`: which image a step made last time.

A key is a chain, as BuildKit and buildah key theirs: the key of the state before the
step (starting from the base image's id, ``scratch``, or the key of the stage it is
built FROM), the instruction after expansion, and what it reads (a COPY/ADD payload
digest, rootless.images.build_copy.digest; a RUN's environment). Metadata steps (ENV,
LABEL, ...) only extend the chain; a step that changes files, and a stage's final
state, are remembered: ``$RSBOX_ROOT/build-cache/<key>`` holds the id of the image the
step produced (an untagged image in the store, whose layers are that state's).

An entry is written only after its image is in the store, with the store's atomic
write: an interrupted or failed step leaves none. An entry whose image was removed
since (`rsbox rmi`, `rsbox image prune`) is a miss and is overwritten.
"""

from __future__ import annotations

import hashlib
import json
import re

from rootless.errors import ImageNotFound
from rootless.lifecycle import atomic_write_text
from rootless.store import Image, Store

_HEX64 = re.compile(r"[0-9a-f]{64}")


def chain(parent: str, *parts: str) -> str:
    """The key after a step: sha256 over the parent key and the step's parts."""
    return hashlib.sha256(json.dumps([parent, *parts]).encode()).hexdigest()


def lookup(store: Store, key: str) -> Image | None:
    path = store.root / "build-cache" / key
    try:
        image_id = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not _HEX64.fullmatch(image_id):
        return None
    try:
        return store.resolve_image(image_id)
    except ImageNotFound:
        return None


def remember(store: Store, key: str, image: Image) -> None:
    folder = store.root / "build-cache"
    folder.mkdir(exist_ok=True)
    atomic_write_text(folder / key, image.id + "\n", durable=False)
