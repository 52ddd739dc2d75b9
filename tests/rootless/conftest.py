from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.store import Store
from tests.images import make_busybox_tarball


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store under tmp_path (never the user's real one)."""
    with Store.open(tmp_path / "root") as s:
        yield s


@pytest.fixture
def busybox_tar(tmp_path: Path) -> Path:
    """A busybox rootfs tarball, made by the suite."""
    return make_busybox_tarball(tmp_path / "busybox.tar.gz")
