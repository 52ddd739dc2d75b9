"""The `rsbox` command line: argv -> typed values -> one library call per command.

Errors are printed as one line, `rsbox: error: MESSAGE (hint: HINT)`, never a traceback
(set RSBOX_DEBUG=1 to see one), with Docker's exit codes: 125 when rsbox fails, 126 when
the command cannot be executed, 127 when it is not found, else the command's own status.
The subcommands live in `rootless.commands`; only the one asked for is imported.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~5 ms of CPU under load: not on `exec`'s path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


def main(argv: Sequence[str] | None = None, *, warm: bool = True) -> NoReturn:
    """`warm`: a `run` may be done by the warm helper in our stead (rootless.launch.warm);
    False in the helper's own warm P0, which is that."""
    from rootless.aliases import command_of, expand

    # Docker's management forms (`container ls`, `image rm`) are the plain verbs.
    args = expand(sys.argv[1:] if argv is None else list(argv))
    command = command_of(args)
    if command == "shell":  # warm: joined here, before argparse (rootless.env.enter)
        from rootless.env.enter import shell_fast

        shell_fast(args)
    if command == "run" and warm:
        # First thing: the whole command by the warm helper, whose imports are done
        # (rootless.launch.warm); on a miss, here as before.
        from rootless.launch.warm import delegate

        code = delegate(args)
        if code is not None:
            os._exit(code)
    helper = ctx = None
    if command in ("run", "start"):
        # P1 forked first thing, to import the FUSE server while we do the rest
        # (rootless.launch.prefork; in a warm P0 it has nothing left to import).
        from rootless.launch.prefork import Helper

        helper = Helper()
    from rootless.commands import Context, build_parser
    from rootless.errors import RsboxError

    try:
        ns = build_parser(command).parse_args(args)
        ctx = Context(ns.root, helper, tuple(ns.image_store), ns.tmp_root)
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
    if command == "run" and warm:
        from rootless.launch.warm import missed, spawn_if_wanted

        if missed:
            spawn_if_wanted(ctx)  # for the next run; ours has ended
    sys.stdout.flush()
    if helper is not None or command == "exec":
        # `run`, `exec`: the work is done and nothing is left to close; skip the
        # interpreter's teardown of every module it loaded (~10 ms of each run).
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
