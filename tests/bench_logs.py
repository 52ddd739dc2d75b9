"""A detached container flooding its log (registered as `logs`).

cpu     the monitor's (P1's) CPU time, utime + stime from /proc/PID/stat, per MiB of
        output written without a newline, for a 40 MiB and a 400 MiB flood; the ratio
        400/40 is 1.0 when the cost is linear in bytes (it was quadratic). Also the
        monitor's peak RSS (VmHWM) after each: bounded memory shows as equal peaks.
find    wall time of `rsbox exec CTR find /data` (20k files) in a container that
        floods its log meanwhile, against the same in a quiet container, and in a quiet
        container next to a flooding one (the CPU contention alone): "cold" is the
        first find of a fresh container (the kernel asks the FUSE server about every
        file), "warm" the second (directories are still read through it). The monitor is also the container's FUSE server: the
        ratio says how much a flood slows the container's filesystem.

The flood is `cat` of a 4 MiB file of "a" from a volume (a bind mount, not the FUSE
rootfs), so that the container itself spends little CPU and reads nothing through FUSE.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tests.bench import Peers

MIB = 1024 * 1024
BLOB_MIB = 4
SLICE_MIB = 40
IMAGE = "bench-logs"
WAIT_GO = "while [ ! -e /go/start ]; do sleep 0.05; done; "


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _inspect(peers: Peers, cid: str) -> dict[str, object]:
    res = subprocess.run(peers.rsbox("inspect", cid), check=True, capture_output=True, text=True)
    doc = json.loads(res.stdout)[0]
    assert isinstance(doc, dict)
    return doc


def _detach(peers: Peers, go: Path, script: str) -> tuple[str, int, Path]:
    """(id, monitor pid, log path) of a container running `sh -c script` with /go."""
    argv = peers.rsbox(
        "run", "-d", "--network", "none", "-v", f"{go}:/go", IMAGE, "sh", "-c", script
    )
    cid = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
    doc = _inspect(peers, cid)
    state = doc["State"]
    assert isinstance(state, dict)
    return cid, int(state["MonitorPid"]), Path(str(doc["LogPath"]))


def _remove(peers: Peers, cid: str) -> None:
    subprocess.run(peers.rsbox("rm", "-f", cid), check=True, capture_output=True)


def _ends_with_done(log: Path) -> bool:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 200))
            return b'"stream":"stderr"' in f.read()
    except FileNotFoundError:
        return False


class Flood(NamedTuple):
    cpu: float  # the monitor's CPU seconds
    wall: float
    peak_rss: int  # KiB
    slices: list[float]  # CPU ms per MiB of each successive SLICE_MIB of log


def _flood(peers: Peers, go: Path, mib: int) -> Flood:
    blobs = " ".join(["/go/blob"] * (mib // BLOB_MIB))
    script = WAIT_GO + f"cat {blobs}; echo done >&2; exec sleep 1000"
    cid, pid, log = _detach(peers, go, script)
    try:
        time.sleep(0.5)  # let the start settle
        before = last = _cpu_seconds(pid)
        slices, edge = [], SLICE_MIB * MIB
        t0 = time.perf_counter()
        (go / "start").touch()
        while not _ends_with_done(log):
            if log.exists() and log.stat().st_size >= edge:
                now = _cpu_seconds(pid)
                slices.append((now - last) / SLICE_MIB * 1000)
                last, edge = now, edge + SLICE_MIB * MIB
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds(pid) - before
        peak = _peak_rss_kib(pid)
    finally:
        (go / "start").unlink(missing_ok=True)
        _remove(peers, cid)
    return Flood(cpu, wall, peak, slices)


def _find_seconds(peers: Peers, cid: str) -> float:
    argv = peers.rsbox("exec", cid, "find", "/data", "-type", "f")
    t0 = time.perf_counter()
    res = subprocess.run(argv, check=True, capture_output=True)
    elapsed = time.perf_counter() - t0
    assert res.stdout.count(b"\n") == 20_000, res.stdout[-200:]
    return elapsed


FLOOD = "while :; do cat /go/blob; done"
QUIET = "exec sleep 1000"


def _find_during(peers: Peers, go: Path, flood: str) -> tuple[float, float]:
    """(cold, warm) `find` wall time in a fresh container while no container floods its
    log ("none"), this one does ("same"), or another one does ("neighbour": what sharing
    the host's CPUs with a flood costs, without sharing a FUSE server)."""
    cid, _pid, log = _detach(peers, go, WAIT_GO + (FLOOD if flood == "same" else QUIET))
    ids = [cid]
    try:
        if flood == "neighbour":
            other, _pid, log = _detach(peers, go, WAIT_GO + FLOOD)
            ids.append(other)
        (go / "start").touch()
        if flood != "none":  # under way, and still going after the finds
            while not log.exists() or log.stat().st_size < 16 * MIB:
                time.sleep(0.02)
        cold, warm = _find_seconds(peers, cid), _find_seconds(peers, cid)
        if flood != "none":
            size = log.stat().st_size
            time.sleep(0.2)
            assert log.stat().st_size > size, "the flood stopped before the finds ended"
    finally:
        (go / "start").unlink(missing_ok=True)
        for c in ids:
            _remove(peers, c)
    return cold, warm


def _image(peers: Peers) -> None:
    """The bench rootfs plus /data: 100 directories of 200 empty files."""
    rootfs = peers.work / "logs-rootfs"
    if not rootfs.exists():
        shutil.copytree(peers.rootfs, rootfs, symlinks=True)
        for d in range(100):
            sub = rootfs / "data" / f"d{d}"
            sub.mkdir(parents=True)
            for f in range(200):
                (sub / f"f{f}").touch()
    subprocess.run(peers.rsbox("import", str(rootfs), IMAGE), check=True, capture_output=True)


def bench_logs(peers: Peers, runs: int) -> None:
    _image(peers)
    go = peers.work / "logs-go"
    go.mkdir(exist_ok=True)
    (go / "blob").write_bytes(b"a" * (BLOB_MIB * MIB))
    reps = max(1, min(runs, 3))
    print(f"\nlogs: a detached container writing without newlines ({3 * reps} x 40 MiB,")
    print(f"{reps} x 400 MiB: the short run is the noisier one on a busy host)")
    floods: dict[int, list[Flood]] = {40: [], 400: []}
    for _ in range(reps):  # interleaved, so that drift on the host hits both alike
        for _ in range(3):
            floods[40].append(_flood(peers, go, 40))
        floods[400].append(_flood(peers, go, 400))
    per_mib: dict[int, float] = {}
    best_per_mib: dict[int, float] = {}
    for mib, results in floods.items():
        cpu = statistics.median(r.cpu for r in results)
        best = min(r.cpu for r in results)
        wall = statistics.median(r.wall for r in results)
        peak = max(r.peak_rss for r in results)
        per_mib[mib], best_per_mib[mib] = cpu / mib, best / mib
        print(
            f"  {mib:4} MiB: monitor CPU {cpu:5.2f} s = {cpu / mib * 1000:4.2f} ms/MiB"
            f" (best {best / mib * 1000:4.2f}), {mib / wall:5.1f} MiB/s logged,"
            f" monitor peak RSS {peak / 1024:4.1f} MiB"
        )
    print(
        f"  CPU per MiB, 400 MiB / 40 MiB: {per_mib[400] / per_mib[40]:.2f}x"
        f" (best: {best_per_mib[400] / best_per_mib[40]:.2f}x; 1.0 = linear)"
    )
    # Within one 400 MiB flood: if the cost grew with what was already logged, the last
    # slices would cost more than the first.
    slices = [statistics.median(s) for s in zip(*(r.slices for r in floods[400]), strict=False)]
    if len(slices) >= 2:
        shown = " ".join(f"{ms:.1f}" for ms in slices)
        print(f"  400 MiB, ms/MiB per {SLICE_MIB} MiB of log in order: {shown}")
        print(f"  last slice / first slice: {slices[-1] / slices[0]:.2f}x")
    _find_during(peers, go, "none")  # warm-up: the host's caches of the layer
    kinds = ("none", "same", "neighbour")
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for _ in range(max(reps, min(runs, 5))):  # interleaved, as above
        for k in kinds:
            times[k].append(_find_during(peers, go, k))
    print("  median `exec CTR find /data` (20k files) while no container floods its log, while")
    print("  CTR floods it (same monitor), while another container does (CPUs shared only):")
    for i, phase in enumerate(("cold", "warm")):
        q, same, other = (statistics.median(r[i] for r in times[k]) for k in kinds)
        print(
            f"    {phase}: quiet {q * 1000:6.1f} ms, flooding {same * 1000:6.1f} ms ="
            f" {same / q:.2f}x, neighbour flooding {other * 1000:6.1f} ms = {other / q:.2f}x"
        )
    shutil.rmtree(go)
