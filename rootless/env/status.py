"""`rsbox env status`: where a project's environment stands, as typed values.

- image: the environment's image id, "" when not built;
- container: absent, stopped or running;
- trust: trusted, untrusted or edited (rootless.env.trust);
- drift: what changed since: "build" (the [build] steps or a file they read differ
  from what rsbox.lock says the image was built from: `rsbox env build`, or the next
  entry rebuilds with `auto_rebuild`), "run" (the container was made from other [run]
  settings or another image: the next entry recreates it and keeps the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rootless.env.config import EnvConfig


def build_changed(cfg: EnvConfig, image_id: str) -> bool:
    """rootless.env.steps.check_built's verdict as a yes or no (one rule for both): the
    image is missing, rsbox.lock's key is not the config's now, or the lock names
    another image."""
    from rootless.env.steps import check_built
    from rootless.errors import ConfigError, ImageNotFound

    try:
        check_built(cfg, image_id)
    except (ConfigError, ImageNotFound):
        return True
    return False


def run_changed(store_root: Path, cfg: EnvConfig, image_id: str) -> bool:
    """The container's run key (rootless.env.container.up) is not the one an entry
    would make now. Only meaningful when the container exists."""
    from rootless.env.container import home_source, run_key, run_key_file

    try:
        made = run_key_file(store_root, cfg).read_text()
    except OSError:
        return True
    return made != run_key(cfg, home_source(cfg, store_root), image_id)


@dataclass(frozen=True)
class Status:
    cfg: EnvConfig
    config: str  # the file trust is about
    image: str  # hex id, "" when not built
    container: str  # absent | stopped | running
    trust: str  # trusted | untrusted | edited
    drift: tuple[str, ...]  # of "build", "run"; empty: none

    def text(self) -> str:
        image = f"sha256:{self.image[:12]}" if self.image else "(not built)"
        hints = {
            "trusted": "",
            "untrusted": " (nothing builds or runs until: rsbox env trust)",
            "edited": " (changed since it was trusted; review it, then: rsbox env trust)",
        }
        drift = {
            "build": f"build ({self.cfg.path.name} changed since the environment was built: "
            "rsbox env build)",
            "run": "run ([run] or the image changed: the next entry recreates the container)",
        }
        return (
            f"project:   {self.cfg.root}\n"
            f"config:    {self.config}\n"
            f"trust:     {self.trust}{hints[self.trust]}\n"
            f"image:     {self.cfg.image} {image}\n"
            f"container: {self.cfg.container} {self.container}\n"
            f"drift:     {'; '.join(drift[d] for d in self.drift) or 'none'}\n"
        )


def status(store_root: str, root_arg: str | None, cfg: EnvConfig, image_id: str) -> Status:
    from rootless.env.container import state
    from rootless.env.trust import state as trust_state

    config = str(cfg.path)
    container = state(root_arg, cfg)
    drift = []
    if image_id and build_changed(cfg, image_id):
        drift.append("build")
    if container != "absent" and image_id and run_changed(Path(store_root), cfg, image_id):
        drift.append("run")
    return Status(cfg, config, image_id, container, trust_state(store_root, config), tuple(drift))
