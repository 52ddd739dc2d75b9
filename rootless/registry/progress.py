"""Pull/push progress: rich bars on a terminal, plain lines otherwise, nothing with -q."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Progress(Protocol):
    def start(self, key: str, total: int) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def done(self, key: str, status: str) -> None: ...
    def close(self) -> None: ...


class Quiet:
    def start(self, key: str, total: int) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def done(self, key: str, status: str) -> None:
        pass

    def close(self) -> None:
        pass


class Lines(Quiet):
    """One line per blob when it is done (logs, pipes, CI)."""

    def done(self, key: str, status: str) -> None:
        print(f"{status} {key}", file=sys.stderr, flush=True)


class Bars:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self._p = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
        )
        self._tasks: dict[str, Any] = {}
        self._p.start()

    def start(self, key: str, total: int) -> None:
        self._tasks[key] = self._p.add_task(key, total=total or None)

    def advance(self, key: str, n: int) -> None:
        if key in self._tasks:
            self._p.advance(self._tasks[key], n)

    def done(self, key: str, status: str) -> None:
        if key not in self._tasks:
            self._tasks[key] = self._p.add_task(key, total=1)
        task = self._tasks[key]
        self._p.update(task, description=f"{status} {key}", completed=self._p.tasks[task].total)

    def close(self) -> None:
        self._p.stop()


def make_progress(quiet: bool) -> Progress:
    if quiet:
        return Quiet()
    if sys.stderr.isatty():
        return Bars()
    return Lines()
