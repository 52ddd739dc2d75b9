"""Store -> registry (and store -> OCI layout).

For each blob (layers bottom first, then the config): ``HEAD`` tells whether the registry
has it already; else, when another repository of the same registry is known to hold it
(the image was pulled from or pushed to it), a cross-repository mount
(``POST .../uploads/?mount=D&from=REPO``, 201 = done; 202 = the registry declined and
opened an upload session instead); else an upload: monolithic (one ``PUT ?digest=``) up
to `CHUNK` bytes, chunked (``PATCH`` with Content-Range, then ``PUT ?digest=``) beyond.
Then the manifest (OCI, rebuilt from the stored blobs, whose compression is read from
their first bytes) is ``PUT`` under the tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from rootless.extract import detect_compression
from rootless.store import Image, Store, split_name

from . import RegistryError
from .client import RegistryClient, TransportOptions
from .progress import Progress, Quiet
from .pull import first_error
from .reference import Reference

CHUNK = 8 * 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_LAYER_MT = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}


@dataclass(frozen=True)
class Blob:
    digest: str  # sha256:<hex>
    size: int
    media_type: str
    path: Path

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def image_blobs(store: Store, image: Image) -> tuple[list[Blob], Blob]:
    """The image's layer blobs (bottom first) and its config blob, as stored."""
    layers = []
    for info in store.image_layers(image.id):
        path = store.find_blob(info.blob)
        if not path.is_file():
            raise RegistryError(
                f"the blob of layer sha256:{info.diff_id[:12]} is missing from the store",
                hint="pull or import the image again",
            )
        with open(path, "rb") as f:
            kind = detect_compression(f.read(8))
        if kind not in _LAYER_MT:
            raise RegistryError(
                f"layer sha256:{info.diff_id[:12]} is {kind}-compressed, which registries do not take",
                hint="import the image from an uncompressed or gzip tarball",
            )
        layers.append(Blob(f"sha256:{info.blob}", path.stat().st_size, _LAYER_MT[kind], path))
    config_path = store.find_blob(image.id)
    if not config_path.is_file():
        raise RegistryError(
            f"the config blob of image {image.id[:12]} is missing from the store",
            hint="pull or import the image again",
        )
    config = Blob(f"sha256:{image.id}", config_path.stat().st_size, OCI_CONFIG, config_path)
    return layers, config


def manifest_for(layers: Sequence[Blob], config: Blob) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


