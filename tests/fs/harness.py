"""Mount a union, run one command against it in another process, unmount, report.

Run inside a user+mount namespace (tests start it under `unshare --user --map-root-user
--mount`). The command must not run in this process: pyfuse3 answers requests on the trio
thread, so a check here would wait for itself. It is forked BEFORE trio.run (never fork
inside trio) and exec'd; the parent serves until it exits, then unmounts and exits with
the command's status.

    python -m tests.fs.harness --upper U [--lower L ...] [--single-id] [--max-nodes N]
        MNT -- CMD ...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import trio

from fs import kcache, server
from fs.resolve import META_DIR
from fs.union import UnionSpec


async def _serve_while(pid: int) -> int:
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        _, status = await trio.to_thread.run_sync(os.waitpid, pid, 0)
        # Stop by cancellation, as a launcher's nursery would (python -m fs uses stop()).
        nursery.cancel_scope.cancel()
    return os.waitstatus_to_exitcode(status)


def main() -> int:
    argv = sys.argv[1:]
    sep = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("mountpoint", type=Path)
    ap.add_argument("--lower", type=Path, action="append", default=[])
    ap.add_argument("--upper", type=Path, required=True)
    ap.add_argument("--single-id", action="store_true")
    ap.add_argument("--max-nodes", type=int, default=UnionSpec.max_nodes)
    ap.add_argument(
        "--ramfs-upper",
        action="store_true",
        help="mount a ramfs (no user.* xattrs) on the upper first: we are root in a user "
        "and mount namespace, where ramfs is one of the filesystems anyone may mount",
    )
    ap.add_argument("--kernel-cache", type=kcache.Mode, default=None)  # 0, opendir, 1
    ap.add_argument("--c-read", choices=("0", "copy", "1"), default=None)  # fs/read_shim.c
    ns = ap.parse_args(argv[:sep])
    cmd = argv[sep + 1 :]
    if ns.ramfs_upper:
        ns.upper.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "ramfs", "none", str(ns.upper)], check=True)
    ids = range(0, 1) if ns.single_id else range(0, 65536)
    spec = UnionSpec(tuple(ns.lower), ns.upper, ids, max_nodes=ns.max_nodes)
    if ns.c_read is not None:
        os.environ[kcache.ENV_C_READ] = ns.c_read
    server.mount(spec, ns.mountpoint, kernel_cache=ns.kernel_cache)
    # The launcher forks (and may unshare) right after mount(): it must leave us with one
    # thread. /proc counts threads started by C code too, not only Python's.
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        print(f"harness: mount() left {threads} threads running", file=sys.stderr)
        server.close()
        return 98
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(ns.mountpoint)
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    try:
        code = trio.run(_serve_while, pid)
        print(f"harness: {server.inode_count()} inodes at the end", file=sys.stderr)
        meta_dir = ns.upper / META_DIR
        where = f"{len(os.listdir(meta_dir))} files" if meta_dir.is_dir() else "user.* xattrs"
        print(f"harness: upper metadata in {where}", file=sys.stderr)
        print(f"harness: kernel cache: {kcache.status().detail}", file=sys.stderr)
        in_c, passed = kcache.read_counts()
        print(f"harness: READs in C {in_c}, in Python {passed}", file=sys.stderr)
    finally:
        server.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
