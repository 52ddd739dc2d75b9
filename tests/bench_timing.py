"""The one timer of `nox -s bench`: a command's wall times (or their median) after a
warm-up."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path


def wall_times(argv: list[str], runs: int, warmup: int = 2, cwd: Path | None = None) -> list[float]:
    for _ in range(warmup):
        subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
    return times


def median_time(argv: list[str], runs: int, warmup: int = 2) -> float:
    return statistics.median(wall_times(argv, runs, warmup))
