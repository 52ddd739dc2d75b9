"""End-to-end fixtures: a store per test session, images built by the suite, and a way
to drive the real `rsbox` CLI as a subprocess (the user the suite runs as: in CI an
unprivileged one)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.idmap import host_idmap
from rootless.info import checks
from tests.images import make_busybox_rootfs, make_layered_oci_layout, make_umoci_layout
from tests.policies.probe_build import build_probe

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session", autouse=True)
def _host_can_run_containers() -> None:
    """In CI a missing prerequisite is a failure, never a skip."""
    missing = [
        f"{c.name}: {c.detail} ({c.fix})"
        for c in checks()
        if c.name in ("user namespaces", "/dev/fuse", "seccomp") and not c.ok
    ]
    if missing and IN_CI:
        pytest.fail("host cannot run rootless containers: " + "; ".join(missing))
    if missing:
        pytest.skip("host cannot run rootless containers: " + "; ".join(missing))


def one_line_error(
    res: subprocess.CompletedProcess[str], *words: str, hint: bool = True, alone: bool = False
) -> str:
    """Bad input as users see it: exit 125, exactly one `rsbox: error: ` line (with a
    `(hint: ` unless hint=False; the only line on stderr when alone=True, else a step's own
    output may come before it), no traceback, each of `words` in that line. Returns it."""
    assert res.returncode == 125, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.startswith("rsbox: error: ")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    if alone:
        assert res.stderr == lines[0] + "\n", res.stderr
    if hint:
        assert "(hint: " in lines[0], lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def table(*rows: tuple[str, ...]) -> str:
    """Docker's tabwriter (minwidth 10, padding 3), written out for the expectations."""
    widths = [max(10, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join(
        "".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + r[-1] + "\n"
        for r in rows
    )


def du(*paths: Path, check: bool = True) -> int:
    """Bytes `du -s -B1 -c` counts under `paths` as the user runs it (check=False: a
    directory it cannot read, a subordinate id's under the full map, counts as itself, and
    du says so on stderr and exits 1)."""
    out = subprocess.run(
        ["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=check
    ).stdout
    return int(out.splitlines()[-1].split()[0])


class Rsbox:
    """The CLI against one store."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rootless", "--root", str(self.root), *args]

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            self.argv(*args), input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"rsbox {' '.join(args)} -> {res.returncode}: {res.stderr}")
        return res

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self("run", *args, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def rsbox(tmp_path_factory: pytest.TempPathFactory) -> Rsbox:
    return Rsbox(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def busybox(rsbox: Rsbox, tmp_path_factory: pytest.TempPathFactory) -> str:
    rootfs = make_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")
    for d in ("etc", "tmp", "root"):
        (rootfs / d).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    (rootfs / "etc" / "lower.txt").write_text("from the image\n")
    rsbox("import", str(rootfs), "busybox", check=True)
    return "busybox"


@pytest.fixture(scope="session")
def layered(rsbox: Rsbox, tmp_path_factory: pytest.TempPathFactory) -> str:
    layout, tag = make_layered_oci_layout(tmp_path_factory.mktemp("oci") / "layout")
    rsbox("import", f"oci:{layout}:{tag}", "layered", check=True)
    return "layered"


@pytest.fixture(scope="session")
def umoci_image(rsbox: Rsbox, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two layers written by umoci itself: busybox and etc/gone.txt, then etc/gone.txt
    deleted (umoci writes the whiteout) and added.txt created."""
    layout, tag = make_umoci_layout(tmp_path_factory.mktemp("umoci") / "layout")
    rsbox("import", f"oci:{layout}:{tag}", "from-umoci", check=True)
    return "from-umoci"


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static seccomp probe (tests/policies/probe.c), built once for the e2e tests."""
    out = tmp_path_factory.mktemp("probe")
    build_probe(out)
    out.chmod(0o755)
    return out


@pytest.fixture(params=["auto", "single"])
def userns(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def full_map() -> bool:
    return host_idmap("auto").full


def layer_dirs(root: Path) -> list[Path]:
    return sorted((root / "layers").iterdir())


def processes_of(marker: str) -> list[str]:
    """Host processes whose command line contains marker."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd:
            out.append(f"{pid}: {cmd}")
    return out


@pytest.fixture()
def marker() -> Iterator[str]:
    token = f"rsbox-e2e-{os.getpid()}-{os.urandom(4).hex()}"
    yield token
