"""Registry -> store.

1. The manifest (Accept: OCI and Docker schema 2, manifests and indexes), at most 4 MiB,
   its digest checked when the reference names one. An index is resolved to one platform
   (the host's unless ``--platform``) and that manifest fetched by digest, verified.
2. The config blob (digest verified) gives the diff_ids.
3. Layers, in parallel (bounded by `MAX_PARALLEL`), each under the store's per-blob lock
   (two commands pulling one image download each layer once; the second finds it done).
   A layer whose blob or diff_id is already stored is not fetched again.
   Each blob is streamed once: the HTTP body goes through a pipe to a worker thread that
   hashes it, writes it to tmp/, decompresses (gzip, zstd, none by magic bytes) and
   extracts it (rootless.extract); the blob digest and the diff_id are both verified
   before anything is renamed into place. The blob and the extracted files are charged
   to one `SpaceGuard` of the store (refused before the store's filesystem drops below
   its reserve) and written sparse. A failure leaves only tmp/ entries, removed at once.
4. The image row and its name, in one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform as _platform
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple, cast

import httpx
import trio

from rootless.errors import ImageError, LayerError, RsboxError
from rootless.extract import (
    DEFAULT_MAX_BYTES,
    ExtractResult,
    SpaceGuard,
    extract_stream,
    write_sparse,
)
from rootless.oci_layout import INDEX_TYPES, LAYER_TYPES, MANIFEST_TYPES, host_arch
from rootless.store import Image, Store, rmtree_forcefully

from . import RegistryError
from .client import Interrupted, RegistryClient, TransportOptions
from .conf import Candidate, Source
from .progress import Progress, Quiet
from .reference import DIGEST, Reference

MAX_MANIFEST = 4 * 1024 * 1024
MAX_CONFIG = 8 * 1024 * 1024
MAX_PARALLEL = 4
ACCEPT = ", ".join(sorted(MANIFEST_TYPES | INDEX_TYPES))
_CHUNK = 256 * 1024


RESTARTS = 2  # extra attempts for a download that broke off
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise RegistryError(
                f"invalid platform {text!r}",
                hint="use --platform OS/ARCH[/VARIANT], e.g. linux/arm64",
            )
        return cls(*parts)

    @classmethod
    def host(cls) -> Platform:
        arch = host_arch()
        variant = ""
        if arch == "arm":
            variant = "v7" if _platform.machine() == "armv7l" else "v6"
        return cls("linux", arch, variant)

    def matches(self, p: dict[str, Any]) -> bool:
        if p.get("os") != self.os or p.get("architecture") != self.architecture:
            return False
        have = str(p.get("variant") or "")
        if self.architecture == "arm64":  # v8 is arm64's only variant; often left out
            return (have or "v8") == (self.variant or "v8")
        return not self.variant or have == self.variant


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise RegistryError(
            f"{what} is not valid JSON: {exc}", hint="the registry sent a malformed document"
        ) from exc
    if not isinstance(doc, dict):
        raise RegistryError(
            f"{what} is not a JSON object", hint="the registry sent a malformed document"
        )
    return doc


def _hex(digest: object, what: str) -> str:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise RegistryError(
            f"{what}: unsupported or malformed digest {digest!r}",
            hint="rsbox verifies sha256 digests only",
        )
    return digest.removeprefix("sha256:")


class Puller:
    def __init__(
        self,
        store: Store,
        client: RegistryClient,
        ref: Reference,
        platform: Platform,
        progress: Progress,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.store = store
        self.client = client
        self.ref = ref
        self.platform = platform
        self.progress = progress
        self.max_bytes = max_bytes
        self.scope = f"repository:{ref.repository}:pull"
        self.fetched: list[str] = []  # blob digests actually downloaded (for tests/reports)
        self.manifest_digest = ""  # sha256:... of the manifest pulled, once pull() has it

    # -- manifests ----------------------------------------------------------------------

    async def _again_if_cut(self, fetch: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """A download whose connection broke off mid-body starts again from nothing (no
        part of the broken attempt is kept), a few times, before giving up: layers,
        manifests and configs alike."""
        for attempt in range(RESTARTS):
            try:
                return await fetch(*args)
            except Interrupted:
                await trio.sleep(self.client.opts.backoff * 2**attempt)
        return await fetch(*args)

    async def _get_manifest(self, reference: str) -> tuple[bytes, str]:
        return await self._again_if_cut(self._get_manifest_once, reference)

    async def _get_manifest_once(self, reference: str) -> tuple[bytes, str]:
        path = f"/v2/{self.ref.repository}/manifests/{reference}"
        what = f"manifest {self.ref.repository}:{reference}"
        async with self.client.request(
            "GET", path, scope=self.scope, headers={"Accept": ACCEPT}
        ) as resp:
            if resp.status_code != 200:
                body = await self.client.read_limited(resp, MAX_MANIFEST, what)
                raise self.client.error_for(resp, f"{self.ref}", body)
            data = await self.client.read_limited(resp, MAX_MANIFEST, what)
            media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        if DIGEST.fullmatch(reference) and hashlib.sha256(data).hexdigest() != reference[7:]:
            raise RegistryError(
                f"{what} does not match its digest",
                hint="the registry or a proxy altered it; do not use this image",
            )
        return data, media_type

    async def resolve(self) -> tuple[dict[str, Any], str]:
        """The image manifest for our platform and its digest."""
        data, media_type = await self._get_manifest(self.ref.reference)
        doc = _json(data, f"manifest of {self.ref}")
        mt = str(doc.get("mediaType") or media_type)
        if mt in INDEX_TYPES or (mt not in MANIFEST_TYPES and "manifests" in doc):
            entries = [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
            chosen = [d for d in entries if self.platform.matches(d.get("platform") or {})]
            if not chosen:
                have = ", ".join(
                    str(
                        Platform(
                            str(p.get("os")),
                            str(p.get("architecture")),
                            str(p.get("variant") or ""),
                        )
                    )
                    for d in entries
                    if isinstance(p := d.get("platform"), dict)
                )
                raise RegistryError(
                    f"{self.ref} has no image for {self.platform} (it has: {have or 'none'})",
                    hint="choose one of its platforms with --platform OS/ARCH[/VARIANT]",
                )
            digest = str(chosen[0].get("digest"))
            _hex(digest, f"index of {self.ref}")
            data, media_type = await self._get_manifest(digest)
            doc = _json(data, f"manifest {digest}")
            mt = str(doc.get("mediaType") or media_type)
        if mt not in MANIFEST_TYPES:
            if doc.get("schemaVersion") == 1 or "schema1" in mt:
                raise RegistryError(
                    f"{self.ref} is a Docker schema 1 image",
                    hint="schema 1 is deprecated; push the image again with a current tool",
                )
            if not (mt == "" and "layers" in doc and "config" in doc):
                raise RegistryError(
                    f"{self.ref}: unsupported manifest media type {mt!r}",
                    hint="rsbox reads OCI and Docker schema 2 images",
                )
        return doc, "sha256:" + hashlib.sha256(data).hexdigest()

    async def _get_small_blob(self, digest: str, limit: int, what: str) -> bytes:
        return await self._again_if_cut(self._get_small_blob_once, digest, limit, what)

    async def _get_small_blob_once(self, digest: str, limit: int, what: str) -> bytes:
        hexd = _hex(digest, what)
        async with self.client.request(
            "GET", f"/v2/{self.ref.repository}/blobs/{digest}", scope=self.scope
        ) as resp:
            if resp.status_code != 200:
                raise self.client.error_for(
                    resp, what, await self.client.read_limited(resp, 65536, what)
                )
            data = await self.client.read_limited(resp, limit, what)
        if hashlib.sha256(data).hexdigest() != hexd:
            raise RegistryError(
                f"{what} does not match its digest {digest}",
                hint="the registry sent damaged data; try again",
            )
        return data

    # -- the pull -----------------------------------------------------------------------

    async def pull(self, names: list[str]) -> Image:
        manifest, manifest_digest = await self.resolve()
        self.manifest_digest = manifest_digest
        config_desc = manifest.get("config")
        layers = manifest.get("layers")
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            raise RegistryError(
                f"manifest of {self.ref} lacks config or layers",
                hint="the registry sent a malformed manifest",
            )
        config = await self._get_small_blob(
            str(config_desc.get("digest")), MAX_CONFIG, f"config of {self.ref}"
        )
        doc = _json(config, f"config of {self.ref}")
        try:
            diff_ids = [_hex(d, "config diff_id") for d in doc["rootfs"]["diff_ids"]]
        except (KeyError, TypeError) as exc:
            raise RegistryError(
                f"config of {self.ref} has no rootfs.diff_ids", hint="the image is malformed"
            ) from exc
        if len(diff_ids) != len(layers):
            raise RegistryError(
                f"{self.ref}: {len(layers)} layers but {len(diff_ids)} diff_ids in its config",
                hint="the image is malformed",
            )
        for desc in layers:
            if not isinstance(desc, dict):
                raise RegistryError(
                    f"{self.ref}: malformed layer descriptor", hint="the image is malformed"
                )
            mt = str(desc.get("mediaType") or "")
            if mt not in LAYER_TYPES:
                raise RegistryError(
                    f"{self.ref}: unsupported layer media type {mt!r}",
                    hint="rsbox extracts tar layers (uncompressed, gzip, zstd)",
                )
            _hex(desc.get("digest"), f"layer of {self.ref}")
        limiter = trio.CapacityLimiter(MAX_PARALLEL)
        try:
            async with trio.open_nursery() as nursery:
                for desc, diff_id in zip(layers, diff_ids, strict=True):
                    nursery.start_soon(self._layer, desc, diff_id, limiter)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        image = self.store.add_image(
            config, diff_ids, names, manifest_digest.removeprefix("sha256:")
        )
        return image

    async def _layer(
        self, desc: dict[str, Any], diff_id: str, limiter: trio.CapacityLimiter
    ) -> None:
        digest = str(desc["digest"])
        hexd = digest[7:]
        short = hexd[:12]
        if self._have(hexd, diff_id):
            self.progress.done(short, "Already exists")
            return
        async with limiter:
            lock = self.store.blob_lock(hexd)
            await trio.to_thread.run_sync(lock.__enter__, abandon_on_cancel=True)
            try:
                if self._have(hexd, diff_id):  # another command fetched it meanwhile
                    self.progress.done(short, "Already exists")
                    return
                size = desc.get("size")
                self.progress.start(short, size if isinstance(size, int) else 0)
                await self._again_if_cut(
                    self._fetch_layer, hexd, diff_id, size if isinstance(size, int) else None
                )
                self.fetched.append(digest)
                self.progress.done(short, "Pulled")
            finally:
                lock.__exit__(None, None, None)

    def _have(self, blob_hex: str, diff_id: str) -> bool:
        info = self.store.layer_for_blob(blob_hex)
        if info is not None:
            if info.diff_id != diff_id:
                raise LayerError(
                    f"layer sha256:{blob_hex} uncompresses to sha256:{info.diff_id}, "
                    f"the image config says sha256:{diff_id}",
                    hint="the image is damaged or was tampered with",
                )
            return True
        return self.store.layer_dir(diff_id).is_dir()

    async def _fetch_layer(self, hexd: str, diff_id: str, size: int | None) -> None:
        work, inuse = self.store.locked_tmpdir("pull-")
        try:
            layer = work / "layer"
            (layer / "fs").mkdir(parents=True, mode=0o755)
            os.chmod(layer, 0o700)
            os.chmod(layer / "fs", 0o755)
            blob_tmp = work / "blob"
            blob_sha, count, result = await self._stream(hexd, layer / "fs", blob_tmp)
            if blob_sha != hexd or (size is not None and count != size):
                raise RegistryError(
                    f"layer sha256:{hexd[:12]}: received {count} bytes with digest "
                    f"sha256:{blob_sha[:12]}, expected {size} bytes with sha256:{hexd[:12]}",
                    hint="the registry sent damaged data; nothing was stored, pull again",
                )
            if result.diff_id != diff_id:
                raise LayerError(
                    f"layer sha256:{hexd[:12]} uncompresses to sha256:{result.diff_id[:12]}, "
                    f"the image config says sha256:{diff_id[:12]}",
                    hint="the image is damaged or was tampered with; nothing was stored",
                )
            result.meta.save(layer / "meta")
            await trio.to_thread.run_sync(os.sync)  # the files on disk before their names
            self.store.commit_layer(layer, blob_tmp, hexd, diff_id, result.size)
        finally:
            with trio.CancelScope(shield=True):  # also when a sibling layer failed
                await trio.to_thread.run_sync(rmtree_forcefully, work)
            os.close(inuse)

    async def _stream(
        self, hexd: str, fs_dir: Path, blob_tmp: Path
    ) -> tuple[str, int, ExtractResult]:
        """Download the blob into a pipe; a worker thread tees it to ``blob_tmp``, hashes
        and extracts it. Returns (blob sha256, bytes, extraction result)."""
        guard = self.store.space_guard(f"layer sha256:{hexd[:12]}")
        rfd, wfd = os.pipe()
        tee_box: list[_Tee] = []
        outcome: list[ExtractResult | BaseException] = []
        max_bytes = self.max_bytes

        def extract() -> None:
            try:
                with open(rfd, "rb", buffering=0) as pipe:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                    out = os.open(blob_tmp, flags, 0o644)
                    try:
                        tee = _Tee(pipe, out, guard)
                        tee_box.append(tee)
                        res = extract_stream(
                            io.BufferedReader(tee, _CHUNK), fs_dir, max_bytes=max_bytes, guard=guard
                        )
                        tee.drain()
                        os.ftruncate(out, tee.count)
                    finally:
                        os.close(out)
                outcome.append(res)
            except BaseException as exc:  # reported by the trio side
                outcome.append(exc)

        download_error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, extract)
            stream = trio.lowlevel.FdStream(wfd)
            try:
                async with self.client.request(
                    "GET", f"/v2/{self.ref.repository}/blobs/sha256:{hexd}", scope=self.scope
                ) as resp:
                    if resp.status_code != 200:
                        body = await self.client.read_limited(resp, 65536, "blob")
                        raise self.client.error_for(resp, f"layer sha256:{hexd[:12]}", body)
                    # aclosing: the extractor may stop reading mid-body (a refused layer)
                    raw = cast("AsyncGenerator[bytes, None]", resp.aiter_raw(_CHUNK))
                    async with contextlib.aclosing(raw) as body_chunks:
                        async for chunk in body_chunks:
                            self.progress.advance(hexd[:12], len(chunk))
                            await stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the extractor stopped reading: its error is the one to report
            except httpx.TransportError as exc:
                download_error = Interrupted(
                    f"layer sha256:{hexd[:12]}: the connection broke during the download ({exc or type(exc).__name__})",
                    hint="nothing was stored; pull again",
                )
            except BaseException as exc:
                download_error = exc
            finally:
                await stream.aclose()
        if download_error is not None:
            raise download_error
        res = outcome[0]
        if isinstance(res, BaseException):
            raise res
        tee = tee_box[0]
        return tee.sha.hexdigest(), tee.count, res


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to show for a group from parallel transfers: the first rsbox error
    (the others are usually consequences: cancelled siblings), else the first one."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for e in exc.exceptions:
                walk(e)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, RsboxError):
            return exc
    return leaves[0]


class _Tee(io.RawIOBase):
    """Reads from the pipe; every byte is hashed and written (sparse, charged to
    ``guard``) to the new blob file ``out``, which the caller truncates to `count`."""

    def __init__(self, inner: io.RawIOBase | io.FileIO, out: int, guard: SpaceGuard) -> None:
        self._inner = inner
        self._out = out
        self._guard = guard
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self._inner.readinto(buf) or 0
        if n:
            data = bytes(memoryview(buf)[:n])
            self.sha.update(data)
            write_sparse(self._out, self.count, data, self._guard)
            self.count += n
        return n

    def drain(self) -> None:
        buf = bytearray(_CHUNK)
        while self.readinto(buf):
            pass


async def pull_image(
    store: Store,
    ref: Reference,
    *,
    opts: TransportOptions,
    platform: Platform | None = None,
    progress: Progress | None = None,
    names: list[str] | None = None,
) -> tuple[Image, list[str]]:
    """Pull ``ref`` into ``store``; returns the image and the blob digests downloaded."""
    progress = progress or Quiet()
    try:
        return await _pull_from(store, ref, ref, opts, platform, progress, names)
    finally:
        progress.close()


async def _pull_from(
    store: Store,
    source: Reference,
    name: Reference,
    opts: TransportOptions,
    platform: Platform | None,
    progress: Progress,
    names: list[str] | None = None,
) -> tuple[Image, list[str]]:
    """Pull ``source`` (where the bytes are: a mirror, a rewritten location) and store it
    as ``name`` (what the user asked for)."""
    async with RegistryClient(source.registry, source.endpoint, opts) as client:
        puller = Puller(store, client, source, platform or Platform.host(), progress)
        if names is None:
            names = [name.name] if name.tag or not name.digest else []
        image = await puller.pull(names)
        # Docker's RepoDigests for tag pulls too: the digest this repository served the
        # image under (what rsbox.lock pins an environment's base to: rootless.env.steps).
        store.add_digest_ref(name.digest_ref or name.at(puller.manifest_digest), image.id)
        return image, puller.fetched


async def pull_first(
    store: Store,
    candidates: Sequence[Candidate],
    *,
    opts: TransportOptions,
    platform: Platform | None = None,
    progress: Progress | None = None,
) -> tuple[Image, list[str]]:
    """The first candidate name (short-name search order) whose first source (mirrors in
    order, then the primary location: registries.conf) has the image, as Podman tries
    them. An insecure source may use plain HTTP or an untrusted certificate."""
    progress = progress or Quiet()
    failed: list[tuple[Source, ImageError]] = []
    try:
        for candidate in candidates:
            for source in candidate.sources:
                o = dataclasses.replace(opts, tls_verify=False) if source.insecure else opts
                try:
                    return await _pull_from(
                        store, source.ref, candidate.name, o, platform, progress
                    )
                except ImageError as exc:
                    failed.append((source, exc))
    finally:
        progress.close()
    if len(failed) == 1:
        raise failed[0][1]
    tried = "; ".join(f"{s.ref}: {e.message}" for s, e in failed)
    last = failed[-1][1]
    raise type(last)(f"no source had the image ({tried})", hint=last.hint)


def pull(store: Store, candidates: Sequence[Candidate], **kw: Any) -> tuple[Image, list[str]]:
    """Synchronous entry point (the CLI)."""
    return trio.run(lambda: pull_first(store, candidates, **kw))
