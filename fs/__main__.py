"""`python -m fs MOUNTPOINT --lower DIR ... --upper DIR`: mount and serve in the foreground.

For tests and for debugging the launcher. Unprivileged users run it inside a user+mount
namespace, e.g. `unshare --user --map-root-user --mount -- python -m fs ...`.
SIGINT/SIGTERM unmount cleanly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fs import server
from fs.union import UnionSpec


def parse(argv: list[str]) -> tuple[UnionSpec, Path]:
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
    ns = ap.parse_args(argv)
    ids = range(0, 1) if ns.single_id else range(0, 65536)
    spec = UnionSpec(tuple(ns.lower), ns.upper, ids, max_nodes=ns.max_nodes)
    return spec, ns.mountpoint


def main(argv: list[str] | None = None) -> int:
    spec, mountpoint = parse(sys.argv[1:] if argv is None else argv)
    server.mount(spec, mountpoint)
    server.serve_until_signal()
    return 0


if __name__ == "__main__":
    sys.exit(main())
