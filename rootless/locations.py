"""Where rsbox's own files are, as plain strings: the store's root and rsbox's config
files. Only `os` is imported: this is on `exec`'s path, where pathlib alone costs ~5 ms
of CPU under load (rootless.commands.exec)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not even collections.abc at run time (rootless.record)
if TYPE_CHECKING:
    from collections.abc import Mapping

SYSTEM_CONFIG = "/etc/rsbox/config.toml"


def config_files(env: Mapping[str, str] = os.environ) -> list[str]:
    """rsbox's config files that exist, in reading order (rootless.config reads them):
    $RSBOX_CONFIG alone when set, else /etc/rsbox/config.toml then
    $XDG_CONFIG_HOME/rsbox/config.toml (~/.config/rsbox/config.toml)."""
    if explicit := env.get("RSBOX_CONFIG"):
        return [explicit] if os.path.isfile(explicit) else []
    home = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    user = os.path.join(home, "rsbox", "config.toml")
    return [p for p in (SYSTEM_CONFIG, user) if os.path.isfile(p)]


def root_dir(
    root: str | None = None, *, configured: str | None = None, read_config: bool = True
) -> str:
    """The store: --root (`root`), else $RSBOX_ROOT, else [storage] root of rsbox's config
    file (`configured`; read now if `read_config` and a config file exists), else
    $XDG_DATA_HOME/rsbox, else ~/.local/share/rsbox."""
    if root is not None:
        return root
    if env := os.environ.get("RSBOX_ROOT"):
        return env
    if configured is None and read_config and config_files():
        from rootless.config import load_settings

        found = load_settings().root
        configured = None if found is None else str(found)
    if configured is not None:
        return configured
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return os.path.join(xdg, "rsbox")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "rsbox")
