"""Where the steering repository's shared test data is: $RSBOX_SHARED (set by .ci/run),
else `shared/` beside this checkout; `unavailable`, the one "fail in CI, skip elsewhere"
for tests that need something of the host (`need_tools` for programs on PATH); and
`wait_until`, the one poll for a state the system reaches on its own."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"


def unavailable(why: str) -> NoReturn:
    """This host lacks what the test needs: a failure in CI (CI=true, where .ci/run has set
    everything up), a skip elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true and {why}")
    pytest.skip(why)


def need_tools(tools: tuple[str, ...], what: str) -> None:
    """`unavailable` unless every one of `tools` is on PATH (or is an existing path)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        unavailable(f"missing tools for {what}: {missing} (./setup.sh packages)")


def wait_until(what: str, cond: Callable[[], object], timeout: float, poll: float) -> None:
    """Poll `cond` every `poll` seconds until true; the timeout only bounds a hang (a
    pass never depends on how long it took)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll)


def shared_dir() -> Path:
    env = os.environ.get("RSBOX_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared"


DOCKER_SECCOMP = shared_dir() / "testdata" / "seccomp" / "docker-default.json"
