"""`nox -s bench -- --only env`: entering a project's environment, next to the peers'
ways into a running container, in one run.

warm     wall time of `true` through a warm shim (.rsbox/bin/busybox, the lean entry of
         rootless.env.enter) next to `rsbox exec CTR true` on the same container,
         `podman exec CTR true`, `podman exec --user $(id -u) CTR true` (what
         `distrobox enter` runs) and `ch-run ROOTFS -- true` (a new container each time,
         Charliecloud's only way). Targets (issue 13): <= 25 ms and <= 0.2x podman exec.
build    a no-op `rsbox env build` (nothing changed). Target: <= 200 ms.
cold     the first entry after `rsbox env down` (image built, container absent): the
         shim falls back to the full CLI, which starts the container and enters it.

Every line is the median with the spread (min-max) of the same number of runs. The
interpreter's own start (`python -IS -c pass`, the shim's flags, and `python -c pass`
with site) is measured in the same run as the floor; the CPU time per entry (user +
system of every process it made) is less sensitive to a loaded machine than wall time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench_lifecycle import POD_RUN, TRUE
from tests.bench_timing import wall_times

if TYPE_CHECKING:
    from tests.bench import Peers



def _line(name: str, times: list[float], base: list[float] | None = None) -> str:
    med = statistics.median(times)
    ratio = f"   shim/{name} = {statistics.median(base) / med:.2f}x" if base else ""
    spread = f"({min(times) * 1000:.1f}-{max(times) * 1000:.1f})"
    return f"  {name:28} {med * 1000:7.1f} ms {spread:>15}{ratio}"


def _cpu_per_run(argv: list[str], runs: int, cwd: Path) -> float:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return used / runs


def _project(peers: Peers) -> Path:
    root = peers.work / "env-project"
    root.mkdir(exist_ok=True)
    (root / "rsbox.toml").write_text(
        '[env]\nname = "bench"\nbase = "bench"\n[expose]\nbins = ["busybox"]\n'
    )
    for args in (("env", "trust"), ("env", "build"), ("env", "shims"), ("env", "up")):
        res = subprocess.run(peers.rsbox(*args), capture_output=True, text=True, cwd=root)
        if res.returncode != 0:
            raise RuntimeError(f"rsbox {' '.join(args)}: {res.stderr.strip()[-300:]}")
    return root


def bench_env(peers: Peers, runs: int) -> None:
    # The CLI runs in the project's directory: this source tree must stay first on its
    # path, or `python -m rootless` finds the installed package (tests/e2e/test_env.py).
    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    cmds = peers.setup()
    root = _project(peers)
    shim = [str(root / ".rsbox" / "bin" / "busybox"), "true"]
    pod_id = ""
    try:
        results: list[tuple[str, list[float]]] = []
        warm = wall_times(shim, runs, cwd=root)
        results.append(
            ("rsbox exec", wall_times(peers.rsbox("exec", "rsbox-env-bench", *TRUE), runs))
        )
        if "podman" in cmds:
            res = subprocess.run([*peers.podman_args, *POD_RUN], capture_output=True, text=True)
            if res.returncode == 0:
                pod_id = res.stdout.strip()
                pod = [*peers.podman_args, "exec"]
                results.append(("podman exec", wall_times([*pod, pod_id, *TRUE], runs)))
                user = [*pod, "--user", str(os.getuid()), pod_id, *TRUE]
                results.append(("podman exec --user (distrobox)", wall_times(user, runs)))
            else:
                print(f"podman: not measured ({res.stderr.strip()[:200]})")
        if "ch-run" in cmds:
            results.append(("ch-run", wall_times(cmds["ch-run"], runs)))
        print(f"\nenv: entering a project's environment, {runs} runs each, median (min-max)")
        print(_line("warm shim `true`", warm))
        for name, times in results:
            print(_line(name, times, warm))
        med = statistics.median(warm)
        target = f"  target warm shim <= 25 ms: {med * 1000:.1f} ms"
        pods = dict(results).get("podman exec")
        if pods:
            target += f"; <= 0.2x podman exec: {med / statistics.median(pods):.2f}x"
        print(target)
        floor = [sys.executable, "-IS", "-c", "pass"]
        print(_line("python -IS -c pass (floor)", wall_times(floor, runs)))
        print(_line("python -c pass (with site)", wall_times([sys.executable, "-c", "pass"], runs)))
        exec_argv = peers.rsbox("exec", "rsbox-env-bench", *TRUE)
        cpu = {name: _cpu_per_run(a, runs, root) for name, a in
               (("warm shim", shim), ("rsbox exec", exec_argv), ("python -IS", floor))}  # fmt: skip
        print("  CPU per entry: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in cpu.items()))
        build = wall_times(peers.rsbox("env", "build"), runs, cwd=root)
        print(_line("no-op `rsbox env build`", build))
        print(f"  target no-op build <= 200 ms: {statistics.median(build) * 1000:.1f} ms")
        cold = []
        for _ in range(max(3, runs // 3)):
            subprocess.run(peers.rsbox("env", "down"), check=True, capture_output=True, cwd=root)
            t0 = time.perf_counter()
            subprocess.run(shim, check=True, capture_output=True, cwd=root)
            cold.append(time.perf_counter() - t0)
        print(_line("cold first entry (shim)", cold))
    finally:
        subprocess.run(peers.rsbox("env", "down"), capture_output=True, cwd=root)
        if pod_id:
            subprocess.run([*peers.podman_args, "rm", "-f", "-t", "0", pod_id], capture_output=True)
