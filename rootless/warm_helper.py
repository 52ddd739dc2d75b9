"""The warm helper's process, `python -m rootless.warm_helper`: started in the background
by a `rsbox run` that missed it (rootless.launch.warm.spawn). rootless.launch.warmd
serves its socket and forks a warm P0 per request, which runs the request's command line
here exactly as the CLI would have (rootless.cli.main), with what `run` imports imported
once, before the first request. A module of the CLI's, since the launcher imports none.
"""

from __future__ import annotations

import contextlib
import os
import sys

# What `rsbox run` imports on its way to P1: rootless.commands.run and what its handler
# and the launch import inside functions (seccomp's cache, named volumes).
PRELOAD = (
    "rootless.cli",
    "rootless.commands",
    "rootless.commands.run",
    "rootless.launch.caps",
    "rootless.launch.gather",
    "rootless.mountspec",
    "rootless.runspec",
    "rootless.store",
    "rootless.volumes",
    "policies.program_cache",
)


def preload() -> None:
    """Import PRELOAD, so that a warm P0 imports nothing."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)


def run_cli(args: list[str]) -> None:
    """A warm P0: the CLI's command line, its exit status ours (never returns)."""
    from rootless.cli import main

    code = 125
    try:
        main(args, warm=False)  # exits with os._exit itself for `run`
    except SystemExit as exc:  # argparse's --help and usage exits
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:  # RSBOX_DEBUG's traceback, as the interpreter would print it
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    from rootless.launch import warmd

    try:
        warmd.main(run_cli, preload)
    except Exception as exc:  # nobody reads our stderr: leave one line for `rsbox info`
        with contextlib.suppress(OSError):
            print(f"rsbox warm helper: {exc!r}", file=sys.stderr)
    os._exit(0)
