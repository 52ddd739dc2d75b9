"""`rsbox env gc`: remove what environments left behind and nothing still in use.

What an environment leaves behind is only known if it was written down: every
`env build` and every entry adds the project's directory, and every build the image it
made, to `<store>/env-homes/NAME.json` (under the store's writer lock, written
atomically). A project is live while its directory holds its config (rsbox.toml or
.devcontainer/devcontainer.json). gc then removes:

- images recorded for an environment that no live project's rsbox.lock names, no
  container uses (the store decides under its lock) and no one named, except the
  environment's own tag `localhost/rsbox-env-NAME:latest` when no project of that name
  is left (an image someone else tagged stays);
- the containers `rsbox-env-NAME` of names none of whose projects is live;
- the homes `env-homes/NAME/` of those names (dotfiles and history made inside);
- trust records of configs that no longer exist (rootless.env.trust), and the lean
  entry's records (rootless.env.enter) of projects that are gone.

Nothing rsbox did not record is touched: a home or container from before the record
existed stays until its project's next build or entry records it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rootless.env.config import EnvConfig
from rootless.env.trust import config_file
from rootless.store import Store

_SUFFIX = ".json"


def _record_path(store_root: Path, name: str) -> Path:
    from rootless.env.container import env_dir

    return env_dir(store_root) / f"{name}{_SUFFIX}"


def _update(store: Store, name: str, project: str, image_id: str | None) -> None:
    from rootless.lifecycle import atomic_write_json, read_json

    path = _record_path(store.root, name)
    with store.lock():
        doc = read_json(path)
        projects: list[str] = list(doc.get("projects", []))
        images: list[str] = list(doc.get("images", []))
        if project in projects and (image_id is None or image_id in images):
            return
        if project not in projects:
            projects.append(project)
        if image_id is not None and image_id not in images:
            images.append(image_id)
        atomic_write_json(path, {"projects": projects, "images": images})


def remember_build(store: Store, cfg: EnvConfig, image_id: str) -> None:
    _update(store, cfg.name, str(cfg.root), image_id)


def recorded(store_root: Path, cfg: EnvConfig) -> bool:
    """Checked at every entry (one small read): is the project in its name's record?
    A moved project is recorded at its new path before gc could count it as gone."""
    from rootless.lifecycle import read_json

    return str(cfg.root) in read_json(_record_path(store_root, cfg.name)).get("projects", [])


def remember_project(store: Store, cfg: EnvConfig) -> None:
    _update(store, cfg.name, str(cfg.root), None)


def _live(project: str) -> bool:
    return os.path.isfile(config_file(project))


def _locked_image(project: str) -> str:
    from rootless.lifecycle import read_json

    image = read_json(Path(project) / "rsbox.lock").get("image", "")
    return image.removeprefix("sha256:") if isinstance(image, str) else ""


def collect(store: Store, cli: Sequence[str], *, dry_run: bool = False) -> list[str]:
    """Remove (or, `dry_run`, only name) what no live project uses; one line each."""
    from rootless.env.container import env_dir
    from rootless.env.trust import records
    from rootless.lifecycle import read_json
    from rootless.store import rmtree_forcefully

    verb = "would remove" if dry_run else "removed"
    homes = env_dir(store.root)
    docs: dict[str, dict[str, Any]] = {
        p.name[: -len(_SUFFIX)]: read_json(p) for p in sorted(homes.glob(f"*{_SUFFIX}"))
    }
    live = {name: [p for p in doc.get("projects", []) if _live(p)] for name, doc in docs.items()}
    dead = sorted(name for name, projects in live.items() if not projects)
    out: list[str] = []

    def gone(name: str) -> str:
        return f"(project gone: {', '.join(docs[name].get('projects', []))})"

    # Containers first: the image of a dead project's container is free after it.
    containers = {c.name for c in store.containers()}
    for name in dead:
        if f"rsbox-env-{name}" in containers:
            if not dry_run:
                _rm(cli, f"rsbox-env-{name}")
            out.append(f"{verb} container rsbox-env-{name} {gone(name)}")
    referenced = {_locked_image(p) for projects in live.values() for p in projects}
    doomed = {f"rsbox-env-{name}" for name in dead} if dry_run else set()  # as if gone
    in_use = {c.image_id for c in store.containers() if c.name not in doomed}
    present = {i.id: set(i.names) for i in store.images()}
    gone_images: dict[str, set[str]] = {}
    for name, doc in docs.items():
        own = {f"localhost/rsbox-env-{name}:latest"} if name in dead else set()
        for image_id in doc.get("images", []):
            if image_id not in present:  # removed by someone, or above for another name
                gone_images.setdefault(name, set()).add(image_id)
                continue
            if image_id in referenced or image_id in in_use or not present[image_id] <= own:
                continue  # used, or named by someone else than a gone project's tag
            if not dry_run and not _remove(store, image_id):
                continue  # taken by a container meanwhile
            gone_images.setdefault(name, set()).add(image_id)
            del present[image_id]
            out.append(f"{verb} image sha256:{image_id[:12]} (rsbox-env-{name})")
    for name in dead:
        home = homes / name
        if home.is_dir():
            if not dry_run:
                rmtree_forcefully(home)
            out.append(f"{verb} home {home} {gone(name)}")
    for config, paths in sorted(records(str(store.root)).items()):
        if not os.path.exists(config):
            if not dry_run:
                for path in paths:
                    os.unlink(path)
            out.append(f"{verb} trust of {config} (no such file)")
    for path, project in _warm_records(str(store.root)):
        if not _live(project):
            if not dry_run:
                os.unlink(path)
            out.append(f"{verb} entry record of {project} (project gone)")
    if not dry_run:
        _forget(store, dead, gone_images)
    return out


def _warm_records(store_root: str) -> list[tuple[str, str]]:
    """(record, project) of the lean entry's records (rootless.env.enter); a damaged
    record names no project and is left to `enter`, which rewrites it."""
    import marshal

    from rootless.env.enter import WARM_DIR

    d = os.path.join(store_root, WARM_DIR)
    out = []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        try:
            with open(os.path.join(d, name), "rb") as f:
                project = marshal.load(f)["project"]
        except (OSError, ValueError, EOFError, KeyError, TypeError):
            continue
        if isinstance(project, str):
            out.append((os.path.join(d, name), project))
    return out


def _forget(store: Store, dead: list[str], gone_images: dict[str, set[str]]) -> None:
    """Drop what was removed from the records, re-read under the lock (a build that
    ran meanwhile keeps what it added); a dead name's record and run key go."""
    from rootless.env.container import RUN_KEY_SUFFIX
    from rootless.lifecycle import atomic_write_json, read_json

    with store.lock():
        for name in set(dead) | set(gone_images):
            path = _record_path(store.root, name)
            doc = read_json(path)
            images = [i for i in doc.get("images", []) if i not in gone_images.get(name, ())]
            projects = list(doc.get("projects", []))
            if name in dead and not any(_live(p) for p in projects):
                path.unlink(missing_ok=True)
                (path.parent / f"{name}{RUN_KEY_SUFFIX}").unlink(missing_ok=True)
            else:
                atomic_write_json(path, {"projects": projects, "images": images})


def _remove(store: Store, image_id: str) -> bool:
    """Remove the image unless a container uses it (decided under the store's lock)."""
    from rootless.errors import ImageError

    try:
        store.remove_image(image_id)
    except ImageError:  # in use (ImageNotFound: gone meanwhile, which is as good)
        return not any(i.id == image_id for i in store.images())
    return True


def _rm(cli: Sequence[str], name: str) -> None:
    from rootless.errors import RsboxError

    res = subprocess.run([*cli, "rm", "-f", name], capture_output=True, text=True)
    if res.returncode != 0:
        raise RsboxError(
            f"rsbox rm -f {name} failed: {res.stderr.strip()}", hint="see `rsbox ps -a`"
        )
