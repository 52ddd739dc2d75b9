"""`nox -s bench -- --only fs`: the union filesystem against fuse-overlayfs and the kernel's
overlayfs, over the same layers, in one run.

The image: four layers copied from the host (/usr/include + python3.11, /usr/share/man,
/usr/share/doc + /usr/lib/python3, a 1 GiB file), > 40k files, cached under
~/.cache/rsbox-bench (keyed by LAYOUT). Each mount kind runs in its own
`unshare --user --map-root-user --mount` (this module re-executed as `--driver KIND`), one
run at a time with the kinds in turn (a slow spell of the machine then falls on all of
them alike), and for every run mounts afresh over an empty upper, so "cold" = the first
access after the mount (the kernel's caches for that mount are empty; the host's caches
of the layer files are warmed by reading them directly before each cold run, for every
kind alike) and "warm" = the same workload again.

Printed per workload: median wall time per mount kind and the ratios rsbox/fuse-overlayfs
and rsbox/overlay. Targets (issue 4): every workload <= 1.5 x fuse-overlayfs, warm
read-mostly workloads <= 1.2 x the kernel overlay; issue 14's are in the README.

The fourth column, "floor", is tests/bench_floor.py: the same pyfuse3, trio, session loop
and libfuse shim as rsbox with a union that costs nothing (the lowers' merged tree read
into memory before the mount, every answer prebuilt, creations straight into the upper),
so floor/fuse-overlayfs is the least any server built as fs.server is can reach on a
workload, and rsbox - floor is what fs.union's own work costs.

Then memory: the peak RSS of the rsbox server after `find` + `stat` of a one-layer tree
of 500k files (also cached), next to the same walk over 50k files, so the cost per file
and the effect of the inode table's cap (fs.union.UnionSpec.max_nodes) show.

Then a rename under load (`python -m tests.bench_fs rename` runs only this): a directory of
100k files in the upper, all of them looked up (the kernel knows every one), is renamed
while another process stats names in another directory, each a fresh LOOKUP the server
must answer. Printed: the longest and the median stat, and how long the rename took.
Target (issue 11): no request waits longer than 100 ms.

Then big trees (`python -m tests.bench_fs trees [RUNS [RSBOX_MAX_NODES [KIND,...]]]`):
find+stat, cold then warm twice, over 150k and 500k entries in the shape of the host's
/usr (its directories, names and symlinks, files empty; one copy of its tree per layer, so
2 and 4 layers here; cached), for every mount kind, with the peak RSS of the FUSE server.
Target (issue 14): warm <= 1.2x fuse-overlayfs, RSS bounded.

Then copy-up under load (`python -m tests.bench_fs copyup [RUNS]`): the bench image's
1 GiB file is opened for writing (a copy-up) while another process stats fresh names;
printed: the longest stat and how long the open took. Target (issue 14): < 50 ms.

`python -m tests.bench_fs reads [RUNS]` runs only the data path's workloads (READS: the
1 GiB reads and tar c), for every kind, on the same mounts as a full run.

Every figure is the median over its runs, with [min-max] next to it: the machine is
shared and noisy.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LAYOUT = (
    ("usr/include", "usr/lib/python3.11"),
    ("usr/share/man",),
    ("usr/share/doc", "usr/lib/python3"),
    ("big",),
)
BIG = 1 << 30
KINDS = ("rsbox", "fuse-overlayfs", "overlay")
FLOOR = "floor"  # tests/bench_floor.py: what any server built as fs.server is pays
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
READS = ("read_1g_cold", "read_1g_warm", "tar_c_usr")  # `python -m tests.bench_fs reads`

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
    """One mount of `layers` (bottom first, each holding fs/) plus an upper, empty unless
    `fill` puts something in it first."""

    def __init__(
        self,
        kind: str,
        layers: list[Path],
        work: Path,
        fill: Callable[[Path], None] | None = None,
        max_nodes: int | None = None,
    ) -> None:
        self.kind, self.layers, self.work, self.fill = kind, layers, work, fill
        self.max_nodes = max_nodes
        self.mnt = work / "mnt"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Path:
        for d in ("upper", "workdir", "mnt"):
            shutil.rmtree(self.work / d, ignore_errors=True)
            (self.work / d).mkdir()
        if self.fill is not None:
            self.fill(self.work / "upper")
        lowerdir = ":".join(str(p / "fs") for p in reversed(self.layers))
        opts = f"lowerdir={lowerdir},upperdir={self.work / 'upper'},workdir={self.work / 'workdir'}"
        if self.kind == "overlay":
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt], check=True)
        elif self.kind == "fuse-overlayfs":
            subprocess.run(["fuse-overlayfs", "-o", opts, self.mnt], check=True)
        else:  # rsbox, or the floor of its design (tests/bench_floor.py)
            module = "tests.bench_floor" if self.kind == FLOOR else "fs"
            argv = [
                sys.executable,
                "-m",
                module,
                str(self.mnt),
                "--upper",
                str(self.work / "upper"),
            ]
            for p in self.layers:
                argv += ["--lower", str(p)]
            if self.max_nodes is not None:
                argv += ["--max-nodes", str(self.max_nodes)]
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


def _spread(values: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
    """`median [min-max]`, each times `scale`."""
    lo, mid, hi = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    return f"{mid:{fmt}} [{lo:{fmt}}-{hi:{fmt}}]"


def _timed(cmd: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", cmd], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _driver(kind: str, img: Path, runs: int, only_reads: bool = False) -> dict[str, list[float]]:
    """Every workload, `runs` times; `only_reads`: only READS (their mounts as in a full run)."""
    times: dict[str, list[float]] = {w: [] for w in (READS if only_reads else WORKLOADS)}
    find = "find usr -printf '%s %m %u\\n' > /dev/null"
    cat = "cat big > /dev/null"
    with tempfile.TemporaryDirectory(prefix="rsbox-bench-fs-") as tmp:
        work = Path(tmp)
        layers = [img / f"L{i}" for i in range(len(LAYOUT))]
        lowers = " ".join(f"L{i}/fs" for i in range(len(LAYOUT)))
        usr_lowers = " ".join(f"L{i}/fs" for i in range(len(LAYOUT)) if "big" not in LAYOUT[i])
        for _ in range(runs):
            # "Cold" is the mount's own caches: make sure the host's are warm for every
            # kind alike (this machine's proactive reclaim may have dropped them since).
            _timed(f"find {lowers} > /dev/null", img)
            if not only_reads:
                with Mount(kind, layers, work) as mnt:
                    times["find_stat_cold"].append(_timed(find, mnt))
                    times["find_stat_warm"].append(_timed(find, mnt))
            _timed(f"cat L{len(LAYOUT) - 1}/fs/big > /dev/null", img)
            with Mount(kind, layers, work) as mnt:
                times["read_1g_cold"].append(_timed(cat, mnt))
                times["read_1g_warm"].append(_timed(cat, mnt))
                # The layers' file contents in the host's page cache for every kind alike:
                # after 2 GiB of reads, this machine's reclaim had dropped some of them,
                # and tar c moved between 0.97x and 2.34x fuse-overlayfs from run to run.
                _timed(f"find {usr_lowers} -type f -exec cat {{}} + > /dev/null", img)
                times["tar_c_usr"].append(_timed("tar cf - usr | cat > /dev/null", mnt))
                if only_reads:
                    continue
                build = f"tar xof {img / 'cproj.tar'} && make -s -j2 -C cproj && rm -rf cproj"
                times["untar_make"].append(_timed(build, mnt))
                storm = f"{sys.executable} -c '{_STORM}'"
                times["create_delete_storm"].append(_timed(storm, mnt))
    return times


# ---- outside --------------------------------------------------------------------------


def bench_fs(runs: int, only_reads: bool = False) -> None:
    runs = max(1, min(runs, 5))
    img = _image()
    workloads = READS if only_reads else WORKLOADS
    medians: dict[str, dict[str, float]] = {}
    spreads: dict[str, dict[str, str]] = {}
    kinds = (*KINDS, FLOOR)
    reads = ("--reads",) if only_reads else ()
    results = _alternated(
        "fs: ", _available(kinds), runs, lambda kind: ["--driver", kind, str(img), "1", *reads]
    )
    for kind, times in results.items():
        medians[kind] = {w: statistics.median(v) for w, v in times.items()}
        spreads[kind] = {w: _spread(v) for w, v in times.items()}
    files = sum(1 for _ in (img).rglob("*"))
    print(
        f"\nfs: median wall time in s [min-max] over {runs} fresh mounts each, the kinds in turn; "
        f"image of {files} entries"
    )
    heads = "  rsbox/fuse-ovl  rsbox/ovl  floor/fuse-ovl"
    print(f"  {'workload':20}" + "".join(f"{k:>26}" for k in kinds) + heads)
    for w in workloads:
        row = "".join(f"{spreads[k][w]:>26}" if k in spreads else f"{'-':>26}" for k in kinds)
        ratios = ""
        for mine, peer, width in (
            ("rsbox", "fuse-overlayfs", 16),
            ("rsbox", "overlay", 11),
            (FLOOR, "fuse-overlayfs", 16),
        ):
            r, p = medians.get(mine, {}).get(w), medians.get(peer, {}).get(w)
            ratios += f"{r / p:>{width - 1}.2f}x" if r and p else f"{'-':>{width}}"
        print(f"  {w:20}{row}{ratios}")
    if only_reads:
        return
    bench_fs_memory()
    bench_fs_rename()
    bench_fs_trees(runs)
    bench_fs_copyup(runs)


def bench_fs_memory() -> None:
    print("\nfs memory: peak RSS of the rsbox server after one find+stat of N files")
    for count in (50_000, 500_000):
        layer = _many_files(count)
        walked = _in_userns(str(count), "--walk", str(layer))
        if walked is None:
            continue
        took, peak = walked
        print(f"  {count:>7} files  {took:6.2f} s  peak RSS {peak / 1024:6.1f} MiB")


# One LOOKUP after another, each of a fresh name (so neither the kernel's entry cache nor
# its negative one answers), under directory DIR, until SECONDS have passed or the file
# STOP exists (checked every 64 lookups); prints the latencies' max and median.
_LOOKUPS = r"""
import json, os, sys, time
where, seconds, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lat = []
print("ready", flush=True)
end = time.perf_counter() + seconds
i = 0
while time.perf_counter() < end and (i % 64 or not os.path.exists(stop)):
    t = time.perf_counter()
    try:
        os.stat(f"{where}/n{i}")
    except FileNotFoundError:
        pass
    lat.append(time.perf_counter() - t)
    i += 1
