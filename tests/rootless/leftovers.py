"""What a failed command may not leave in a store (used by unit and e2e tests)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def leftovers(root: Path) -> dict[str, int]:
    """Counts of what is in the store at ``root``: layer directories, blobs, tmp/
    entries, and rows of layers and images."""
    counts = {
        "layers": len(list((root / "layers").iterdir())),
        "blobs": len(list((root / "blobs" / "sha256").iterdir())),
        "tmp": len(list((root / "tmp").iterdir())),
    }
    with sqlite3.connect(root / "store.db") as db:
        for table in ("layers", "images"):
            counts[f"{table} rows"] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts


def nothing_stored(root: Path) -> bool:
    return not any(leftovers(root).values())
