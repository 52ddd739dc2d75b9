"""The one timer of `nox -s bench`: a command's median wall time after a warm-up."""

from __future__ import annotations

import statistics
import subprocess
import time


def median_time(argv: list[str], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        subprocess.run(argv, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
