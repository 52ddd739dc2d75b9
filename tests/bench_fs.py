"""`nox -s bench -- --only fs`: the union filesystem against fuse-overlayfs and the kernel's
overlayfs, over the same layers, in one run.

The image: four layers copied from the host (/usr/include + python3.11, /usr/share/man,
/usr/share/doc + /usr/lib/python3, a 1 GiB file), > 40k files, cached under
~/.cache/rsbox-bench (keyed by LAYOUT). Each mount kind runs in its own
`unshare --user --map-root-user --mount` (this module re-executed as `--driver KIND`), and
for every run mounts afresh over an empty upper, so "cold" = the first access after the
mount (the kernel's caches for that mount are empty; the host's caches of the layer files
are warmed by reading them directly before each cold run, for every kind alike) and
"warm" = the same workload again.

Printed per workload: median wall time per mount kind and the ratios rsbox/fuse-overlayfs
and rsbox/overlay. Targets (issue 4): every workload <= 1.5 x fuse-overlayfs, warm
read-mostly workloads <= 1.2 x the kernel overlay.

Then memory: the peak RSS of the rsbox server after `find` + `stat` of a one-layer tree
of 500k files (also cached), next to the same walk over 50k files, so the cost per file
and the effect of the inode table's cap (fs.union.UnionSpec.max_nodes) show.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYOUT = (
    ("usr/include", "usr/lib/python3.11"),
    ("usr/share/man",),
    ("usr/share/doc", "usr/lib/python3"),
    ("big",),
)
BIG = 1 << 30
KINDS = ("rsbox", "fuse-overlayfs", "overlay")
WORKLOADS = (
    "find_stat_cold",
    "find_stat_warm",
    "read_1g_cold",
    "read_1g_warm",
    "tar_c_usr",
    "untar_make",
    "create_delete_storm",
)
WARM_READ = ("find_stat_warm", "read_1g_warm")

_C_FILES = 24
_STORM = r"""
import os
os.mkdir("storm")
for i in range(3000):
    with open(f"storm/f{i}", "w") as f:
        f.write("x" * 100)
for i in range(3000):
    os.unlink(f"storm/f{i}")
os.rmdir("storm")
"""


def _image() -> Path:
    key = hashlib.sha256(f"{LAYOUT}{BIG}{_C_FILES}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rsbox-bench"
    img = cache / f"image-{key}"
    if (img / "done").exists():
        return img
    shutil.rmtree(img, ignore_errors=True)
    for i, dirs in enumerate(LAYOUT):
        fs = img / f"L{i}" / "fs"
        fs.mkdir(parents=True)
        for d in dirs:
            if d == "big":
                block = os.urandom(1 << 20)
                with open(fs / "big", "wb") as f:
                    for _ in range(BIG >> 20):
                        f.write(block)
                continue
            (fs / d).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", "--no-preserve=ownership", f"/{d}", fs / d], check=False)
        subprocess.run(["chmod", "-R", "u+rwX", fs], check=True)
    _c_project(img / "cproj.tar")
    (img / "done").touch()
    return img


def _many_files(count: int) -> Path:
    """A layer of `count` empty files, 1000 per directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rsbox-bench"
    layer = cache / f"files-{count}"
    if (layer / "done").exists():
        return layer
    shutil.rmtree(layer, ignore_errors=True)
    for d in range(0, count, 1000):
        sub = layer / "fs" / f"d{d // 1000}"
        sub.mkdir(parents=True)
        for i in range(d, min(d + 1000, count)):
            (sub / f"f{i}").touch()
    (layer / "done").touch()
    return layer


