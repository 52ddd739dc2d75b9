"""`rsbox info`."""

from __future__ import annotations

import argparse

from rootless.commands import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("info", help="what this host allows, with fixes").set_defaults(handler=show_info)


def show_info(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.info import render_info, render_store

    print(render_info())
    with ctx.store() as store:
        print(render_store(store))
    return 0
