"""`nox -s bench -- --only seccomp`: what the filter costs.

syscalls  a static C loop inside a container (getpid, read of /dev/zero, stat), timed by
          the loop itself so container start-up is not in it, under `default` and
          `unconfined` alternately in one run. Target: default <= 1.05 x unconfined.
          Two references show what part of that is the kernel's: "floor" (unconfined, the
          loop installs a one-instruction "allow" filter itself: any filter at all moves
          every syscall onto the kernel's slow entry path) and "minimal" (libseccomp, one
          rule).
compile   `default` compiled in a fresh process (load + libseccomp + BPF: "cold"), and
          fetched from the filter cache as `rsbox run` does (`program_cache.program_for`,
          "cached"). Targets: cold < 20 ms, cached ~ 0.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.bench import Peers

LOOP_C = r"""
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    if (argc > 2 && strcmp(argv[2], "floor") == 0) {
        /* The cheapest filter there is: one instruction, "allow". */
        struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        struct sock_fprog prog = {1, allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 2;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return 2;
    }
    int fd = open("/dev/zero", O_RDONLY);
    char buf[64];
    struct stat st;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        syscall(SYS_getpid);
        if (read(fd, buf, sizeof buf) != sizeof buf) return 1;
        if (stat("/", &st) != 0) return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec));
    return 0;
}
"""

# Each prints seconds. pathlib is imported before the clock starts: the CLI has it anyway.
COLD = """
import time
from pathlib import Path
t0 = time.perf_counter()
import policies
from policies.compiler import compile_profile
t1 = time.perf_counter()
compile_profile(policies.load_builtin("default"))
t2 = time.perf_counter()
print(t2 - t0, t2 - t1)
"""
CACHED = """
import sys, time
from pathlib import Path
t0 = time.perf_counter()
from policies.program_cache import program_for
t1 = time.perf_counter()
program_for("default", Path(sys.argv[1]))
t2 = time.perf_counter()
print(t2 - t0, t2 - t1)
"""
# The smallest filter there is (allow all but acct): what any filter costs the kernel.
MINIMAL = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]}'


def _loop_binary(work: Path) -> Path:
    out = work / "seccomp-loop"
    out.mkdir(exist_ok=True)
    src = out / "loop.c"
    src.write_text(LOOP_C)
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(out / "loop"), str(src)],
        check=True,
        capture_output=True,
    )
    out.chmod(0o755)
    return out


def bench_syscalls(peers: Peers, runs: int, iterations: int = 200_000) -> None:
    if shutil.which("gcc") is None:
        print("syscalls: not measured (gcc missing)")
        return
    loop_dir = _loop_binary(peers.work)
    minimal = loop_dir / "minimal.json"
    minimal.write_text(MINIMAL)
    # (policy, extra argument of the loop): "floor" is unconfined plus the one-instruction
    # filter the loop installs itself, the least any seccomp filter can cost.
    variants = {
        "unconfined": ("unconfined", ()),
        "floor": ("unconfined", ("floor",)),
        "minimal": (str(minimal), ()),
        "default": ("default", ()),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(runs, 3)):
        for name, (policy, extra) in variants.items():  # alternate: noise hits all alike
            res = subprocess.run(
                peers.rsbox(
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "-v",
                    f"{loop_dir}:/bench:ro",
                    "--security-opt",
                    f"seccomp={policy}",
                    "bench",
                    "/bench/loop",
                    str(iterations),
                    *extra,
                ),
                check=True,
                capture_output=True,
                text=True,
            )
            times[name].append(int(res.stdout) / iterations)
    med = {name: statistics.median(t) for name, t in times.items()}
    u, f, m, d = med["unconfined"], med["floor"], med["minimal"], med["default"]
    print(f"\nsyscalls: getpid + read(/dev/zero) + stat per iteration, {iterations} iterations")
    print(f"  unconfined {u:7.0f} ns/iter")
    print(
        f"  floor      {f:7.0f} ns/iter   floor/unconfined   = {f / u:.3f}x (one-instruction filter)"
    )
    print(
        f"  minimal    {m:7.0f} ns/iter   minimal/unconfined = {m / u:.3f}x (libseccomp, one rule)"
    )
    print(f"  default    {d:7.0f} ns/iter   default/unconfined = {d / u:.3f}x (target <= 1.05x)")
    print(f"                               default/floor      = {d / f:.3f}x (the profile's own)")


def _fresh(script: str, *args: str) -> list[float]:
    res = subprocess.run(
        [sys.executable, "-c", script, *args], check=True, capture_output=True, text=True
    )
    return [float(x) for x in res.stdout.split()]


def bench_compile(peers: Peers, runs: int) -> None:
    colds = [_fresh(COLD) for _ in range(max(runs, 3))]
    cold = statistics.median(c[0] for c in colds)
    compile_only = statistics.median(c[1] for c in colds)
    with tempfile.TemporaryDirectory() as cache:
        _fresh(CACHED, cache)  # fills the cache
        hits = [_fresh(CACHED, cache) for _ in range(max(runs, 3))]
    cached = statistics.median(h[0] for h in hits)
    call = statistics.median(h[1] for h in hits)
    print("\ncompile: the `default` filter, in a fresh process each time")
    print(f"  cold: imports + load + compile  {cold * 1000:6.1f} ms")
    print(f"  cold: load + compile            {compile_only * 1000:6.1f} ms   (target < 20 ms)")
    print(
        f"  cached: import + hit            {cached * 1000:6.2f} ms   cold/cached = {cold / cached:.0f}x"
    )
    print(f"  cached: the hit itself          {call * 1000:6.2f} ms   (target ~0)")


def bench_seccomp(peers: Peers, runs: int) -> None:
    bench_compile(peers, runs)
    bench_syscalls(peers, runs)
