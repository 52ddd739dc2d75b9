"""`nox -s bench -- --only pull`: pulling one multi-layer image from a local registry.

The image (6 layers, ~270 MB uncompressed) is made of host files under /usr/lib and
/usr/share, pushed by skopeo (which gzips the layers) to the real distribution registry
on loopback (tests/registry.py). Each tool then pulls it into an empty store:

    rsbox    rsbox pull (download, verify, decompress and extract every layer)
    podman   podman pull --tls-verify=false (its own --root/--runroot, runc, cgroupfs)
    skopeo   skopeo copy docker://... oci:DIR (download and verify only: no extraction)

Median of N runs each, printed with ratios. Target: rsbox <= 1.0 x podman.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.images import goarch, put_image
from tests.registry import push_layout, running_registry

if TYPE_CHECKING:
    from tests.bench import Peers

LAYERS = 6
LAYER_BYTES = 45 * 1024 * 1024


def _host_files() -> Iterator[Path]:
    for top in ("/usr/lib", "/usr/share"):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK):
                    yield p


def build_layout(dest: Path) -> tuple[Path, int]:
    """An OCI layout of LAYERS plain-tar layers of host files; returns (layout, bytes)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    files = _host_files()
    descs, diff_ids, total = [], [], 0
    for i in range(LAYERS):
        tmp = dest / f"layer{i}.tar"
        size = 0
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in files:
                try:
                    tar.add(path, arcname=f"layer{i}{path}", recursive=False)
                except OSError:
                    continue
                size += path.stat().st_size
                if size >= LAYER_BYTES:
                    break
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        tmp.rename(blobs / digest)
        n = (blobs / digest).stat().st_size
        total += n
        descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{digest}",
                "size": n,
            }
        )
        diff_ids.append(f"sha256:{digest}")
    config = {
        "architecture": goarch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    mdesc = put_image(dest, config, descs)
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    return dest, total


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{argv[0]}: {res.stderr.strip()[:300]}")
    return elapsed


def bench_pull(peers: Peers, runs: int) -> None:
    runs = max(1, min(runs, 3))
    work = peers.work / "pull"
    work.mkdir()
    layout, size = build_layout(work / "layout")
    with running_registry(work / "registry") as reg:
        ref = f"{reg.host}/bench/big:v1"
        push_layout(layout, "bench", ref)
        shutil.rmtree(layout)
        times: dict[str, list[float]] = {"rsbox": [], "podman": [], "skopeo": []}
        for i in range(runs):
            root = work / f"rsbox-{i}"
            times["rsbox"].append(
                _timed([sys.executable, "-m", "rootless", "--root", str(root), "pull", "-q", ref])
            )
            shutil.rmtree(root, ignore_errors=True)
            if shutil.which("podman"):
                proot = work / f"podman-{i}"
                prun = Path(tempfile.mkdtemp(prefix="prun-"))  # podman: <= 50 characters
                argv = ["podman", "--root", str(proot), "--runroot", str(prun),
                        "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--events-backend", "file"]  # fmt: skip
                try:
                    times["podman"].append(_timed([*argv, "pull", "-q", "--tls-verify=false", ref]))
                except RuntimeError as exc:
                    print(f"podman: not measured ({exc})")
                subprocess.run(
                    [*argv, "unshare", "rm", "-rf", str(proot), str(prun)], capture_output=True
                )
            if shutil.which("skopeo"):
                out = work / f"skopeo-{i}"
                times["skopeo"].append(
                    _timed(
                        [
                            "skopeo",
                            "copy",
                            "--src-tls-verify=false",
                            f"docker://{ref}",
                            f"oci:{out}:bench",
                        ]
                    )
                )
                shutil.rmtree(out, ignore_errors=True)
    results = {k: statistics.median(v) for k, v in times.items() if v}
    base = results["rsbox"]
    print(
        f"\npull: {LAYERS} layers, {size / 1e6:.0f} MB uncompressed, from a loopback registry; median of {runs}"
    )
    for name, t in results.items():
        ratio = f"rsbox/{name} = {base / t:.2f}x" if name != "rsbox" else ""
        print(f"  {name:8} {t:7.2f} s   {ratio}")
    if "podman" in results:
        print(f"  target rsbox <= 1.0x podman: {base / results['podman']:.2f}x")
