"""The kernel's caches of listings and symlink targets (fs.kcache, fs/cache_shim.c) on a
real mount: they are on, they really serve repeated listings, the knob turns them off,
and every change made through the mount shows in the next listing of each directory it
touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fs.layers import make_layer
from tests.fs.test_mount import IN_CI, REPO, run_in_mount

ON = "listings and symlink targets cached by the kernel"


def _cache_line(proc: subprocess.CompletedProcess[str]) -> str:
    return next(x for x in proc.stderr.splitlines() if x.startswith("harness: kernel cache:"))


def test_shim_loads_in_a_fresh_process() -> None:
    """Importing fs.server loads the shim before pyfuse3 (fs.kcache must come first)."""
    code = "from fs import kcache, server; print(kcache.status().available, kcache.SHIM.why)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    if IN_CI:  # CI installs the package: the shim must be there and load
        assert out.startswith("True"), out


def _sneak(upper: Path) -> str:
    """The directory's mtime is put back: the kernel also drops a cached listing when a
    fresh GETATTR shows a new mtime (and it asks for one after an uncached readdir,
    which marks atime stale)."""
    return f"""
        mkdir d && touch d/a
        test "$(ls d)" = a
        touch -r {upper}/d {upper}.ref
        touch {upper}/d/sneaky
        touch -r {upper}.ref {upper}/d
        ls d > seen
    """


def test_kernel_serves_a_repeated_listing_until_the_knob_turns_it_off(tmp_path: Path) -> None:
    """A file put into the upper behind the mount's back stays invisible to a listing the
    kernel has cached (which proves the cache is used), and shows at once without it."""
    layer = make_layer(tmp_path / "l0", {"etc/a": ""})
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir()
    off.mkdir()
    proc = _run(on, [layer], _sneak(on / "upper"), "--kernel-cache=1")
    assert (on / "upper/seen").read_text() == "a\n"
    if IN_CI:
        assert ON in _cache_line(proc), proc.stderr
    proc = _run(off, [layer], _sneak(off / "upper"), "--kernel-cache=0")
    assert (off / "upper/seen").read_text() == "a\nsneaky\n"
    assert ON not in _cache_line(proc)


def _run(
    tmp_path: Path, lowers: list[Path], script: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    """run_in_mount with harness flags (single-id map)."""
    return run_in_mount(tmp_path, lowers, script, full_map=False, flags=flags)


# Each step changes one or two directories whose listing the kernel has cached just
# before, then checks the next listing of each. `L dir` prints the sorted names.
_CHANGES = """
    L() { ls -A "$1" | tr '\\n' ' '; }
    test "$(L a)" = "lower1 lower2 " && test "$(L b)" = "lower3 "
    touch a/new;            test "$(L a)" = "lower1 lower2 new "
    rm a/lower1;            test "$(L a)" = "lower2 new "
    mkdir a/sub;            test "$(L a)" = "lower2 new sub "
    rmdir a/sub;            test "$(L a)" = "lower2 new "
    ln -s new a/link;       test "$(L a)" = "link lower2 new "
    ln a/new a/hard;        test "$(L a)" = "hard link lower2 new "
    mkfifo a/fifo;          test "$(L a)" = "fifo hard link lower2 new "
    mv a/new a/renamed;     test "$(L a)" = "fifo hard link lower2 renamed "
    L b >/dev/null
    mv b/lower3 a/moved;    test "$(L a)" = "fifo hard link lower2 moved renamed "
                            test "$(L b)" = ""
    mv a/lower2 b/back;     test "$(L a)" = "fifo hard link moved renamed "
                            test "$(L b)" = "back "
    ln a/hard b/hard2;      test "$(L b)" = "back hard2 "
    python3 -c 'import os; os.rename("a/link", "b/link2")'
                            test "$(L a)" = "fifo hard moved renamed " && test "$(L b)" = "back hard2 link2 "
    mv b a/b;               test "$(L a)" = "b fifo hard moved renamed " && test "$(L .)" = "a "
    test "$(L a/b)" = "back hard2 link2 "
    mv a/b/back a/b/back2;  test "$(L a/b)" = "back2 hard2 link2 "
    rm -r a/b;              test "$(L a)" = "fifo hard moved renamed "
    test "$(readlink a/link 2>/dev/null || echo gone)" = gone
"""


@pytest.mark.parametrize("mode", ["1", "opendir", "0"])
def test_listings_follow_every_change_made_through_the_mount(tmp_path: Path, mode: str) -> None:
    """With the kernel's cache (with and without OPENDIR), and without it as a control."""
    layer = make_layer(tmp_path / "l0", {"a/lower1": "1", "a/lower2": "2", "b/lower3": "3"})
    _run(tmp_path, [layer], _CHANGES, f"--kernel-cache={mode}")


@pytest.mark.parametrize("mode", ["1", "opendir"])
def test_symlink_targets_follow_a_replaced_link(tmp_path: Path, mode: str) -> None:
    """Cached targets belong to the inode: a link replaced by another name shows its own."""
    layer = make_layer(tmp_path / "l0", {"t1": "one", "t2": "two"})
    _run(
        tmp_path,
        [layer],
        """
        ln -s t1 l && test "$(cat l)" = one && test "$(readlink l)" = t1
        ln -s t2 l2 && mv l2 l
        test "$(readlink l)" = t2 && test "$(cat l)" = two
        rm l && ln -s t1 l && test "$(readlink l)" = t1
    """,
        f"--kernel-cache={mode}",
    )
