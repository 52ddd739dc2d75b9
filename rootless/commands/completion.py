"""`rsbox completion bash|zsh|fish`: the shell's completion script, on stdout."""

from __future__ import annotations

import argparse

from rootless.commands import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash: rsbox completion bash > "
        "~/.local/share/bash-completion/completions/rsbox)",
    )
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p.set_defaults(handler=_completion)


def _completion(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.commands import build_parser
    from rootless.completion import SHELLS

    print(SHELLS[ns.shell](build_parser()), end="")
    return 0
