"""`nox -s bench`: rsbox against its peers on the same machine, in one run, as ratios.

    python -m tests.bench [--runs N] [--only startup]

startup  median wall time of `rsbox run --rm IMG true` next to `podman run --rm` (runtime
         runc: crun refuses this kernel's hybrid cgroups), each with its default network
         (a private one: rsbox's pasta, podman's own choice) and with `--network none`;
         `ch-run` and `bwrap` on the same busybox rootfs. Target (issue 14): rsbox <= 0.5 x podman.
         rsbox runs with its warm helper (started and waited for first); rsbox-cold
         without it (RSBOX_WARM_HELPER=0: P1 forked by the CLI).
memory   peak RSS and PSS of rsbox's own processes (CLI, FUSE server, namespace
         helper) while one container runs.
logs     a detached container flooding its log: the monitor's CPU per MiB at 40 and
         400 MiB, and `find` in the container during the flood (tests/bench_logs.py).
stores   one read-only image store for 8 users: disk and startup against private
         copies (tests/bench_stores.py).
build    `rsbox build` vs `podman build` of one Debian Containerfile (apt, venv + pip,
         COPY): cold and no-op rebuild (tests/bench_build.py).
env      a warm shim `true` vs rsbox/podman exec, `podman exec --user` and ch-run; a no-op
         `rsbox env build`; a cold first entry (tests/bench_env.py).

Run it as an unprivileged user (the peers are measured rootless too). A missing peer is
reported, not fatal: benchmarks measure, they do not pass or fail.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench_build import bench_build
from tests.bench_env import bench_env
from tests.bench_fs import bench_fs
from tests.bench_lifecycle import bench_lifecycle
from tests.bench_logs import bench_logs
from tests.bench_pull import bench_pull
from tests.bench_seccomp import bench_seccomp
from tests.bench_stores import bench_stores
from tests.bench_timing import Spread, spread_time
from tests.images import make_busybox_rootfs

TRUE = ("/bin/busybox", "true")
REPO = Path(__file__).resolve().parents[1]


def _bench_rootfs(work: Path) -> Path:
    """busybox plus what ch-run and bwrap need to exist (mount points, /etc files)."""
    rootfs = make_busybox_rootfs(work / "rootfs")
    for d in ("dev", "proc", "sys", "tmp", "home", "mnt", "etc", "root"):
        (rootfs / d).mkdir(exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    for f in ("hosts", "resolv.conf"):
        (rootfs / "etc" / f).touch()
    return rootfs


class Peers:
    def __init__(self, work: Path, rootfs: Path) -> None:
        self.work, self.rootfs = work, rootfs
        self.rsbox_root = work / "rsbox-store"
        self.podman_args = [
            "podman",
            "--root",
            str(work / "podman-root"),
            "--runroot",
            str(work / "podman-run"),
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
            "--events-backend",
            "file",
        ]

    def rsbox(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rootless", "--root", str(self.rsbox_root), *args]

    def setup(self) -> dict[str, list[str]]:
        """Import the rootfs into each tool; return the startup command of each available one."""
        cmds: dict[str, list[str]] = {}
        subprocess.run(
            self.rsbox("import", str(self.rootfs), "bench"), check=True, capture_output=True
        )
        cmds["rsbox"] = self.rsbox("run", "--rm", "bench", *TRUE)
        cmds["rsbox/none"] = self.rsbox("run", "--rm", "--network", "none", "bench", *TRUE)
        # The same without the warm helper (rootless.launch.warm): P1 forked by the CLI.
        off = ["env", "RSBOX_WARM_HELPER=0"]
        cmds["rsbox-cold"] = [*off, *cmds["rsbox"]]
        cmds["rsbox-cold/none"] = [*off, *cmds["rsbox/none"]]
        _start_warm_helper(cmds["rsbox/none"])
        if shutil.which("podman"):
            tar = self.work / "rootfs.tar"
            with tarfile.open(tar, "w") as tf:
                tf.add(self.rootfs, arcname=".")
            res = subprocess.run(
                [*self.podman_args, "import", str(tar), "localhost/rsbox-bench"],
                capture_output=True,
                text=True,
            )
            if res.returncode == 0:
                run = [*self.podman_args, "run", "--rm"]
                cmds["podman"] = [*run, "localhost/rsbox-bench", *TRUE]
                cmds["podman/none"] = [*run, "--network", "none", "localhost/rsbox-bench", *TRUE]
            else:
                print(f"podman: not measured ({res.stderr.strip()[:200]})")
        if shutil.which("ch-run"):
            cmds["ch-run"] = ["ch-run", str(self.rootfs), "--", *TRUE]
        if shutil.which("bwrap"):
            cmds["bwrap"] = [
                "bwrap",
                "--unshare-all",
                "--ro-bind",
                str(self.rootfs),
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                *TRUE,
            ]
        return cmds


def _start_warm_helper(argv: list[str]) -> None:
    """A run that misses the helper starts one: wait until it answers, so that the
    measured runs use it (a missing helper after 20 s is reported)."""
    from rootless.launch import warm

    subprocess.run(argv, check=True, capture_output=True)
    path = warm.socket_path(warm.context())
    deadline = time.monotonic() + 20
    while warm.helper_pid(path) is None:
        if time.monotonic() > deadline:
            print(f"warm helper: none at {path} (rsbox is measured without it)")
            return
        time.sleep(0.05)


def bench_startup(peers: Peers, runs: int) -> None:
    cmds = peers.setup()
    results: dict[str, Spread] = {}
    for name, argv in cmds.items():
        try:
            results[name] = spread_time(argv, runs)
        except subprocess.CalledProcessError as exc:
            print(f"{name}: failed ({(exc.stderr or b'').decode()[:200].strip()})")
    print(f"\nstartup: wall time of `run --rm IMG true`, {runs} runs each: median [quartiles]")
    print("  (NAME: the tool's default network, a private one; NAME/none: --network none;")
    print("  a ratio's range: from the best to the worst quartile of each side)")
    for name, t in results.items():
        mine = results.get("rsbox/none" if name.endswith("/none") else "rsbox")
        ratio = f"rsbox/{name} = {mine.ratio(t)}" if mine and not name.startswith("rsbox") else ""
        print(f"  {name:16} {t.ms():26} {ratio}")
    if "rsbox/none" in results and "rsbox" in results:
        cost = (results["rsbox"].median - results["rsbox/none"].median) * 1000
        print(f"  rsbox's private network (pasta) costs {cost:.1f} ms of the start")
    for net in ("", "/none"):
        if f"rsbox{net}" in results and f"podman{net}" in results:
            ratio = results[f"rsbox{net}"].ratio(results[f"podman{net}"])
            print(f"  target rsbox{net} <= 0.5x podman{net}: {ratio}")
        if f"rsbox{net}" in results and f"rsbox-cold{net}" in results:
            ratio = results[f"rsbox{net}"].ratio(results[f"rsbox-cold{net}"])
            print(f"  warm helper: rsbox{net} = {ratio} rsbox-cold{net} (RSBOX_WARM_HELPER=0)")


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in children:
        out += _tree(int(c))
    return out


def _rollup(pid: int) -> tuple[int, int]:
    """(rss, pss) in KiB from smaps_rollup."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _is_rsbox(pid: int) -> bool:
    try:
        return "rootless" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _peak_memory(argv: list[str], env: dict[str, str], helper: int | None) -> tuple[int, int]:
    """Peak (RSS, PSS) in KiB of rsbox's processes for one container: the CLI's tree, and
    with the warm helper the helper's (itself, the warm P0 and what it forked)."""
    proc = subprocess.Popen(argv, env=env)
    peak_rss = peak_pss = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and proc.poll() is None:
        pids = _tree(proc.pid) + (_tree(helper) if helper is not None else [])
        sums = [_rollup(p) for p in pids if _is_rsbox(p)]
        peak_rss = max(peak_rss, sum(r for r, _ in sums))
        peak_pss = max(peak_pss, sum(p for _, p in sums))
        time.sleep(0.05)
    proc.wait()
    return peak_rss, peak_pss


