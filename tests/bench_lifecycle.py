"""Background containers, rsbox next to Podman in one run (registered as `lifecycle`).

exec     median wall time of `rsbox exec CTR true` vs `podman exec CTR true`, both
         containers detached from the same busybox rootfs. Target (issue 14): rsbox <= 0.3x podman.
memory   PSS of what stays per container: rsbox's monitor (P1) and P2, next to Podman's
         conmon, with 1 and then N containers (target <= 25 MiB each; linear growth).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench_timing import spread_time

if TYPE_CHECKING:
    from tests.bench import Peers

TRUE = ("/bin/busybox", "true")
POD_RUN = (
    "run",
    "-d",
    "--network",
    "none",
    "localhost/rsbox-bench",
    "/bin/busybox",
    "sleep",
    "1000",
)


def _pss(pid: int) -> int:
    """KiB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pids_with(word: str, also: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if word in cmd and also in cmd:
            out.append(int(entry.name))
    return out


def _rsbox_pss(peers: Peers, ids: list[str]) -> int:
    """The monitors (P1) and their P2s of these containers."""
    from rootless.lifecycle import children, monitor_pid

    total = 0
    for cid in ids:
        mon = monitor_pid(cid)
        if mon:
            total += _pss(mon) + sum(_pss(p) for p in children(mon))
    return total


def _podman_pss(tag: str) -> int:
    return sum(_pss(p) for p in _pids_with("conmon", tag))


def _start_rsbox(peers: Peers) -> str:
    argv = peers.rsbox("run", "-d", "--network", "none", "bench", "/bin/busybox", "sleep", "1000")
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _start_podman(peers: Peers) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*peers.podman_args, *POD_RUN], capture_output=True, text=True)


def bench_lifecycle(peers: Peers, runs: int, many: int = 10) -> None:
    cmds = peers.setup()
    rs_ids = [_start_rsbox(peers)]
    pod_ids: list[str] = []
    have_podman = "podman" in cmds
    try:
        if have_podman:
            res = _start_podman(peers)
            if res.returncode == 0:
                pod_ids.append(res.stdout.strip())
            else:
                have_podman = False
                print(f"podman: not measured ({res.stderr.strip()[:200]})")
        rs = spread_time(peers.rsbox("exec", rs_ids[0], *TRUE), runs)
        print(f"\nexec: wall time of `exec CTR true`, {runs} runs each: median [quartiles]")
        print(f"  rsbox    {rs.ms()}")
        if have_podman:
            pod = spread_time([*peers.podman_args, "exec", pod_ids[0], *TRUE], runs)
            print(f"  podman   {pod.ms():26} rsbox/podman = {rs.ratio(pod)}")
            print(f"  target rsbox <= 0.3x podman: {rs.ratio(pod)}")
        one_rs = _rsbox_pss(peers, rs_ids)
        one_pod = _podman_pss(pod_ids[0]) if pod_ids else 0
        for _ in range(many - 1):
            rs_ids.append(_start_rsbox(peers))
            if have_podman:
                res = _start_podman(peers)
                if res.returncode == 0:
                    pod_ids.append(res.stdout.strip())
        many_rs = _rsbox_pss(peers, rs_ids)
        many_pod = sum(_podman_pss(p) for p in pod_ids)
        print("\nmemory: PSS of the per-container processes that stay (rsbox: monitor + P2;")
        print("podman: conmon), 1 container, then per container with", len(rs_ids))
        print(f"  rsbox    1: {one_rs / 1024:6.1f} MiB   {len(rs_ids)}: ", end="")
        print(f"{many_rs / 1024:6.1f} MiB total, {many_rs / len(rs_ids) / 1024:5.1f} MiB each")
        if pod_ids:
            print(f"  podman   1: {one_pod / 1024:6.1f} MiB   {len(pod_ids)}: ", end="")
            print(
                f"{many_pod / 1024:6.1f} MiB total, {many_pod / len(pod_ids) / 1024:5.1f} MiB each"
            )
        print("  target: <= 25 MiB each, total growing linearly")
    finally:
        subprocess.run(peers.rsbox("rm", "-f", *rs_ids), capture_output=True)
        if pod_ids:
            subprocess.run(
                [*peers.podman_args, "rm", "-f", "-t", "0", *pod_ids], capture_output=True
            )
