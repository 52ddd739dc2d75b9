"""Pulls against a small registry written here (trio, loopback) that misbehaves on
purpose: each fault gives one error with a hint, leaves no temporary files and no
image, and the next pull (fault removed) succeeds. The real registry is exercised in
tests/e2e/test_registry.py; this one exists because a real registry does not cut
connections or send corrupt blobs on request."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import zstandard

from rootless.errors import ImageError, LayerError, RsboxError, StoreFull
from rootless.registry import AuthError, RegistryError
from rootless.registry.auth import Credentials
from rootless.registry.client import TransportOptions
from rootless.registry.pull import Platform, pull_image
from rootless.registry.reference import parse_reference
from rootless.store import RESERVE_ENV, Store
from tests.images import GIB, TarBuilder, allocated, gzip_bomb, sparse_tar
from tests.rootless.leftovers import nothing_stored

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HOST = Platform.host()

# A response: (status, headers, body); or a callable that writes to the stream itself.
Response = tuple[int, dict[str, str], bytes]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    manifest: bytes
    blobs: dict[str, bytes]
    layers: list[bytes]  # the raw tars, bottom first


def make_image(
    kinds: tuple[str, ...] = ("gzip", "zstd", "none"), arch: str = HOST.architecture
) -> Image:
    blobs: dict[str, bytes] = {}
    descs, diff_ids, raws = [], [], []
    for i, kind in enumerate(kinds):
        raw = TarBuilder().dir("d").file(f"d/f{i}", f"layer {i}\n".encode() * 100).bytes()
        data = {
            "gzip": lambda r: gzip.compress(r, mtime=0),
            "zstd": lambda r: zstandard.ZstdCompressor().compress(r),
            "none": lambda r: r,
        }[kind](raw)
        suffix = {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[kind]
        blobs[_sha(data)] = data
        descs.append(
            {
                "mediaType": f"application/vnd.oci.image.layer.v1.tar{suffix}",
                "digest": _sha(data),
                "size": len(data),
            }
        )
        diff_ids.append(_sha(raw))
        raws.append(raw)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    blobs[_sha(config)] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha(config),
                "size": len(config),
            },
            "layers": descs,
        }
    ).encode()
    return Image(manifest, blobs, raws)


def image_of_blobs(layers: list[tuple[bytes, str, str]]) -> Image:
    """An image whose layers are (blob, media type, diff_id hex) as they are."""
    blobs = {_sha(blob): blob for blob, _, _ in layers}
    config = json.dumps(
        {
            "architecture": HOST.architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for _, _, d in layers]},
        }
    ).encode()
    blobs[_sha(config)] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _sha(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": mt, "digest": _sha(blob), "size": len(blob)} for blob, mt, _ in layers
        ],
    }
    return Image(json.dumps(manifest).encode(), blobs, [])


@dataclass
class FakeRegistry:
    """manifests: reference -> (media type, bytes); blobs: digest -> bytes.
    ``fault(method, path, n)`` (n: how many times this path was asked) may return a
    Response to send instead, or "cut" to send half a body and close."""

    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    fault: Callable[[str, str, int], Response | str | None] | None = None
    hits: dict[str, int] = field(default_factory=dict)
    bearer: Credentials | None = None  # require a bearer token got with these
    redirect_blobs: bool = False  # answer blob GETs with a 307 to /storage/ on another host
    tokens_issued: int = 0
    token_uses: dict[str, int] = field(default_factory=dict)
    port: int = 0

    def add(self, repo_tag: str, image: Image) -> None:
        self.manifests[repo_tag] = (OCI_MANIFEST, image.manifest)
        self.manifests[_sha(image.manifest)] = (OCI_MANIFEST, image.manifest)
        self.blobs.update(image.blobs)

    def route(self, method: str, path: str, headers: dict[str, str]) -> Response | str:
        self.hits[path] = n = self.hits.get(path, 0) + 1
        if self.fault is not None and (r := self.fault(method, path, n)) is not None:
            return r
        return self.answer(method, path, headers)

    def answer(self, method: str, path: str, headers: dict[str, str]) -> Response:
        """What a healthy registry sends."""
        if path.startswith("/storage/"):  # where blobs are redirected to (S3-like)
            assert "authorization" not in headers  # another host: no registry credentials
            return 200, {"content-type": "application/octet-stream"}, self.blobs[path[9:]]
        if path.startswith("/token"):
            auth = headers.get("authorization", "")
            assert self.bearer is not None
            want = base64.b64encode(f"{self.bearer.username}:{self.bearer.password}".encode())
            if auth != f"Basic {want.decode()}":
                return 401, {}, b'{"errors":[{"message":"bad credentials"}]}'
            self.tokens_issued += 1
            self.token_uses[f"t{self.tokens_issued}"] = 0
            return (
                200,
                {"content-type": "application/json"},
                json.dumps({"token": f"t{self.tokens_issued}"}).encode(),
            )
        if self.bearer is not None and path != "/v2/":
            # a token expires after 3 requests here: the client must refresh it
            token = headers.get("authorization", "").removeprefix("Bearer ")
            if token in self.token_uses:
                self.token_uses[token] += 1
            if self.token_uses.get(token, 99) > 3:
                challenge = f'Bearer realm="http://127.0.0.1:{self.port}/token",service="fake",scope="repository:img:pull"'
                return 401, {"www-authenticate": challenge}, b""
        parts = path.split("/")
        if self.redirect_blobs and len(parts) >= 5 and parts[-2] == "blobs":
            return 307, {"location": f"http://localhost:{self.port}/storage/{parts[-1]}"}, b""
        if len(parts) >= 5 and parts[-2] == "manifests":
            if (
                m := self.manifests.get(f"{parts[2]}:{parts[-1]}") or self.manifests.get(parts[-1])
            ) is not None:
                return 200, {"content-type": m[0]}, m[1]
            return 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
        if len(parts) >= 5 and parts[-2] == "blobs":
            if (b := self.blobs.get(parts[-1])) is not None:
                return 200, {"content-type": "application/octet-stream"}, b
            return 404, {}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}'
        return 200, {}, b"{}"

    async def handle(self, stream: trio.SocketStream) -> None:
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data or data[:1] == b"\x16":  # EOF, or a TLS hello: HTTP only here
                    return
                buf += data
            head = buf.split(b"\r\n\r\n", 1)[0].decode()
            request, *lines = head.split("\r\n")
            method, target, _ = request.split(" ")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)
            }
            path = target.split("?")[0]
            r = self.route(method, path, headers)
            if r == "cut":
                body = self.answer(method, path, headers)[2]
                await stream.send_all(
                    f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body[: len(body) // 2]
                )
                return
            assert not isinstance(r, str)
            status, hdrs, body = r
            out = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            out += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
            await stream.send_all(out.encode() + b"\r\n" + (b"" if method == "HEAD" else body))
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()


@pytest.fixture
async def registry(nursery: trio.Nursery) -> FakeRegistry:
    reg = FakeRegistry()
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, reg.handle, 0, host="127.0.0.1")
    )
    reg.port = listeners[0].socket.getsockname()[1]
    return reg


OPTS = TransportOptions(backoff=0.01, retries=3)


async def _pull(store: Store, reg: FakeRegistry, ref: str = "img:v1", **kw: Any) -> Any:
    return await pull_image(
        store, parse_reference(f"127.0.0.1:{reg.port}/{ref}"), opts=kw.pop("opts", OPTS), **kw
    )


def _consistent(store: Store) -> None:
    assert list(store.tmp.iterdir()) == []
    assert store.images() == []


async def test_pull_gzip_zstd_and_plain_layers(store: Store, registry: FakeRegistry) -> None:
    image = make_image()
    registry.add("img:v1", image)
    pulled, fetched = await _pull(store, registry)
    assert len(pulled.layers) == 3 and len(fetched) == 3
    assert (pulled.layers[1] / "fs" / "d" / "f1").read_bytes() == b"layer 1\n" * 100
    for digest in fetched:  # blobs kept as pulled
        assert store.blob_path(digest[7:]).read_bytes() == image.blobs[digest]
    # a second pull fetches nothing
    _, again = await _pull(store, registry)
    assert again == []


async def _fault_then_ok(
    store: Store, registry: FakeRegistry, err: type[RsboxError], match: str, **kw: Any
) -> RsboxError:
    with pytest.raises(err, match=match) as info:
        await _pull(store, registry, **kw)
    assert info.value.hint
    assert "\n" not in info.value.message
    _consistent(store)
    registry.fault = None
    pulled, _ = await _pull(store, registry)
    assert len(pulled.layers) == 3
    return info.value


async def test_blob_digest_mismatch(store: Store, registry: FakeRegistry) -> None:
    image = make_image()
    registry.add("img:v1", image)
    bad_digest = json.loads(image.manifest)["layers"][1]["digest"]
    good = image.blobs[bad_digest]
    registry.blobs[bad_digest] = zstandard.ZstdCompressor().compress(image.layers[1] + b"\0" * 512)

    with pytest.raises(RegistryError, match="expected"):
        await _pull(store, registry)
    _consistent(store)
    registry.blobs[bad_digest] = good
    pulled, _ = await _pull(store, registry)
    assert len(pulled.layers) == 3


async def test_diff_id_mismatch(store: Store, registry: FakeRegistry) -> None:
    image = make_image(("gzip",))
    manifest = json.loads(image.manifest)
    config = json.loads(image.blobs[manifest["config"]["digest"]])
    config["rootfs"]["diff_ids"] = [_sha(b"something else")]
    cbytes = json.dumps(config).encode()
    manifest["config"].update(digest=_sha(cbytes), size=len(cbytes))
    registry.blobs.update(image.blobs)
    registry.blobs[_sha(cbytes)] = cbytes
    registry.manifests["img:v1"] = (OCI_MANIFEST, json.dumps(manifest).encode())
    with pytest.raises(LayerError, match="uncompresses to") as info:
        await _pull(store, registry)
    assert info.value.hint
    _consistent(store)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
async def test_corrupt_compressed_stream(store: Store, registry: FakeRegistry, kind: str) -> None:
    image = make_image((kind,))
    manifest = json.loads(image.manifest)
    desc = manifest["layers"][0]
    broken = image.blobs[desc["digest"]][: desc["size"] // 2]  # truncated, digest matches
    desc.update(digest=_sha(broken), size=len(broken))
    registry.blobs.update(image.blobs)
    registry.blobs[_sha(broken)] = broken
    registry.manifests["img:v1"] = (OCI_MANIFEST, json.dumps(manifest).encode())
    with pytest.raises(LayerError, match="corrupt") as info:
        await _pull(store, registry)
    assert info.value.hint
    _consistent(store)
    registry.add("img:v1", image)
    pulled, _ = await _pull(store, registry)
    assert len(pulled.layers) == 1


async def test_registry_dies_mid_blob(store: Store, registry: FakeRegistry) -> None:
    image = make_image()
    registry.add("img:v1", image)
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    # once: the blob is fetched again from the start, the pull succeeds
    registry.fault = lambda m, p, n: "cut" if p.endswith(layer) and n == 1 else None
    pulled, _ = await _pull(store, registry)
    assert len(pulled.layers) == 3 and registry.hits[f"/v2/img/blobs/{layer}"] == 2
    assert list(store.tmp.iterdir()) == []
    # every time: one error, nothing half-stored, and the next pull (registry healed) works
    store.remove_image(pulled.id)
    registry.fault = lambda m, p, n: "cut" if p.endswith(layer) else None
    err = await _fault_then_ok(store, registry, RegistryError, "connection broke")
    assert "pull again" in (err.hint or "")


@pytest.mark.parametrize("what", ["manifest", "config"])
async def test_registry_dies_mid_manifest_or_config(
    store: Store, registry: FakeRegistry, what: str
) -> None:
    """As for layers: a body cut once is fetched again; cut every time, one error."""
    image = make_image()
    registry.add("img:v1", image)
    config = json.loads(image.manifest)["config"]["digest"]
    path = "/v2/img/manifests/v1" if what == "manifest" else f"/v2/img/blobs/{config}"
    registry.fault = lambda m, p, n: "cut" if p == path and n == 1 else None
    pulled, _ = await _pull(store, registry)
    assert len(pulled.layers) == 3 and registry.hits[path] == 2
    store.remove_image(pulled.id)
    registry.fault = lambda m, p, n: "cut" if p == path else None
    err = await _fault_then_ok(store, registry, RegistryError, "connection broke")
    assert "pull again" in (err.hint or "")


@pytest.mark.parametrize("status", [500, 429])
async def test_server_errors_are_retried(store: Store, registry: FakeRegistry, status: int) -> None:
    registry.add("img:v1", make_image())
    busy: Response = (status, {"retry-after": "0"}, b"")
    registry.fault = lambda m, p, n: busy if n <= 2 else None
    pulled, _ = await _pull(store, registry)
    assert len(pulled.layers) == 3
    assert all(n == 3 for p, n in registry.hits.items() if "/blobs/" in p)


async def test_persistent_server_error_gives_up(store: Store, registry: FakeRegistry) -> None:
    registry.add("img:v1", make_image())
    registry.fault = lambda m, p, n: (503, {}, b"") if "/manifests/" in p else None
    await _fault_then_ok(store, registry, RegistryError, "answered 503")


async def test_oversized_manifest(store: Store, registry: FakeRegistry) -> None:
    registry.add("img:v1", make_image())
    huge: Response = (200, {"content-type": OCI_MANIFEST}, b" " * (5 * 1024 * 1024))
    registry.fault = lambda m, p, n: huge if p.endswith("/v1") else None
    await _fault_then_ok(store, registry, RegistryError, "limit")


async def test_malformed_manifest(store: Store, registry: FakeRegistry) -> None:
    registry.add("img:v1", make_image())
    registry.fault = lambda m, p, n: (
        (200, {"content-type": OCI_MANIFEST}, b"{not json") if p.endswith("/v1") else None
    )
    await _fault_then_ok(store, registry, RegistryError, "not valid JSON")


async def test_unknown_media_type(store: Store, registry: FakeRegistry) -> None:
    registry.add("img:v1", make_image())
    odd = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"}
    ).encode()
    registry.fault = lambda m, p, n: (
        (200, {"content-type": "application/vnd.example.thing+json"}, odd)
        if p.endswith("/v1")
        else None
    )
    await _fault_then_ok(store, registry, RegistryError, "unsupported manifest media type")


async def test_index_platform_selection(store: Store, registry: FakeRegistry) -> None:
    mine, other = make_image(), make_image(("gzip",), arch="s390x")
    registry.add("img:mine", mine)
    registry.add("img:other", other)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": _sha(other.manifest),
                "size": len(other.manifest),
                "platform": {"os": "linux", "architecture": "s390x"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": _sha(mine.manifest),
                "size": len(mine.manifest),
                "platform": {"os": "linux", "architecture": HOST.architecture},
            },
        ],
    }
    registry.manifests["img:multi"] = (OCI_INDEX, json.dumps(index).encode())
    host_image, _ = await _pull(store, registry, "img:multi")
    assert len(host_image.layers) == 3
    s390x, _ = await _pull(store, registry, "img:multi", platform=Platform.parse("linux/s390x"))
    assert len(s390x.layers) == 1
    with pytest.raises(RegistryError, match=r"no image for linux/ppc64le .*s390x") as info:
        await _pull(store, registry, "img:multi", platform=Platform.parse("linux/ppc64le"))
    assert "--platform" in (info.value.hint or "")


async def test_pull_by_digest_is_verified(store: Store, registry: FakeRegistry) -> None:
    image = make_image()
    registry.add("img:v1", image)
    pulled, _ = await _pull(store, registry, f"img@{_sha(image.manifest)}")
    assert len(pulled.layers) == 3
    other = "sha256:" + "0" * 64
    registry.manifests[other] = (OCI_MANIFEST, image.manifest)  # served under a wrong digest
    with pytest.raises(RegistryError, match="does not match its digest"):
        await _pull(store, registry, f"img@{other}")


async def test_missing_manifest_is_not_found(store: Store, registry: FakeRegistry) -> None:
    with pytest.raises(ImageError, match="not found") as info:
        await _pull(store, registry, "img:nope")
    assert info.value.hint


async def test_bearer_token_flow_and_refresh(store: Store, registry: FakeRegistry) -> None:
    registry.add("img:v1", make_image())
    registry.bearer = Credentials("u", "pw")
    with pytest.raises(AuthError, match="requires authentication") as info:
        await _pull(store, registry)
    assert "rsbox login" in (info.value.hint or "")
    _consistent(store)
    wrong = TransportOptions(backoff=0.01, credentials=Credentials("u", "nope"))
    with pytest.raises(AuthError, match="rejected the credentials"):
        await _pull(store, registry, opts=wrong)
    right = TransportOptions(backoff=0.01, credentials=Credentials("u", "pw"))
    before = registry.tokens_issued
    pulled, _ = await _pull(store, registry, opts=right)
    assert len(pulled.layers) == 3
    # tokens here go stale at every new token: the client refreshed on 401 and replayed
    assert registry.tokens_issued > before + 1


async def test_blob_redirects_are_followed_without_credentials(
    store: Store, registry: FakeRegistry
) -> None:
    registry.add("img:v1", make_image())
    registry.bearer = Credentials("u", "pw")
    registry.redirect_blobs = True
    seen: list[str] = []
    registry.fault = lambda m, p, n: seen.append(p) if p.startswith("/storage/") else None
    right = TransportOptions(backoff=0.01, credentials=Credentials("u", "pw"))
    pulled, _ = await _pull(store, registry, opts=right)
    assert len(pulled.layers) == 3 and len(seen) == 4  # 3 layers + the config


TAR = "application/vnd.oci.image.layer.v1.tar"


def _bombs(tmp_path: Path) -> Image:
    sparse = sparse_tar(tmp_path / "src", 2 * GIB, "pax-0.1")
    bomb, bomb_diff_id = gzip_bomb(256 * 1024 * 1024)
    return image_of_blobs(
        [
            (sparse, TAR, hashlib.sha256(sparse).hexdigest()),
            (bomb, f"{TAR}+gzip", bomb_diff_id),
        ]
    )


async def test_pulled_sparse_and_bomb_layers_stay_sparse(
    store: Store, registry: FakeRegistry, tmp_path: Path
) -> None:
    registry.add("img:v1", _bombs(tmp_path))
    pulled, _ = await _pull(store, registry)
    big = pulled.layers[0] / "fs" / "sparse.bin"
    zeros = pulled.layers[1] / "fs" / "zeros.bin"
    assert big.stat().st_size == 2 * GIB and zeros.stat().st_size == 256 * 1024 * 1024
    assert allocated(big) + allocated(zeros) < 2 * 1024 * 1024
    for digest, blob in registry.blobs.items():  # blobs as pulled (the 2 MB bomb's too)
        if digest != json.loads(registry.manifests["img:v1"][1])["config"]["digest"]:
            assert store.blob_path(digest[7:]).read_bytes() == blob


async def test_pull_past_the_reserve_is_refused_and_leaves_nothing(
    store: Store, registry: FakeRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = make_image()
    registry.add("img:v1", image)
    monkeypatch.setenv(RESERVE_ENV, "100%")
    with pytest.raises(StoreFull, match=r"layer sha256:[0-9a-f]{12} would leave less than"):
        await _pull(store, registry)
    assert nothing_stored(store.root)
    monkeypatch.setenv(RESERVE_ENV, "0")  # control
    pulled, _ = await _pull(store, registry)
    assert len(pulled.layers) == 3
