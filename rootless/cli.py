"""The `rsbox` command line: argv -> typed values -> one library call per command.

Errors are printed as one line, `rsbox: error: MESSAGE (hint: HINT)`, never a traceback
(set RSBOX_DEBUG=1 to see one), with Docker's exit codes: 125 when rsbox fails, 126 when
the command cannot be executed, 127 when it is not found, else the command's own status.
The subcommands live in `rootless.commands`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from rootless.launch.prefork import Helper, wants_helper


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from rootless.aliases import expand

    # Docker's management forms (`container ls`, `image rm`) are the plain verbs.
    args = expand(sys.argv[1:] if argv is None else list(argv))
    helper = None
    if wants_helper(args):
        # First thing: P1 imports the FUSE server while we do the rest (rootless.launch.prefork).
        helper = Helper()
    import os

    from rootless.commands import Context, build_parser
    from rootless.errors import RsboxError

    try:
        ns = build_parser().parse_args(args)
        ctx = Context(
            root=ns.root, helper=helper, image_stores=tuple(ns.image_store), tmp_root=ns.tmp_root
        )
        code = int(ns.handler(ns, ctx))
    except RsboxError as exc:
        print(exc.line(), file=sys.stderr)
        if os.environ.get("RSBOX_DEBUG"):
            raise
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    finally:
        if helper is not None and not helper.used:
            helper.abort()
    sys.stdout.flush()
    if helper is not None:
        # `run`: the store is closed and the container gone; skip the interpreter's
        # teardown of every module it loaded (~10 ms of each run).
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
