"""`nox -s bench -- --only build`: `rsbox build` next to `podman build` of one Containerfile.

The base is the Debian rootfs the test suite makes with mmdebstrap (tests/e2e/
test_workloads.py, cached), imported into each tool's own store. The file installs a
package with apt, makes a venv and pip-installs into it, and copies a file from the
context. Both tools get the same options: the host's CA bundle bound at a path of its own
for pip (this machine's HTTPS goes through a TLS-inspecting proxy), the host's network.

    cold    --no-cache: every step runs (apt and PyPI are real, so the network's
            noise is in both; read the spread)
    no-op   the same build again with the cache warm: no step runs

podman runs with its own --root/--runroot, runc and cgroupfs (crun refuses this kernel's
hybrid cgroups), once with vfs storage (as the suite uses it) and once with the kernel's
rootless overlay. Targets: cold <= 1.0x podman, no-op <= 0.5x podman.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.bench import Peers

CA = "/etc/ssl/certs/ca-certificates.crt"
CONTAINERFILE = """\
FROM {base}
ARG PIP_CERT
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv \\
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir six==1.16.0
COPY app.py /app/app.py
CMD ["/venv/bin/python", "/app/app.py"]
"""


def _times(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise RuntimeError(f"{argv[0]}: {(res.stderr or res.stdout)[-300:]}")
    return out


def _line(name: str, times: list[float], mine: list[float] | None) -> str:
    med = statistics.median(times)
    ratio = f"rsbox/{name} = {statistics.median(mine) / med:.2f}x" if mine else ""
    return f"  {name:15} {med:7.2f} s  (min {min(times):.2f}, max {max(times):.2f})   {ratio}"


def bench_build(peers: Peers, runs: int) -> None:
    from tests.e2e.test_workloads import debian_tarball

    try:
        tarball = debian_tarball()
    except BaseException as exc:  # pytest's skip outside pytest: no cached rootfs
        print(f"\nbuild: not measured (no Debian rootfs: {exc})")
        return
    work = peers.work / "build"
    ctx = work / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "app.py").write_text("import six\nprint(six.__version__)\n")
    common = ["-v", f"{CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    tools: dict[str, tuple[list[str], list[str]]] = {}  # name -> (cold argv, warm argv)
    cleanups: list[list[str]] = []
    try:
        _measure(peers, runs, tarball, ctx, common, tools, cleanups)
    finally:
        # podman's stores hold files of subordinate ids: only podman's namespace removes them
        for podman in cleanups:
            subprocess.run([*podman, "system", "reset", "-f"], capture_output=True)
            root = podman[podman.index("--root") + 1]
            subprocess.run(["podman", "unshare", "rm", "-rf", root], capture_output=True)


def _measure(
    peers: Peers,
    runs: int,
    tarball: Path,
    ctx: Path,
    common: list[str],
    tools: dict[str, tuple[list[str], list[str]]],
    cleanups: list[list[str]],
) -> None:
    work = ctx.parent
    subprocess.run(
        peers.rsbox("import", str(tarball), "debian-bench"), check=True, capture_output=True
    )
    (ctx / "Containerfile").write_text(CONTAINERFILE.format(base="localhost/debian-bench"))
    rsbox = peers.rsbox("build", "-q", *common, "-t", "built-bench", str(ctx))
    tools["rsbox"] = ([*rsbox[:-1], "--no-cache", str(ctx)], rsbox)
    for driver in ("vfs", "overlay") if shutil.which("podman") else ():
        name = "podman" if driver == "vfs" else "podman/overlay"
        podman = [
            "podman", "--root", str(work / f"podman-{driver}"),
            "--runroot", str(work / f"run-{driver}"), "--cgroup-manager", "cgroupfs",
            "--runtime", "runc", "--events-backend", "file", "--storage-driver", driver,
        ]  # fmt: skip
        cleanups.append(podman)
        res = subprocess.run(
            [*podman, "import", str(tarball), "localhost/debian-bench"],
            capture_output=True,
            text=True,
        )
        if res.returncode == 0:
            build = [*podman, "build", "-q", "--layers", *common, "-t", "built-bench", str(ctx)]
            tools[name] = ([*build[:-1], "--no-cache", str(ctx)], build)
        else:
            print(f"{name}: not measured ({res.stderr.strip()[:200]})")
    cold_runs = max(1, min(runs, 3))
    cold: dict[str, list[float]] = {}
    noop: dict[str, list[float]] = {}
    for name, (cold_argv, warm_argv) in tools.items():
        try:
            cold[name] = _times(cold_argv, cold_runs)
            _times(warm_argv, 1)  # the cache now holds this file's steps
            noop[name] = _times(warm_argv, runs)
        except RuntimeError as exc:
            print(f"{name}: failed ({exc})")
    print(f"\nbuild: apt + venv/pip + COPY on Debian, cold {cold_runs} runs, no-op {runs} runs")
    for title, results in (("cold (--no-cache)", cold), ("no-op rebuild", noop)):
        print(f" {title}")
        for name, times in results.items():
            print(_line(name, times, results.get("rsbox") if name != "rsbox" else None))
    for title, results, target in (("cold", cold, 1.0), ("no-op", noop, 0.5)):
        for peer in ("podman", "podman/overlay"):
            if "rsbox" in results and peer in results:
                mine, theirs = statistics.median(results["rsbox"]), statistics.median(results[peer])
                print(f"  target {title} rsbox <= {target}x {peer}: {mine / theirs:.2f}x")
