"""Load: 50 detached containers from one image, started, listed, exec'd into and removed
in one test; nothing is left behind (processes, mounts, files, runtime state)."""

from __future__ import annotations

import json
from pathlib import Path

from rootless.lifecycle import runtime_dir
from tests.e2e.conftest import Rsbox, processes_of

COUNT = 50


def test_fifty_detached_containers(rsbox: Rsbox, busybox: str, marker: str) -> None:
    ids = []
    try:
        for i in range(COUNT):
            res = rsbox.run(
                "-d", "--name", f"load-{i}", busybox, "sh", "-c", f"sleep 1000; : {marker}"
            )
            assert res.returncode == 0, res.stderr
            ids.append(res.stdout.strip())
        listed = json.loads(rsbox("ps", "--format", "json", check=True).stdout)
        running = {d["Id"] for d in listed if d["State"] == "running"}
        assert set(ids) <= running
        # One monitor per container (P1), a P2, and the container's own sleep.
        assert len([p for p in processes_of(marker) if "rootless" in p]) >= COUNT
        for i, cid in enumerate(ids):
            res = rsbox("exec", cid, "hostname", check=True)
            assert res.stdout.strip() == cid[:12], i
    finally:
        res = rsbox("rm", "-f", *ids) if ids else None
    assert res is not None and res.returncode == 0, res.stderr if res else ""
    assert not processes_of(marker)
    assert not any(runtime_dir(cid).exists() for cid in ids)
    assert not any((rsbox.root / "containers" / cid).exists() for cid in ids)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not any(cid in mounts for cid in ids)
    assert "load-" not in rsbox("ps", "-a", check=True).stdout
