from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.policies.probe_build import build_probe


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static seccomp probe, built once per session."""
    if shutil.which("gcc") is None:
        if os.environ.get("CI") == "true":  # setup.sh installs it: missing is a failure
            pytest.fail("gcc is needed to build the seccomp probe (setup.sh PACKAGES)")
        pytest.skip("gcc is needed to build the seccomp probe")
    return build_probe(tmp_path_factory.mktemp("probe"))