class Pusher:
    def __init__(
        self, client: RegistryClient, ref: Reference, progress: Progress, mount_from: Sequence[str]
    ) -> None:
        self.client = client
        self.ref = ref
        self.progress = progress
        self.repo = ref.repository
        self.scope = f"repository:{self.repo}:pull,push"
        self.mount_from = [r for r in mount_from if r != self.repo]
        self.stats: dict[str, int] = {"exists": 0, "mounted": 0, "uploaded": 0}

    async def _exists(self, blob: Blob) -> bool:
        async with self.client.request(
            "HEAD", f"/v2/{self.repo}/blobs/{blob.digest}", scope=self.scope
        ) as resp:
            return resp.status_code == 200

    def _location(self, resp: httpx.Response, base: str) -> str:
        loc = resp.headers.get("location")
        if not loc:
            raise RegistryError(
                f"{self.ref}: the registry opened an upload without a Location",
                hint="the registry does not follow the distribution spec",
            )
        return str(httpx.URL(base).join(loc))

    async def _start_upload(self, blob: Blob) -> str | None:
        """Mount the blob from a sibling repository (None: done) or open an upload."""
        base = await self.client.base()
        path = f"/v2/{self.repo}/blobs/uploads/"
        for src in self.mount_from:
            scope = f"{self.scope} repository:{src}:pull"
            async with self.client.request(
                "POST", path, scope=scope, params={"mount": blob.digest, "from": src}
            ) as resp:
                if resp.status_code == 201:
                    return None
                if resp.status_code == 202:
                    return self._location(resp, base)
        async with self.client.request("POST", path, scope=self.scope) as resp:
            if resp.status_code != 202:
                raise self.client.error_for(resp, f"upload to {self.ref}", await resp.aread())
            return self._location(resp, base)

    async def push_blob(self, blob: Blob) -> None:
        key = blob.digest[7:19]
        if await self._exists(blob):
            self.stats["exists"] += 1
            self.progress.done(key, "Already exists")
            return
        location = await self._start_upload(blob)
        if location is None:
            self.stats["mounted"] += 1
            self.progress.done(key, "Mounted")
            return
        self.progress.start(key, blob.size)
        base = await self.client.base()
        with open(blob.path, "rb") as f:
            if blob.size > CHUNK:
                offset = 0
                while chunk := f.read(CHUNK):
                    end = offset + len(chunk) - 1
                    async with self.client.request(
                        "PATCH",
                        location,
                        scope=self.scope,
                        content=chunk,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{offset}-{end}",
                        },
                    ) as resp:
                        if resp.status_code != 202:
                            raise self.client.error_for(
                                resp, f"upload of {key}", await resp.aread()
                            )
                        location = self._location(resp, base)
                    offset = end + 1
                    self.progress.advance(key, len(chunk))
                body = b""
            else:
                body = f.read()
        url = httpx.URL(location).copy_merge_params({"digest": blob.digest})
        async with self.client.request(
            "PUT",
            str(url),
            scope=self.scope,
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            if resp.status_code != 201:
                raise self.client.error_for(resp, f"upload of {key}", await resp.aread())
        self.progress.advance(key, len(body))
        self.stats["uploaded"] += 1
        self.progress.done(key, "Pushed")

    async def put_manifest(self, reference: str, data: bytes, media_type: str) -> None:
        async with self.client.request(
            "PUT",
            f"/v2/{self.repo}/manifests/{reference}",
            scope=self.scope,
            content=data,
            headers={"Content-Type": media_type},
        ) as resp:
            if resp.status_code != 201:
                raise self.client.error_for(resp, f"manifest of {self.ref}", await resp.aread())

    async def push_blobs(self, blobs: Sequence[Blob]) -> None:
        limiter = trio.CapacityLimiter(4)

        async def one(blob: Blob) -> None:
            async with limiter:
                await self.push_blob(blob)

        try:
            async with trio.open_nursery() as nursery:
                for blob in dict.fromkeys(blobs):
                    nursery.start_soon(one, blob)
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    async def push(self, layers: Sequence[Blob], config: Blob) -> str:
        await self.push_blobs([*layers, config])
        manifest = manifest_for(layers, config)
        await self.put_manifest(self.ref.reference, manifest, OCI_MANIFEST)
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


async def push_image(
    store: Store,
    image: Image,
    ref: Reference,
    *,
    opts: TransportOptions,
    progress: Progress | None = None,
) -> tuple[str, dict[str, int]]:
    """Push ``image`` to ``ref``; returns the manifest digest and blob counts."""
    progress = progress or Quiet()
    layers, config = image_blobs(store, image)
    siblings = [
        split_name(n)[0].partition("/")[2]
        for n in image.names
        if split_name(n)[0].partition("/")[0] == ref.registry
    ]
    async with RegistryClient(ref.registry, ref.endpoint, opts) as client:
        pusher = Pusher(client, ref, progress, siblings)
        try:
            digest = await pusher.push(layers, config)
        finally:
            progress.close()
        return digest, pusher.stats


def push(store: Store, image: Image, ref: Reference, **kw: Any) -> tuple[str, dict[str, int]]:
    return trio.run(lambda: push_image(store, image, ref, **kw))


def check_login(registry: str, opts: TransportOptions) -> None:
    """Raise AuthError unless the registry accepts ``opts.credentials``."""
    from .reference import parse_reference

    endpoint = parse_reference(f"{registry}/x").endpoint

    async def check() -> None:
        async with (
            RegistryClient(registry, endpoint, opts) as client,
            client.request("GET", "/v2/", scope="") as resp,
        ):
            if resp.status_code != 200:
                raise client.error_for(resp, "login", await resp.aread())

    trio.run(check)


def save_oci_layout(store: Store, image: Image, dest: Path, tag: str) -> str:
    """Write (or add to) an OCI image layout at ``dest`` under ``tag``; returns the
    manifest digest. Blobs are hard-linked from the store where possible."""
    layers, config = image_blobs(store, image)
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for blob in [*layers, config]:
        target = blobs / blob.digest[7:]
        if not target.exists():
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                os.link(blob.path, tmp)
            except OSError:
                shutil.copyfile(blob.path, tmp)
            os.replace(tmp, target)
    manifest = manifest_for(layers, config)
    mdigest = hashlib.sha256(manifest).hexdigest()
    (blobs / mdigest).write_bytes(manifest)
    index_path = dest / "index.json"
    manifests: list[Any] = []
    if index_path.exists():
        manifests = [
            m
            for m in json.loads(index_path.read_text()).get("manifests", [])
            if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") != tag
        ]
    manifests.append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": f"sha256:{mdigest}",
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }
    tmp = dest / ".index.json.tmp"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, index_path)
    return f"sha256:{mdigest}"


async def push_layout(
    layout_dir: Path,
    tag: str | None,
    ref: Reference,
    *,
    opts: TransportOptions,
    progress: Progress | None = None,
) -> str:
    """Push an image of an OCI layout as it is, a multi-platform index included: every
    blob, every manifest by digest, then the top manifest (or index) under the tag."""
    from rootless.oci_layout import INDEX_TYPES, _Layout, _select_by_tag

    layout = _Layout(layout_dir)
    top = _select_by_tag(layout, layout.index()["manifests"], tag)
    blobs: list[Blob] = []
    manifests: list[tuple[str, bytes, str]] = []  # (digest, bytes, media type), leaves first

    def walk(desc: dict[str, Any], depth: int) -> None:
        if depth > 4:
            raise RegistryError(f"{layout_dir}: indexes nested too deeply")
        data = layout.read_verified(desc)
        doc = json.loads(data)
        mt = str(desc.get("mediaType") or doc.get("mediaType") or OCI_MANIFEST)
        if mt in INDEX_TYPES or "manifests" in doc:
            for child in doc.get("manifests") or []:
                walk(child, depth + 1)
        else:
            for d in [doc["config"], *doc.get("layers", [])]:
                path, _ = layout.blob_path(d)
                blobs.append(Blob(str(d["digest"]), int(d["size"]), str(d.get("mediaType")), path))
        manifests.append((str(desc["digest"]), data, mt))

    walk(top, 0)
    progress = progress or Quiet()
    async with RegistryClient(ref.registry, ref.endpoint, opts) as client:
        pusher = Pusher(client, ref, progress, [])
        try:
            await pusher.push_blobs(blobs)
            for digest, data, mt in manifests[:-1]:
                await pusher.put_manifest(digest, data, mt)
            digest, data, mt = manifests[-1]
            await pusher.put_manifest(ref.reference, data, mt)
        finally:
            progress.close()
    return digest
