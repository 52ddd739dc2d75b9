"""`rsbox info`."""

from __future__ import annotations

import argparse

from rootless.commands import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("info", help="what this host allows, with fixes").set_defaults(handler=show_info)


def show_info(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.errors import RsboxError
    from rootless.info import render_info, render_store

    print(render_info())
    try:  # info reports what it can: a store that cannot be opened is one line of it
        store = ctx.store()
    except RsboxError as exc:
        print(f"store: UNUSABLE {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        return 0
    with store:
        print(render_store(store))
    return 0