lat.sort()
print(json.dumps({"max": lat[-1], "median": lat[len(lat) // 2], "stats": len(lat)}))
"""


def _start_lookups(mnt: Path, where: str, seconds: str, stop: str) -> subprocess.Popen[str]:
    """_LOOKUPS running in `mnt`, once it has said it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOOKUPS, where, seconds, stop],
        cwd=mnt,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _in_userns(what: str, *args: str) -> Any:
    """`python -m tests.bench_fs ARGS` in a user+mount namespace of its own: its last
    line, parsed from JSON; None (and a line saying why, about `what`) when it failed."""
    argv = ["unshare", "--user", "--map-root-user", "--mount", "--"]
    argv += [sys.executable, "-m", "tests.bench_fs", *args]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {what}: failed: {proc.stderr.strip()[-400:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """`kinds` but fuse-overlayfs when it is not installed (said once)."""
    if "fuse-overlayfs" in kinds and shutil.which("fuse-overlayfs") is None:
        print("fs: fuse-overlayfs is not installed; skipped")
        return tuple(k for k in kinds if k != "fuse-overlayfs")
    return kinds


def _alternated(
    what: str, kinds: tuple[str, ...], runs: int, args: Callable[[str], list[str]]
) -> dict[str, dict[str, list[float]]]:
    """Each kind's driver (`args(kind)`, one run) once per round, the kinds in turn, for
    `runs` rounds; its lists joined per kind. A slow spell of this shared machine then
    falls on every kind alike instead of on whichever ran through it: with every run of
    one kind before the next, rsbox's cold find read 0.75x fuse-overlayfs in one run and
    0.96x in the next, the kernel overlay's own time moving 0.73 -> 1.00 s between them.
    A kind whose driver fails is left out (and said so)."""
    out: dict[str, dict[str, list[float]]] = {}
    failed: set[str] = set()
    for _ in range(runs):
        for kind in kinds:
            if kind in failed:
                continue
            got = _in_userns(f"{what}{kind}", *args(kind))
            if got is None:
                failed.add(kind)
                out.pop(kind, None)
                continue
            mine = out.setdefault(kind, {})
            for key, values in got.items():
                mine.setdefault(key, []).extend(values)
    return out


def _fill_big(count: int) -> Callable[[Path], None]:
    def fill(upper: Path) -> None:
        (upper / "other").mkdir()
        big = upper / "big"
        big.mkdir()
        for i in range(count):
            os.close(os.open(big / f"file-{i}", os.O_WRONLY | os.O_CREAT, 0o644))

    return fill


def _rename_under_load(kind: str, count: int) -> dict[str, float]:
    """Inside the namespace: the rename of an upper directory of `count` known files
    while another process stats; the statter's latencies and the rename's own time."""
    with tempfile.TemporaryDirectory(prefix="rsbox-bench-fs-") as tmp:
        work = Path(tmp)
        (work / "L0" / "fs" / "etc").mkdir(parents=True)
        # The inode table's cap above the count: the kernel keeps knowing every file.
        mount = Mount(kind, [work / "L0"], work, fill=_fill_big(count), max_nodes=4 * count)
        with mount as mnt:
            known = _timed("find big -printf '%s\n' | wc -l > /dev/null", mnt)
            statter = _start_lookups(mnt, "other", "2.0", "/nonexistent")
            time.sleep(0.5)
            t0 = time.perf_counter()
            os.rename(mnt / "big", mnt / "big2")
            renamed = time.perf_counter() - t0
            out, _ = statter.communicate(timeout=60)
            assert os.path.exists(mnt / "big2" / f"file-{count - 1}")
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return {**result, "rename": renamed, "lookup_all": known}


def bench_fs_rename(count: int = 100_000) -> None:
    print(
        f"\nfs rename under load: a directory of {count} files the kernel knows is renamed"
        "\nwhile another process stats fresh names elsewhere (target: every stat < 100 ms)"
    )
    for kind in ("rsbox", "fuse-overlayfs"):
        if kind == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
            continue
        r = _in_userns(kind, "--rename", kind, str(count))
        if r is None:
            continue
        print(
            f"  {kind:15} longest stat {r['max'] * 1000:8.1f} ms  median "
            f"{r['median'] * 1e6:6.0f} us  ({r['stats']} stats)  rename "
            f"{r['rename'] * 1000:7.1f} ms  (find over the {count}: {r['lookup_all']:.2f} s)"
        )


# ---- big trees --------------------------------------------------------------------------

TREE_SIZES = (150_000, 500_000)
_TREE_LAYERS = 4


def _usr_entries() -> list[tuple[str, str | None]]:
    """(relative path, symlink target or None; directories end in /) of the host's /usr,
    each directory before what it holds."""
    out: list[tuple[str, str | None]] = []
    for top, dirs, files in os.walk("/usr"):
        rel = os.path.relpath(top, "/usr")
        base = "" if rel == "." else rel + "/"
        dirs.sort()
        for d in list(dirs):
            if os.path.islink(os.path.join(top, d)):
                dirs.remove(d)  # os.walk does not enter it: a symlink, listed below
                files.append(d)
            else:
                out.append((f"{base}{d}/", None))
        for f in sorted(files):
            full = os.path.join(top, f)
            out.append((base + f, os.readlink(full) if os.path.islink(full) else None))
    return out


def _usr_shape(count: int) -> Path:
    """_TREE_LAYERS layers holding `count` entries in the shape of the host's /usr:
    copy k of its tree (directories, names, symlinks; files empty) is c{k}/ in layer
    k % _TREE_LAYERS, the last copy cut short."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rsbox-bench"
    img = cache / f"usr-shape-{count}"
    if (img / "done").exists():
        return img
    shutil.rmtree(img, ignore_errors=True)
    entries = _usr_entries()
    made = copy = 0
    while made < count:
        root = img / f"L{copy % _TREE_LAYERS}" / "fs" / f"c{copy}"
        root.mkdir(parents=True)
        made += 1
        for rel, target in entries:
            if made >= count:
                break
            path = root / rel
            if rel.endswith("/"):
                path.mkdir()
            elif target is not None:
                path.symlink_to(target)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
            made += 1
        copy += 1
    (img / "done").touch()
    return img


def _server_rss(mount: Mount) -> int:
    """Peak RSS in KiB of the FUSE server of `mount` (0 for the kernel's overlay)."""
    pid = mount.proc.pid if mount.proc is not None else None
    if pid is None and mount.kind == "fuse-overlayfs":
        for entry in Path("/proc").iterdir():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"fuse-overlayfs") and str(mount.mnt).encode() in cmd:
                pid = int(entry.name)
    if pid is None:
        return 0
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])


def _tree_driver(
    kind: str, img: Path, runs: int, max_nodes: int | None = None
) -> dict[str, list[float]]:
    """Inside the namespace: cold, warm and again-warm find+stat of the whole tree."""
    out: dict[str, list[float]] = {"cold": [], "warm": [], "warm2": [], "rss": []}
    find = "find . -printf '%s %m %u\\n' > /dev/null"
    layers = [img / f"L{i}" for i in range(_TREE_LAYERS) if (img / f"L{i}").exists()]
    with tempfile.TemporaryDirectory(prefix="rsbox-bench-fs-") as tmp:
        for _ in range(runs):
            _timed(f"find {' '.join(f'{p}/fs' for p in layers)} > /dev/null", img)
            mount = Mount(kind, layers, Path(tmp), max_nodes=max_nodes)
            with mount as mnt:
                out["cold"].append(_timed(find, mnt))
                out["warm"].append(_timed(find, mnt))
                out["warm2"].append(_timed(find, mnt))
                out["rss"].append(_server_rss(mount))
    return out


def bench_fs_trees(
    runs: int,
    sizes: tuple[int, ...] = TREE_SIZES,
    max_nodes: int | None = None,
    kinds: tuple[str, ...] = KINDS,
) -> None:
    """`max_nodes`: rsbox's inode table cap (fs.union.UnionSpec.max_nodes) if not the
    default, to see what the cap costs."""
    cap = "" if max_nodes is None else f"; rsbox with --max-nodes {max_nodes}"
    print(
        "\nfs big trees: find+stat of N entries shaped like /usr (one copy of its tree per"
        f" layer), s [min-max] over {runs} fresh mounts{cap}, the kinds in turn; warm = right after the cold"
        " walk, warm2 = once more\n(target: warm <= 1.2x fuse-overlayfs, server RSS bounded)"
    )
    for count in sizes:
        img = _usr_shape(count)

        def args(kind: str, img: Path = img) -> list[str]:
            cap_arg = [str(max_nodes)] if max_nodes is not None and kind == "rsbox" else []
            return ["--tree", kind, str(img), "1", *cap_arg]

        results = _alternated(f"{count} ", _available(kinds), runs, args)
        for kind, r in results.items():
            rss = f"  peak RSS {statistics.median(r['rss']) / 1024:6.1f} MiB" if r["rss"][0] else ""
            print(
                f"  {count:>7} {kind:15} cold {_spread(r['cold'], fmt='.2f'):>19}  warm "
                f"{_spread(r['warm'], fmt='.3f'):>22}  warm2 {_spread(r['warm2'], fmt='.3f'):>22}"
                f"{rss}"
            )
        mine = results.get("rsbox")
        for peer in ("fuse-overlayfs", "overlay"):
            if mine and peer in results:
                ratio = [
                    statistics.median(mine[w]) / statistics.median(results[peer][w])
                    for w in ("warm", "warm2")
                ]
                theirs = statistics.median(results[peer]["rss"])
                rss = f", peak RSS {statistics.median(mine['rss']) / theirs:.2f}x" if theirs else ""
                line = f"warm {ratio[0]:.2f}x, warm2 {ratio[1]:.2f}x{rss}"
                print(f"  {count:>7} rsbox/{peer}: {line}")


# ---- copy-up under load -----------------------------------------------------------------


def _copyup_driver(kind: str, img: Path, runs: int) -> dict[str, list[float]]:
    """Inside the namespace: open the 1 GiB file for writing (its copy-up) while another
    process looks names up; the longest lookup and the open's own time, per run."""
    out: dict[str, list[float]] = {"max": [], "median": [], "open": []}
    layers = [img / f"L{i}" for i in range(len(LAYOUT))]
    with tempfile.TemporaryDirectory(prefix="rsbox-bench-fs-") as tmp:
        for _ in range(runs):
            stop = Path(tmp) / "stop"
            stop.unlink(missing_ok=True)
            _timed(f"cat L{len(LAYOUT) - 1}/fs/big > /dev/null", img)
            with Mount(kind, layers, Path(tmp)) as mnt:
                waiter = _start_lookups(mnt, "usr", "inf", str(stop))
                time.sleep(0.3)
                out["open"].append(
                    _timed(f'{sys.executable} -c \'open("big", "r+b").close()\'', mnt)
                )
                time.sleep(0.1)
                stop.touch()
                result = json.loads(waiter.communicate(timeout=60)[0].strip().splitlines()[-1])
                out["max"].append(result["max"])
                out["median"].append(result["median"])
    return out


def bench_fs_copyup(runs: int) -> None:
    print(
        "\nfs copy-up under load: the 1 GiB file is opened for writing (copied up) while"
        f"\nanother process looks up fresh names; ms [min-max] over {runs} fresh mounts"
        "\n(target: the longest lookup < 50 ms)"
    )
    img = _image()
    for kind in KINDS:
        if kind == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
            continue
        r = _in_userns(kind, "--copyup", kind, str(img), str(runs))
        if r is None:
            continue
        print(
            f"  {kind:15} longest lookup {_spread(r['max'], 1000, '.1f'):>22} ms  median "
            f"{_spread(r['median'], 1e6, '.0f'):>16} us  the open {_spread(r['open'], 1000, '.0f'):>18} ms"
        )


def main(argv: list[str]) -> int:
    if argv[:1] == ["--rename"]:
        print(json.dumps(_rename_under_load(argv[1], int(argv[2]))))
        return 0
    if argv[:1] == ["rename"]:
        bench_fs_rename(int(argv[1]) if len(argv) > 1 else 100_000)
        return 0
    if argv[:1] == ["--driver"]:
        kind, img, runs = argv[1], Path(argv[2]), int(argv[3])
        print(json.dumps(_driver(kind, img, runs, only_reads=argv[4:] == ["--reads"])))
        return 0
    if argv[:1] == ["--walk"]:
        print(json.dumps(_walk_rss(Path(argv[1]))))
        return 0
    if argv[:1] == ["--tree"]:
        cap = int(argv[4]) if len(argv) > 4 else None
        print(json.dumps(_tree_driver(argv[1], Path(argv[2]), int(argv[3]), cap)))
        return 0
    if argv[:1] == ["trees"]:  # trees [RUNS [RSBOX_MAX_NODES [KINDS,...]]]
        cap = int(argv[2]) if len(argv) > 2 else None
        kinds = tuple(argv[3].split(",")) if len(argv) > 3 else KINDS
        bench_fs_trees(int(argv[1]) if len(argv) > 1 else 3, max_nodes=cap, kinds=kinds)
        return 0
    if argv[:1] == ["--copyup"]:
        print(json.dumps(_copyup_driver(argv[1], Path(argv[2]), int(argv[3]))))
        return 0
    if argv[:1] == ["copyup"]:
        bench_fs_copyup(int(argv[1]) if len(argv) > 1 else 3)
        return 0
    if argv[:1] == ["reads"]:  # reads [RUNS]: only READS, every kind
        bench_fs(int(argv[1]) if len(argv) > 1 else 3, only_reads=True)
        return 0
    bench_fs(int(argv[0]) if argv else 3)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