def _walk_rss(layer: Path) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of the rsbox server for one find+stat of `layer`."""
    with tempfile.TemporaryDirectory(prefix="rsbox-bench-fs-") as tmp:
        mount = Mount("rsbox", [layer], Path(tmp))
        with mount as mnt:
            took = _timed("find . -printf '%s %m %u\\n' > /dev/null", mnt)
            assert mount.proc is not None
            status = Path(f"/proc/{mount.proc.pid}/status").read_text()
        peak = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    return took, peak


def _c_project(tar: Path) -> None:
    src = tar.with_suffix("")
    src.mkdir(exist_ok=True)
    for i in range(_C_FILES):
        body = "\n".join(f"int f{i}_{j}(int x) {{ return x * {j} + {i}; }}" for j in range(200))
        (src / f"m{i}.c").write_text(f"#include <stdio.h>\n#include <stdlib.h>\n{body}\n")
    calls = " + ".join(f"f{i}_1(1)" for i in range(_C_FILES))
    decls = "".join(f"int f{i}_1(int);\n" for i in range(_C_FILES))
    (src / "main.c").write_text(f"{decls}int main(void) {{ return ({calls}) == 0; }}\n")
    (src / "Makefile").write_text(
        "SRC := $(wildcard *.c)\nprog: $(SRC:.c=.o)\n\t$(CC) -o $@ $^\n"
        "%.o: %.c\n\t$(CC) -O1 -c -o $@ $<\n"
    )
    subprocess.run(["tar", "cf", tar, "-C", src.parent, src.name], check=True)


# ---- inside the namespace ------------------------------------------------------------


class Mount:
    """One mount of `layers` (bottom first, each holding fs/) plus an empty upper."""

    def __init__(self, kind: str, layers: list[Path], work: Path) -> None:
        self.kind, self.layers, self.work = kind, layers, work
        self.mnt = work / "mnt"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Path:
        for d in ("upper", "workdir", "mnt"):
            shutil.rmtree(self.work / d, ignore_errors=True)
            (self.work / d).mkdir()
        lowerdir = ":".join(str(p / "fs") for p in reversed(self.layers))
        opts = f"lowerdir={lowerdir},upperdir={self.work / 'upper'},workdir={self.work / 'workdir'}"
        if self.kind == "overlay":
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt], check=True)
        elif self.kind == "fuse-overlayfs":
            subprocess.run(["fuse-overlayfs", "-o", opts, self.mnt], check=True)
        else:
            argv = [sys.executable, "-m", "fs", str(self.mnt), "--upper", str(self.work / "upper")]
            for p in self.layers:
                argv += ["--lower", str(p)]
            self.proc = subprocess.Popen(argv, cwd=REPO)
            dev = os.stat(self.work).st_dev
            while os.stat(self.mnt).st_dev == dev:
                if self.proc.poll() is not None:
                    raise RuntimeError("python -m fs exited")
                time.sleep(0.02)
        return self.mnt

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        else:
            subprocess.run(["umount", self.mnt], check=True)


def _timed(cmd: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", cmd], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _driver(kind: str, img: Path, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {w: [] for w in WORKLOADS}
    find = "find usr -printf '%s %m %u\\n' > /dev/null"
    cat = "cat big > /dev/null"
    with tempfile.TemporaryDirectory(prefix="rsbox-bench-fs-") as tmp:
        work = Path(tmp)
        layers = [img / f"L{i}" for i in range(len(LAYOUT))]
        lowers = " ".join(f"L{i}/fs" for i in range(len(LAYOUT)))
        for _ in range(runs):
            # "Cold" is the mount's own caches: make sure the host's are warm for every
            # kind alike (this machine's proactive reclaim may have dropped them since).
            _timed(f"find {lowers} > /dev/null", img)
            with Mount(kind, layers, work) as mnt:
                times["find_stat_cold"].append(_timed(find, mnt))
                times["find_stat_warm"].append(_timed(find, mnt))
            _timed(f"cat L{len(LAYOUT) - 1}/fs/big > /dev/null", img)
            with Mount(kind, layers, work) as mnt:
                times["read_1g_cold"].append(_timed(cat, mnt))
                times["read_1g_warm"].append(_timed(cat, mnt))
                times["tar_c_usr"].append(_timed("tar cf - usr | cat > /dev/null", mnt))
                build = f"tar xof {img / 'cproj.tar'} && make -s -j2 -C cproj && rm -rf cproj"
                times["untar_make"].append(_timed(build, mnt))
                storm = f"{sys.executable} -c '{_STORM}'"
                times["create_delete_storm"].append(_timed(storm, mnt))
    return times


# ---- outside --------------------------------------------------------------------------


def bench_fs(runs: int) -> None:
    runs = max(1, min(runs, 5))
    img = _image()
    medians: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        if kind == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
            print("fs: fuse-overlayfs is not installed; skipped")
            continue
        argv = ["unshare", "--user", "--map-root-user", "--mount", "--"]
        argv += [sys.executable, "-m", "tests.bench_fs", "--driver", kind, str(img), str(runs)]
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"fs: {kind} failed: {proc.stderr.strip()[-800:]}")
            continue
        times: dict[str, list[float]] = json.loads(proc.stdout.strip().splitlines()[-1])
        medians[kind] = {w: statistics.median(v) for w, v in times.items()}
    files = sum(1 for _ in (img).rglob("*"))
    print(f"\nfs: median wall time over {runs} fresh mounts each; image of {files} entries")
    print(f"  {'workload':22}" + "".join(f"{k:>16}" for k in KINDS) + "  rsbox/fuse-ovl  rsbox/ovl")
    for w in WORKLOADS:
        row = "".join(f"{medians[k][w]:>15.3f}s" if k in medians else f"{'-':>16}" for k in KINDS)
        r = medians.get("rsbox", {}).get(w)
        ratios = ""
        for peer in ("fuse-overlayfs", "overlay"):
            p = medians.get(peer, {}).get(w)
            ratios += f"{r / p:>15.2f}x" if r and p else f"{'-':>16}"
        print(f"  {w:22}{row}{ratios}")
    bench_fs_memory()


def bench_fs_memory() -> None:
    print("\nfs memory: peak RSS of the rsbox server after one find+stat of N files")
    for count in (50_000, 500_000):
        layer = _many_files(count)
        argv = ["unshare", "--user", "--map-root-user", "--mount", "--"]
        argv += [sys.executable, "-m", "tests.bench_fs", "--walk", str(layer)]
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {count}: failed: {proc.stderr.strip()[-400:]}")
            continue
        took, peak = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {count:>7} files  {took:6.2f} s  peak RSS {peak / 1024:6.1f} MiB")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--driver"]:
        kind, img, runs = argv[1], Path(argv[2]), int(argv[3])
        print(json.dumps(_driver(kind, img, runs)))
        return 0
    if argv[:1] == ["--walk"]:
        print(json.dumps(_walk_rss(Path(argv[1]))))
        return 0
    bench_fs(int(argv[0]) if argv else 3)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
