"""Find a container by full id, unique id prefix or name: the one rule, and a read-only
fast path into the store for the commands that only need the container's directory.

`Store.container` resolves through `find_row` on its own connection. `container_dir`
serves `exec` without opening the store: a full id is its directory, found without
sqlite3 (its import alone is ~4 ms of CPU under load); a name or a prefix asks the
database on a plain read-only connection, without the store's locks, migrations and
clean-up (which a lookup does not need).
"""

from __future__ import annotations

import os

from rootless.errors import ContainerError
from rootless.locations import root_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

HEX = frozenset("0123456789abcdef")


def is_full_id(ref: str) -> bool:
    return len(ref) == 64 and HEX.issuperset(ref)


def find_row(db: sqlite3.Connection, ref: str) -> tuple[str, str, str]:
    """(id, name, image_id) of the container `ref`: full id, name, or unique id prefix."""
    rows = db.execute(
        "SELECT id, name, image_id FROM containers WHERE id = ? OR name = ?", (ref, ref)
    ).fetchall()
    if not rows and 4 <= len(ref) <= 64 and HEX.issuperset(ref):
        rows = db.execute(
            "SELECT id, name, image_id FROM containers WHERE substr(id, 1, ?) = ?",
            (len(ref), ref),
        ).fetchall()
        if len(rows) > 1:
            raise ContainerError(
                f"container id prefix {ref!r} is ambiguous", hint="use more digits"
            )
    if not rows:
        raise ContainerError(f"no such container: {ref}", hint="list containers with `rsbox ps -a`")
    cid, name, image_id = rows[0]
    return str(cid), str(name), str(image_id)


def container_dir(root: str | None, ref: str) -> tuple[str, str]:
    """(id, directory) of the container `ref` in the store at `root` (None: the default)."""
    base = os.path.join(root_dir(root), "containers")
    if is_full_id(ref) and os.path.isdir(os.path.join(base, ref)):
        # The directory is renamed into place in the transaction that adds the row, and
        # out of it in the one that deletes the row: a full id with a directory is one.
        return ref, os.path.join(base, ref)
    path = os.path.join(root_dir(root), "store.db")
    if not os.path.exists(path):  # connect() would create it
        raise ContainerError(f"no such container: {ref}", hint="list containers with `rsbox ps -a`")
    import sqlite3

    try:
        db = sqlite3.connect(path, timeout=60)
        try:
            cid = find_row(db, ref)[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ContainerError(
            f"cannot read the rsbox store at {path}: {exc}",
            hint="check permissions, or choose another place with --root or RSBOX_ROOT",
        ) from exc
    return cid, os.path.join(base, cid)
