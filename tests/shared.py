"""Where the steering repository's shared test data is: $RSBOX_SHARED (set by .ci/run),
else `shared/` beside this checkout."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    env = os.environ.get("RSBOX_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared"


DOCKER_SECCOMP = shared_dir() / "testdata" / "seccomp" / "docker-default.json"
