"""The conformance suite (tests/fs/conformance.py) on the FUSE mount and on a plain dir.

Both runs happen inside the same kind of user namespace (`--map-auto`, the full 0-65535
map of `rsbox run`, when the user has a subordinate range; the single-id map otherwise,
then chown checks use id 0), so chown and capabilities mean the same in both; the plain directory is
on the same filesystem as the test's tmp_path. A check must pass in both places: the local
run proves that the expectation (including each errno) is what Linux really does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fs import conformance
from tests.fs.layers import make_layer
from tests.fs.test_mount import REPO, _require, _unshare, has_subid_range

pytestmark = pytest.mark.filterwarnings("ignore")


def _run(tmp: Path, variant: str) -> dict[str, str | None]:
    full = has_subid_range()
    _require(full)
    layer = make_layer(tmp / "l0", conformance.tree())
    out = tmp / "results.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CONFORMANCE_ID": "1000" if full else "0"}
    suite = [sys.executable, "-m", "tests.fs.conformance"]
    if variant == "local":
        argv = [*_unshare(full), *suite, str(layer / "fs"), str(out)]
    else:
        mnt = tmp / "mnt"
        mnt.mkdir()
        harness = [sys.executable, "-m", "tests.fs.harness", "--upper", str(tmp / "upper")]
        harness += ["--lower", str(layer), *([] if full else ["--single-id"]), str(mnt), "--"]
        argv = [*_unshare(full), *harness, *suite, str(mnt), str(out)]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{variant}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    results: dict[str, str | None] = json.loads(out.read_text())
    return results


@pytest.fixture(scope="module", params=["local", "fuse"])
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, str | None]]:
    variant: str = request.param
    return variant, _run(tmp_path_factory.mktemp(variant), variant)


@pytest.mark.parametrize("name", list(conformance.CHECKS))
def test_conformance(results: tuple[str, dict[str, str | None]], name: str) -> None:
    variant, res = results
    assert name in res, f"{variant}: check {name} did not run"
    assert res[name] is None, f"{variant}: {name} failed:\n{res[name]}"
