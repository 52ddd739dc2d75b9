"""Read-only image stores for real: an owner pulls from a real registry into a store,
another store runs containers from it (`--image-store`) without writing anything there,
and the owner pulls into it while those containers run.

Both stores belong to the user the suite runs as (CI has no second user whose files we
could be denied): the read-only store is made unwritable for everyone (`chmod -R a-w`),
so that any write a reader tried would fail, and it is compared entry by entry (mode,
size, mtime) before and after."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import IN_CI, Rsbox, one_line_error
from tests.images import make_busybox_rootfs
from tests.registry import Registry, running_registry
from tests.rootless.test_image_stores import chmod_tree, snapshot
from tests.shared import unavailable


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if shutil.which("/usr/bin/docker-registry") is None:
        if IN_CI:
            pytest.fail("docker-registry is missing (./setup.sh packages)")
        pytest.skip("docker-registry is missing")
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def _push(registry: Registry, base: Path, name: str, text: str) -> str:
    """An image whose /etc/which.txt says `text`, pushed to the registry; its reference."""
    rootfs = make_busybox_rootfs(base / f"{name}-rootfs")
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "which.txt").write_text(text)
    scratch = Rsbox(base / f"{name}-scratch")
    scratch("import", str(rootfs), name, check=True)
    ref = f"{registry.host}/shared/{name}:1"
    scratch("push", name, ref, check=True)
    return ref


def test_a_shared_store_is_run_from_without_writes_and_pulled_into_while_in_use(
    registry: Registry, tmp_path: Path
) -> None:
    first = _push(registry, tmp_path, "first", "first\n")
    second = _push(registry, tmp_path, "second", "second\n")
    shared = tmp_path / "shared"
    owner = Rsbox(shared)
    owner("pull", "-q", first, check=True)
    chmod_tree(shared, 0o444, 0o022)  # readable by all: the owner shares it, once
    info = owner("info", check=True).stdout
    assert "journal_mode=delete (others may read this store" in info

    mine = Rsbox(tmp_path / "mine")

    def reader(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return mine("--image-store", str(shared), *args, **kw)  # type: ignore[arg-type]

    # 1. nothing is written into the shared store by a reader
    chmod_tree(shared, 0, 0o222)
    try:
        before = snapshot(shared)
        res = reader("run", "--rm", first, "cat", "/etc/which.txt", check=True)
        assert res.stdout == "first\n"
        listing = reader("images", check=True).stdout.splitlines()
        assert listing[0].split()[-1] == "R/O" and listing[1].split()[-1] == "yes"
        assert f"image store (read-only): {shared}, 1 images" in reader("info").stdout
        reader("run", "--name", "kept", first, "sh", "-c", "echo mine > /mine", check=True)
        one_line_error(reader("rmi", first), "read-only image store", str(shared), alone=True)
        # the container keeps working without --image-store: its image is pinned
        assert mine("start", "-a", "kept", check=True).returncode == 0
        # a commit makes an image of the own store: the base layers are copied in
        mine("commit", "kept", "mine-img", check=True)
        mine("rm", "kept", check=True)
        res = mine("run", "--rm", "mine-img", "cat", "/mine", "/etc/which.txt", check=True)
        assert res.stdout == "mine\nfirst\n"
        assert "R/O" not in mine("images", check=True).stdout
        assert snapshot(shared) == before
    finally:
        chmod_tree(shared, 0o200, 0)
    # the same kind of command where writing is allowed does write: the reader's own store
    assert (tmp_path / "mine" / "store.db").stat().st_size > 0

    # 2. the owner pulls into it while a container runs from it (-i: `read` waits for our
    # "go"; without it stdin is /dev/null, both cats run at once, and the second line can
    # land in readline's buffer, which communicate() does not read)
    running = subprocess.Popen(
        mine.argv(
            "--image-store", str(shared), "run", "--rm", "-i", first,
            "sh", "-c", "cat /etc/which.txt; read x; cat /etc/which.txt",
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert running.stdout is not None
        assert running.stdout.readline() == "first\n"  # it runs
        before_pull = set(snapshot(shared))
        owner("pull", "-q", second, check=True)
        out, err = running.communicate("go\n", timeout=60)
        # what the pull added is readable by others, as the store's root says
        added = {p: m for p, (m, _, _) in snapshot(shared).items() if p not in before_pull}
        assert any(p.startswith("layers/") for p in added), added
        shown = {p: m for p, m in added.items() if p.startswith(("layers/", "blobs/"))}
        unreadable = [p for p, m in shown.items() if not (stat.S_ISLNK(m) or m & 0o004)]
        assert not unreadable, unreadable
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert (running.returncode, out) == (0, "first\n"), err
    res = reader("run", "--rm", second, "cat", "/etc/which.txt", check=True)
    assert res.stdout == "second\n"
    rows = [line.split() for line in reader("images", check=True).stdout.splitlines()[1:]]
    marks = {row[0].rpartition("/")[2]: row[-1] for row in rows}
    assert marks == {"first": "yes", "second": "yes", "mine-img": "no"}, rows


def test_another_user_runs_from_a_store_they_cannot_write(tmp_path: Path) -> None:
    """CI runs the suite as rsbox-ci, then as rsbox-single: the first run fills a store in
    the directory both share (RSBOX_TEST_CACHE) and shares it; the second, which the
    kernel does not let write there, runs from it. Either run checks what it can: the
    owner that its store is readable by others, the other user that nothing changed."""
    base = Path(os.environ.get("RSBOX_TEST_CACHE") or tmp_path)
    shared = base / "rsbox-image-store-v1"
    owner = Rsbox(shared)
    mine = Rsbox(tmp_path / "mine")
    if not shared.exists() and not os.access(base, os.W_OK):
        unavailable(f"{shared} is made by the suite's run as the owner of {base} (rsbox-ci)")
    if not shared.exists() or shared.stat().st_uid == os.getuid():
        if owner("image", "inspect", "shared-bb").returncode != 0:
            rootfs = make_busybox_rootfs(tmp_path / "rootfs")
            (rootfs / "etc").mkdir(exist_ok=True)
            (rootfs / "etc" / "which.txt").write_text("shared\n")
            owner("import", str(rootfs), "shared-bb", check=True)
        chmod_tree(shared, 0o444, 0o022)
        owner("images", check=True)  # the owner's command that leaves WAL
        others_read = [p for p, (m, _, _) in snapshot(shared).items() if not m & 0o004]
        assert not [p for p in others_read if p.startswith(("layers", "blobs", "store.db"))]
        res = mine(
            "--image-store", str(shared), "run", "--rm", "shared-bb", "cat", "/etc/which.txt"
        )
        assert res.stdout == "shared\n", res.stderr
        return
    # another user's store: the kernel refuses us any write there...
    assert not os.access(shared, os.W_OK)
    with pytest.raises(PermissionError):
        (shared / "probe").write_text("x")
    # ...while the same write in our own store works
    (tmp_path / "probe").write_text("x")
    before = snapshot(shared)
    res = mine("--image-store", str(shared), "run", "--rm", "shared-bb", "cat", "/etc/which.txt")
    assert (res.returncode, res.stdout) == (0, "shared\n"), res.stderr
    rows = mine("--image-store", str(shared), "images", check=True).stdout.splitlines()
    assert rows[0].split()[-1] == "R/O" and rows[1].split()[-1] == "yes", rows
    one_line_error(mine("--image-store", str(shared), "rmi", "shared-bb"), "read-only", alone=True)
    assert snapshot(shared) == before
