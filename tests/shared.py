"""Where the steering repository's shared test data is: $RSBOX_SHARED (set by .ci/run),
else `shared/` beside this checkout; and `unavailable`, the one "fail in CI, skip
elsewhere" for tests that need something of the host."""

from __future__ import annotations

import os
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


def shared_dir() -> Path:
    env = os.environ.get("RSBOX_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared"


DOCKER_SECCOMP = shared_dir() / "testdata" / "seccomp" / "docker-default.json"
