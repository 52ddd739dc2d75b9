from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store under tmp_path (never the user's real one)."""
    with Store.open(tmp_path / "root") as s:
        yield s