def bench_memory(peers: Peers) -> None:
    from rootless.launch import warm

    argv = peers.rsbox("run", "--rm", "bench", "/bin/busybox", "sleep", "3")
    cold = _peak_memory(argv, {**os.environ, warm.ENV_KNOB: "0"}, None)
    _start_warm_helper([*argv[:-2], "true"])
    helper = warm.helper_pid(warm.socket_path(warm.context()))
    print("\nmemory: rsbox's own processes (CLI, FUSE server, namespace helper) per container")
    print(f"  peak RSS {cold[0] / 1024:.1f} MiB, peak PSS {cold[1] / 1024:.1f} MiB (no helper)")
    if helper is not None:
        rss, pss = _peak_memory(argv, dict(os.environ), helper)
        print(
            f"  peak RSS {rss / 1024:.1f} MiB, peak PSS {pss / 1024:.1f} MiB"
            " (with the warm helper, the helper included)"
        )


BENCHES: dict[str, Callable[[Peers, int], None]] = {
    "startup": bench_startup,
    "lifecycle": bench_lifecycle,
    "memory": lambda peers, _runs: bench_memory(peers),
    "seccomp": bench_seccomp,
    "pull": bench_pull,
    "fs": lambda _peers, runs: bench_fs(runs),
    "logs": bench_logs,
    "stores": bench_stores,
    "build": bench_build,
    "env": bench_env,
}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = ap.parse_args()
    if os.getuid() == 0:
        print("warning: run benchmarks as an unprivileged user; as root the peers are not rootless")
    # Every rsbox command here runs from the source tree (`python -m rootless`): with
    # PYTHONDONTWRITEBYTECODE set (some CI images and shells set it), each one compiled
    # every module it imports, and `exec CTR true` measured 72-86 ms instead of 41-49.
    # Compile once, and let the commands keep their bytecode.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for package in ("rootless", "fs", "policies"):
        compileall.compile_dir(REPO / package, quiet=1)
    with tempfile.TemporaryDirectory(prefix="rsbox-bench-") as tmp:
        work = Path(tmp)
        peers = Peers(work, _bench_rootfs(work))
        ran_setup = False
        for name in args.only or list(BENCHES):
            if (
                name != "startup"
                and not ran_setup
                and "startup" not in (args.only or list(BENCHES))
            ):
                subprocess.run(
                    peers.rsbox("import", str(peers.rootfs), "bench"),
                    check=True,
                    capture_output=True,
                )
            ran_setup = True
            BENCHES[name](peers, args.runs)
        # podman's storage has files owned by sub-ids: let podman remove them.
        if shutil.which("podman"):
            subprocess.run([*peers.podman_args, "system", "reset", "-f"], capture_output=True)
            subprocess.run(
                ["podman", "unshare", "rm", "-rf", str(work / "podman-root")], capture_output=True
            )


if __name__ == "__main__":
    main()
