"""The conformance suite (tests/fs/conformance.py) on the FUSE mount and on a plain dir.

Both runs happen inside the same kind of user namespace (`--map-auto`, the full 0-65535
map of `rsbox run`, when the user has a subordinate range; the single-id map otherwise,
then chown checks use id 0), so chown and capabilities mean the same in both; the plain
directory is on the same filesystem as the test's tmp_path. A check must pass in both
places: the local run proves that the expectation (including each errno) is what Linux
really does.

The runs go side by side: the local one, and the FUSE checks split over two mounts (the
server answers on one Python thread; a second server uses the second core). Trees 2000
levels deep are removed with tests.fs.layers.remove_tree afterwards, whatever the outcome
(pytest's own cleanup recurses once per level).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fs import conformance
from tests.fs.layers import make_layer, remove_tree
from tests.fs.test_mount import REPO, _require, _unshare, has_subid_range

pytestmark = pytest.mark.filterwarnings("ignore")

# The checks of the second FUSE mount: about half of the server's work.
_SECOND_MOUNT = ("tree_2000_deep", "rename_100k_dir_while_another_process_stats")
# "noxattr": the FUSE mount over an upper on a ramfs, which keeps no user.* xattrs, so
# the union keeps its metadata in files by inode (fs.inode_meta), found by its own probe.
# Left out: what ramfs itself cannot do (whatever the metadata), and the two big checks
# of the second mount, which test the inode table rather than where metadata lives.
_RAMFS_LACKS = {"statfs_reports_sizes": "ramfs reports no sizes (f_blocks 0)"}
_NOXATTR = [c for c in conformance.CHECKS if c not in _SECOND_MOUNT and c not in _RAMFS_LACKS]


def _start(tmp: Path, variant: str, checks: list[str], full: bool) -> subprocess.Popen[bytes]:
    """Start the suite's `checks` on a fresh lower copy: on it (local) or on a mount."""
    layer = make_layer(tmp / "l0", conformance.tree(checks))
    out = tmp / "results.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CONFORMANCE_ID": "1000" if full else "0"}
    suite = [sys.executable, "-m", "tests.fs.conformance"]
    if variant == "local":
        conformance.prewrite(layer / "fs")
        argv = [*_unshare(full), *suite, str(layer / "fs"), str(out), *checks]
    else:
        mnt = tmp / "mnt"
        mnt.mkdir()
        harness = [sys.executable, "-m", "tests.fs.harness", "--upper", str(tmp / "upper")]
        if variant == "noxattr":
            harness.append("--ramfs-upper")
        else:
            conformance.prewrite(tmp / "upper")
        harness += ["--lower", str(layer), *([] if full else ["--single-id"])]
        # The inode table's cap above everything the suite looks up, whatever the default:
        # the 100k-entry rename checks inode numbers the kernel is meant to hold all along.
        harness += ["--max-nodes", str(4 * conformance.BIG), str(mnt), "--"]
        argv = [*_unshare(full), *harness, *suite, str(mnt), str(out), *checks]
    log = (tmp / "log").open("wb")
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def all_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    full = has_subid_range()
    _require(full)
    everything = list(conformance.CHECKS)
    plan = {
        "local": everything,
        "fuse": [c for c in everything if c not in _SECOND_MOUNT],
        "fuse-2": list(_SECOND_MOUNT),
        "noxattr": _NOXATTR,
    }
    tmps = {run: tmp_path_factory.mktemp(run) for run in plan}
    try:
        procs = {run: _start(tmps[run], run.split("-")[0], plan[run], full) for run in plan}
        results: dict[str, dict[str, str | None]] = {"local": {}, "fuse": {}, "noxattr": {}}
        for run, proc in procs.items():
            rc = proc.wait(timeout=300)
            log = (tmps[run] / "log").read_text(errors="replace")
            assert rc == 0, f"{run}: rc={rc}\n{log}"
            if run == "noxattr":  # the union found no xattrs there and wrote its files
                m = re.search(r"upper metadata in (\d+) files", log)
                assert m is not None and int(m.group(1)) > 10, log
            elif run == "fuse":
                assert "upper metadata in user.* xattrs" in log, log
            results[run.split("-")[0]].update(json.loads((tmps[run] / "results.json").read_text()))
    finally:
        for tmp in tmps.values():
            for where in (tmp / "l0" / "fs", tmp / "upper"):
                remove_tree(where / "tree_2000_deep")
    return results


@pytest.mark.parametrize(
    ("variant", "name"),
    [
        *((v, c) for v in ("local", "fuse") for c in conformance.CHECKS),
        *(("noxattr", c) for c in _NOXATTR),
    ],
)
def test_conformance(
    all_results: dict[str, dict[str, str | None]], variant: str, name: str
) -> None:
    res = all_results[variant]
    assert name in res, f"{variant}: check {name} did not run"
    assert res[name] is None, f"{variant}: {name} failed:\n{res[name]}"
