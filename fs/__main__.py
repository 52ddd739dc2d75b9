"""`python -m fs MOUNTPOINT --lower DIR ... --upper DIR`: mount and serve in the foreground.

For tests and for debugging the launcher. Unprivileged users run it inside a user+mount
namespace, e.g. `unshare --user --map-root-user --mount -- python -m fs ...`.
SIGINT/SIGTERM unmount cleanly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fs import kcache, server
from fs.union import UnionSpec


def parse(argv: list[str]) -> tuple[UnionSpec, Path, kcache.Mode | None]:
    ap = argparse.ArgumentParser(prog="python -m fs", description=__doc__.splitlines()[0])
    ap.add_argument("mountpoint", type=Path)
    ap.add_argument(
        "--lower",
        type=Path,
        action="append",
        default=[],
        help="layer root (holding fs/ and meta), bottom first; repeatable",
    )
    ap.add_argument("--upper", type=Path, required=True, help="writable directory")
    ap.add_argument(
        "--single-id",
        action="store_true",
        help="only id 0 is mapped (rsbox --userns=single): show others as 0",
    )
    ap.add_argument(
        "--max-nodes",
        type=int,
        default=UnionSpec.max_nodes,
        help="inode table size past which the kernel is asked to drop old entries",
    )
    ap.add_argument(
        "--no-kernel-cache",
        action="store_true",
        help="do not let the kernel cache listings and symlinks (fs.kcache; for debugging)",
    )
    ns = ap.parse_args(argv)
    ids = range(0, 1) if ns.single_id else range(0, 65536)
    spec = UnionSpec(tuple(ns.lower), ns.upper, ids, max_nodes=ns.max_nodes)
    # the flag only turns it off; otherwise RSBOX_FS_KERNEL_CACHE decides
    return spec, ns.mountpoint, kcache.Mode.OFF if ns.no_kernel_cache else None


def main(argv: list[str] | None = None) -> int:
    spec, mountpoint, kernel_cache = parse(sys.argv[1:] if argv is None else argv)
    server.mount(spec, mountpoint, kernel_cache=kernel_cache)
    server.serve_until_signal()
    return 0


if __name__ == "__main__":
    sys.exit(main())
