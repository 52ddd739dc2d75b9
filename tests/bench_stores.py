"""`nox -s bench -- --only stores`: one read-only image store for N users.

The bench image is tests/bench_pull.py's (6 layers of host files, ~270 MB) with a
busybox layer on top, so that it runs `true`. It is pulled once from the loopback
registry into a store that is then shared (`chmod -R a+rX`); N=8 users (8 stores of
their own, as 8 accounts would have) run it with `--image-store`. Next to it, the
same image pulled into one private store, as each of those users would otherwise do.

disk     bytes allocated: the shared store plus the 8 users' stores, against 8 private
         copies (one private store measured, times 8)
startup  median wall time of `run --rm IMG true` from the shared store (a user's first
         run and later ones) against from a private store; and 8 users starting at once
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench_pull import build_layout
from tests.bench_timing import median_time
from tests.images import make_busybox_tarball, put_image
from tests.registry import push_layout, running_registry

if TYPE_CHECKING:
    from tests.bench import Peers

USERS = 8


def _bench_image(dest: Path, work: Path) -> Path:
    """build_layout's image plus a busybox layer on top."""
    layout, _ = build_layout(dest)
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    raw = make_busybox_tarball(work / "busybox.tar", compress=False).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    (blobs / digest).write_bytes(raw)
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{digest}", "size": len(raw)}  # fmt: skip
    config["rootfs"]["diff_ids"].append(f"sha256:{digest}")
    mdesc = put_image(layout, config, [*manifest["layers"], layer])
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    return layout


def allocated(root: Path) -> int:
    """Bytes allocated below root, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _rsbox(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "rootless", "--root", str(root), *args]


def _run(argv: list[str]) -> None:
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[3:])}: {res.stderr.strip()[:300]}")


def bench_stores(peers: Peers, runs: int) -> None:
    work = peers.work / "stores"
    work.mkdir()
    layout = _bench_image(work / "layout", work)
    with running_registry(work / "registry") as reg:
        ref = f"{reg.host}/bench/shared:v1"
        push_layout(layout, "bench", ref)
        shutil.rmtree(layout)
        shared, private = work / "shared", work / "private"
        t0 = time.perf_counter()
        _run(_rsbox(shared, "pull", "-q", ref))
        fill = time.perf_counter() - t0
        _run(_rsbox(private, "pull", "-q", ref))
    subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
    _run(_rsbox(shared, "images"))  # its owner's next command: a rollback journal
    users = [work / f"user{i}" for i in range(USERS)]
    true = (ref, "/bin/busybox", "true")
    first = []
    for u in users:  # each user's first run: creates their store, pins the image
        t0 = time.perf_counter()
        _run(_rsbox(u, "--image-store", str(shared), "run", "--rm", *true))
        first.append(time.perf_counter() - t0)
    from_shared = median_time(_rsbox(users[0], "--image-store", str(shared), "run", "--rm", *true), runs)  # fmt: skip
    from_private = median_time(_rsbox(private, "run", "--rm", *true), runs)

    def together(argvs: list[list[str]]) -> float:
        t0 = time.perf_counter()
        procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for a in argvs]  # fmt: skip
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError(p.stderr.read().decode() if p.stderr else "failed")
        return time.perf_counter() - t0

    eight_shared = statistics.median(
        together([_rsbox(u, "--image-store", str(shared), "run", "--rm", *true) for u in users])
        for _ in range(3)
    )
    eight_private = statistics.median(
        together([_rsbox(private, "run", "--rm", *true) for _ in users]) for _ in range(3)
    )
    disk_shared = allocated(shared) + sum(allocated(u) for u in users)
    disk_private = allocated(private) * USERS
    mib = 1024 * 1024
    print(
        f"\nstores: the bench image pulled once into a shared store ({fill:.1f} s), {USERS} users"
    )
    print(f"  disk    shared + {USERS} users' stores {disk_shared / mib:8.0f} MiB")
    print(f"          {USERS} private copies          {disk_private / mib:8.0f} MiB   ratio {disk_shared / disk_private:.2f}x")  # fmt: skip
    print(f"  startup first run of each user (median) {statistics.median(first):.3f} s")
    print(f"          from the shared store  {from_shared:.3f} s   from a private store {from_private:.3f} s   ratio {from_shared / from_private:.2f}x")  # fmt: skip
    print(f"          {USERS} at once: shared {eight_shared:.3f} s   private {eight_private:.3f} s   ratio {eight_shared / eight_private:.2f}x")  # fmt: skip
