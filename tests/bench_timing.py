"""The one timer of `nox -s bench`: a command's wall times (or their median, or their
median with its spread) after a warm-up."""

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


class Spread:
    """A figure's median and interquartile range over its runs (seconds)."""

    def __init__(self, times: list[float]) -> None:
        q = statistics.quantiles(times, n=4, method="inclusive")
        self.median, self.low, self.high = statistics.median(times), q[0], q[2]

    def ms(self) -> str:
        return f"{self.median * 1000:7.1f} ms [{self.low * 1000:.1f}-{self.high * 1000:.1f}]"

    def ratio(self, other: Spread) -> str:
        """self/other: the ratio of the medians, and from its best to its worst quartile."""
        return (
            f"{self.median / other.median:.2f}x "
            f"[{self.low / other.high:.2f}-{self.high / other.low:.2f}]"
        )


def spread_time(argv: list[str], runs: int, warmup: int = 2) -> Spread:
    return Spread(wall_times(argv, runs, warmup))
