"""`rsbox env init|build|up|down|status|exec|trust|untrust|lock|gc`, `rsbox shell` and
`rsbox hook SHELL`: per-project environments (rootless.env). The project is found from
the working directory (rsbox.toml). Nothing builds or enters a project whose config is
not trusted (rootless.env.trust)."""

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
    from rootless.store import Image


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("env", help="this project's environment (rsbox.toml)")
    esub = group.add_subparsers(dest="env_command", required=True, parser_class=type(group))
    p = esub.add_parser("init", help="write a commented rsbox.toml here")
    p.add_argument("--base", default="docker.io/library/debian:12", metavar="IMAGE")
    p.add_argument("--name", metavar="NAME", help="default: the directory's name")
    p.set_defaults(handler=_init)
    p = esub.add_parser("build", help="build the environment's image from rsbox.toml")
    p.add_argument("--no-cache", action="store_true", help="run every step again")
    p.add_argument(
        "--pull", action="store_true", help="the base's tag again, not the digest rsbox.lock pins"
    )
    p.set_defaults(handler=_build)
    esub.add_parser("up", help="start the project's container").set_defaults(handler=_env_up)
    esub.add_parser("down", help="remove the project's container").set_defaults(handler=_down)
    esub.add_parser("status", help="image, container, trust, drift").set_defaults(handler=_status)
    esub.add_parser("trust", help="let rsbox.toml as it is now build and run").set_defaults(
        handler=_trust
    )
    esub.add_parser("untrust", help="take trust back from rsbox.toml").set_defaults(
        handler=_untrust
    )
    esub.add_parser("lock", help="record base, image and packages in rsbox.lock").set_defaults(
        handler=_lock
    )
    p = esub.add_parser("gc", help="remove what no environment uses any more")
    p.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    p.set_defaults(handler=_gc)
    p = sub.add_parser("hook", help="print the shell hook that puts .rsbox/bin on PATH")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p.set_defaults(handler=_hook)
    esub.add_parser("shims", help="write .rsbox/bin/TOOL for [expose] bins").set_defaults(
        handler=_shims
    )
    p = esub.add_parser("exec", help="run CMD in the environment, without a terminal")
    # dest: `--root` before the command is rsbox's store option (ns.root)
    p.add_argument(
        "--root", dest="as_root", action="store_true", help="as root inside (needs /etc/subuid)"
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    p.set_defaults(handler=_env_exec)
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
    # Unlike direnv's new .envrc, the file init writes is trusted: every byte of it is
    # rsbox's template filled with this command's own arguments, so nothing from a clone
    # or an archive can be in it. The bytes written are what is trusted: if anything
    # replaced the file in between, the record does not match it. An edit needs `trust`.
    from rootless.env.trust import trust

    with ctx.store() as store, store.lock():
        trust(_store_root(ctx), str(path), template(name, ns.base).encode())
    print(f"wrote {path}")
    return 0


def _store_root(ctx: Context) -> str:
    from rootless.store import default_root

    return str(ctx.root or default_root(ctx.settings()))


def _trusted_config(ctx: Context, start: Path) -> EnvConfig:
    """The project's config, refused unless its user trusted it as it is now."""
    from rootless.env.config import load_config
    from rootless.env.trust import require_trusted

    cfg = load_config(start)
    require_trusted(_store_root(ctx), str(cfg.path))
    return cfg


def _build(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.steps import unchanged

    cfg = _trusted_config(ctx, Path.cwd())
    if cfg.ignored:  # devcontainer.json's keys rsbox does not use (rootless.env.devcontainer)
        print(f"rsbox: warning: {cfg.path}: ignored: {', '.join(cfg.ignored)}", file=sys.stderr)
    if not ns.no_cache and not ns.pull:
        with ctx.store() as store:
            same = unchanged(store, cfg)
        if same:
            print("unchanged since the build rsbox.lock records (--no-cache builds again)")
            print(f"{cfg.image} sha256:{same}", flush=True)
            return 0
    image = _build_recorded(ctx, cfg, no_cache=ns.no_cache, pull=ns.pull)
    print(f"{cfg.image} sha256:{image.id}", flush=True)
    return 0


def _built(ctx: Context, image: str) -> str:
    """The environment image's id, or "" when it is not built."""
    with ctx.store() as store:
        try:
            return store.resolve_image(image).id
        except ImageNotFound:
            return ""


def _build_recorded(
    ctx: Context, cfg: EnvConfig, *, no_cache: bool = False, pull: bool = False
) -> Image:
    """build_env, and note the image and project for `env gc` (rootless.env.gc)."""
    from rootless.env.gc import remember_build
    from rootless.env.steps import build_env

    with ctx.store() as store:
        image = build_env(store, cfg, no_cache=no_cache, pull=pull)
        remember_build(store, cfg, image.id)
    return image


def _need_image(ctx: Context, cfg: EnvConfig) -> str:
    from rootless.env.status import build_changed
    from rootless.env.steps import check_built

    image_id = _built(ctx, cfg.image)
    if cfg.auto_rebuild and build_changed(cfg, image_id):
        # The entry's stdout is the tool's (a shim's output may be piped): the build's
        # progress and its steps' output go to stderr, by fd, since the steps inherit it.
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            image_id = _build_recorded(ctx, cfg).id
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    check_built(cfg, image_id)
    return image_id


def _up(ctx: Context, cfg: EnvConfig, image_id: str) -> str:
    from rootless.env.container import home_source, run_key_file, up

    store_root = Path(_store_root(ctx))
    home = home_source(cfg, store_root)
    from rootless.env.gc import recorded, remember_project

    if not recorded(store_root, cfg):
        with ctx.store() as store:
            remember_project(store, cfg)
    key_file = run_key_file(store_root, cfg)
    from rootless.env.enter import input_hashes, record_warm
    from rootless.env.steps import read_lock

    bundles = tuple(read_lock(cfg).get("ca_bundles", ()))  # rootless.env.host_ca
    inputs = input_hashes(cfg)
    said = up(_cli(ctx), ctx.root_arg, cfg, home, image_id, key_file, bundles)
    record_warm(store_root, ctx.root_arg, cfg, inputs)  # for the lean entry
    return said


def _env_up(ns: argparse.Namespace, ctx: Context) -> int:
    cfg = _trusted_config(ctx, Path.cwd())
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
    from rootless.env.status import status

    cfg = load_config(Path.cwd())
    st = status(_store_root(ctx), ctx.root_arg, cfg, _built(ctx, cfg.image))
    print(st.text(), end="")
    return 0


def _trust(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config
    from rootless.env.trust import trust

    path = str(load_config(Path.cwd()).path)  # parsed: a broken file fails here
    with ctx.store() as store, store.lock():
        trust(_store_root(ctx), path)
    print(f"trusted {path}")
    return 0


def _untrust(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import find_project
    from rootless.env.trust import config_file, untrust

    path = config_file(str(find_project(Path.cwd())))  # not parsed: any file can be untrusted
    with ctx.store() as store, store.lock():
        gone = untrust(_store_root(ctx), path)
    print(f"untrusted {path}" if gone else f"{path} was not trusted")
    return 0


def _lock(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.lock import lock_packages

    cfg = _trusted_config(ctx, Path.cwd())
    image_id = _need_image(ctx, cfg)
    counts = lock_packages(_cli(ctx), cfg, image_id)
    listed = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no package lists"
    print(f"{cfg.root / 'rsbox.lock'}: {listed}")
    return 0


def _gc(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.gc import collect

    with ctx.store() as store:
        for line in collect(store, _cli(ctx), dry_run=ns.dry_run):
            print(line)
    return 0


def _hook(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.hook import hook_text

    print(hook_text(ns.shell, _store_root(ctx)), end="")
    return 0


def _shims(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.env.config import load_config
    from rootless.env.shims import write_shims

    cfg = load_config(Path.cwd())
    for path in write_shims(_cli(ctx), cfg):
        print(path)
    return 0


def _shell(ns: argparse.Namespace, ctx: Context) -> int:
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    return _enter(ctx, ns.project, cmd, sys.stdin.isatty() and sys.stdout.isatty())


def _env_exec(ns: argparse.Namespace, ctx: Context) -> int:
    """`rsbox env exec [--root] -- CMD`: `rsbox shell CMD` never on a pty (for scripts)."""
    from rootless.env.container import root_needs_a_range

    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    if not cmd:
        raise UsageError("env exec needs a command", hint="rsbox env exec [--root] -- CMD [ARG...]")
    if ns.as_root:
        root_needs_a_range()
    return _enter(ctx, None, cmd, False, root=ns.as_root)


def _enter(
    ctx: Context, project: Path | None, cmd: list[str], tty: bool, *, root: bool = False
) -> int:
    from rootless.env.container import exec_args

    cfg = _trusted_config(ctx, project or Path.cwd())
    image_id = _need_image(ctx, cfg)
    _up(ctx, cfg, image_id)
    argv = [*_cli(ctx), *exec_args(cfg, Path.cwd(), cmd, tty, root=root)]
    sys.stdout.flush()
    os.execv(argv[0], argv)  # entry is `rsbox exec`: its status, signals and streams
