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


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from rootless.aliases import command_of, expand

    # Docker's management forms (`container ls`, `image rm`) are the plain verbs.
    args = expand(sys.argv[1:] if argv is None else list(argv))
    command = command_of(args)
    if command == "shell":  # warm: joined here, before argparse (rootless.env.enter)
        from rootless.env.enter import shell_fast

        shell_fast(args)
    helper = ctx = None
    if command in ("run", "start"):
        # First thing: P1 from the warm helper, else forked to import the FUSE server while
        # we do the rest (rootless.launch.warm, rootless.launch.prefork).
        from rootless.launch import warm

        helper = warm.connect(command) or warm.Helper()
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
    if helper is not None:
        from rootless.launch import warm

        if warm.missed:
            warm.spawn_if_wanted(ctx)  # for the next run; ours has ended
    sys.stdout.flush()
    if helper is not None or command == "exec":
        # `run`, `exec`: the work is done and nothing is left to close; skip the
        # interpreter's teardown of every module it loaded (~10 ms of each run).
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
