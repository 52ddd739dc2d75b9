"""`rsbox env init|build|up|down|status` and `rsbox shell`: per-project environments
(rootless.env). The project is found from the working directory (rsbox.toml)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rootless.commands import Context
from rootless.errors import ImageNotFound, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.env.config import EnvConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("env", help="this project's environment (rsbox.toml)")
    esub = group.add_subparsers(dest="env_command", required=True, parser_class=type(group))
    p = esub.add_parser("init", help="write a commented rsbox.toml here")
    p.add_argument("--base", default="docker.io/library/debian:12", metavar="IMAGE")
    p.add_argument("--name", metavar="NAME", help="default: the directory's name")
    p.set_defaults(handler=_init)
    p = esub.add_parser("build", help="build the environment's image from rsbox.toml")
    p.add_argument("--no-cache", action="store_true", help="run every step again")
    p.set_defaults(handler=_build)
    esub.add_parser("up", help="start the project's container").set_defaults(handler=_env_up)
    esub.add_parser("down", help="remove the project's container").set_defaults(handler=_down)
    esub.add_parser("status", help="project, image, container").set_defaults(handler=_status)
    esub.add_parser("shims", help="write .rsbox/bin/TOOL for [expose] bins").set_defaults(
        handler=_shims
    )
    p = sub.add_parser("shell", help="a shell (or CMD) in this project's environment")
    p.add_argument(
        "--project", type=Path, metavar="DIR", help="default: found from the working directory"
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="default: a login shell")
    p.set_defaults(handler=_shell)


def _cli(ctx: Context) -> list[str]:
    """argv of this rsbox with the same store options."""
    argv = [sys.executable, "-m", "rootless"]
    if ctx.root_arg is not None:
        argv += ["--root", os.path.abspath(ctx.root_arg)]  # shims run from anywhere
    for store in ctx.image_stores:
        argv += ["--image-store", store]
    if ctx.tmp_root is not None:
        argv += ["--tmp-root", ctx.tmp_root]
    return argv


def _init(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import FILENAME, default_name, template
    from rootless.lifecycle import atomic_write_text

    here = Path.cwd()
    path = here / FILENAME
    if path.exists():
        raise UsageError(f"{path} exists", hint="edit it, or remove it first")
    name = ns.name or default_name(here)
    # Parsed before it is written: a bad --name or --base fails here, not at build.
    from rootless.env.config import parse_config

    parse_config(here, template(name, ns.base))
    atomic_write_text(path, template(name, ns.base))
    print(f"wrote {path}")
    return 0


def _build(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config
    from rootless.env.steps import build_env

    cfg = load_config(Path.cwd())
    if cfg.ignored:  # devcontainer.json's keys rsbox does not use (rootless.env.devcontainer)
        print(f"rsbox: warning: {cfg.path}: ignored: {', '.join(cfg.ignored)}", file=sys.stderr)
    with ctx.store() as store:
        image = build_env(store, cfg, no_cache=ns.no_cache)
    print(f"{cfg.image} sha256:{image.id}", flush=True)
    return 0


def _built(ctx: Context, image: str) -> str:
    """The environment image's id, or "" when it is not built."""
    with ctx.store() as store:
        try:
            return store.resolve_image(image).id
        except ImageNotFound:
            return ""


def _need_image(ctx: Context, cfg: EnvConfig) -> str:
    from rootless.env.steps import check_built

    image_id = _built(ctx, cfg.image)
    check_built(cfg, image_id)
    return image_id


def _up(ctx: Context, cfg: EnvConfig, image_id: str) -> str:
    from rootless.env.container import env_dir, home_source, up
    from rootless.store import default_root

    store_root = ctx.root or default_root(ctx.settings())
    home = home_source(cfg, store_root)
    key_file = env_dir(store_root) / f"{cfg.name}.run-key"
    from rootless.env.steps import read_lock

    bundles = tuple(read_lock(cfg).get("ca_bundles", ()))  # rootless.env.host_ca
    return up(_cli(ctx), ctx.root_arg, cfg, home, image_id, key_file, bundles)


def _env_up(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config

    cfg = load_config(Path.cwd())
    image_id = _need_image(ctx, cfg)
    print(f"{cfg.container}: {_up(ctx, cfg, image_id)}")
    return 0


def _down(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config
    from rootless.env.container import down

    cfg = load_config(Path.cwd())
    removed = down(_cli(ctx), ctx.root_arg, cfg)
    print(f"{cfg.container}: {'removed' if removed else 'absent'}")
    return 0


def _status(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config
    from rootless.env.container import state

    cfg = load_config(Path.cwd())
    from rootless.env.steps import build_key, read_lock

    image = _built(ctx, cfg.image)
    drift = " (rsbox.toml changed since: rsbox env build)"
    if read_lock(cfg).get("build_key") == build_key(cfg):
        drift = ""
    print(f"project:   {cfg.root}")
    print(f"image:     {cfg.image} " + (f"sha256:{image[:12]}{drift}" if image else "(not built)"))
    print(f"container: {cfg.container} {state(ctx.root_arg, cfg)}")
    return 0


def _shims(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config
    from rootless.env.shims import write_shims

    cfg = load_config(Path.cwd())
    for path in write_shims(_cli(ctx), cfg):
        print(path)
    return 0


def _shell(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config
    from rootless.env.container import exec_args

    cfg = load_config(ns.project or Path.cwd())
    image_id = _need_image(ctx, cfg)
    _up(ctx, cfg, image_id)
    cli = _cli(ctx)
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    argv = [*cli, *exec_args(cfg, Path.cwd(), cmd, sys.stdin.isatty() and sys.stdout.isatty())]
    sys.stdout.flush()
    os.execv(argv[0], argv)  # entry is `rsbox exec`: its status, signals and streams
