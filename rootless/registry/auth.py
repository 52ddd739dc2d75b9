"""Credentials: where they are read from, and `rsbox login`/`logout`.

Read, first match wins (the order Podman uses, rsbox's own file first):

    $XDG_CONFIG_HOME/rsbox/auth.json          written by `rsbox login` (mode 0600)
    $XDG_RUNTIME_DIR/containers/auth.json     `podman login`
    $XDG_CONFIG_HOME/containers/auth.json
    ~/.docker/config.json                     `docker login` (plain ``auths`` entries;
                                              credential helpers are not run)

Every file has Docker's shape: ``{"auths": {"REGISTRY": {"auth": base64("user:pass")}}}``.
Keys may be a bare host[:port] or a URL (``https://index.docker.io/v1/``: Docker Hub).
rsbox writes its file with tmp + fsync + rename, mode 0600 from creation.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import AuthError
from .reference import DOCKER_HUB

_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def rsbox_auth_file() -> Path:
    return _config_home() / "rsbox" / "auth.json"


def auth_files() -> list[Path]:
    files = [rsbox_auth_file()]
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(runtime) / "containers" / "auth.json")
    files.append(_config_home() / "containers" / "auth.json")
    files.append(Path.home() / ".docker" / "config.json")
    return files


def _keys_for(registry: str) -> tuple[str, ...]:
    if registry == DOCKER_HUB:
        return _HUB_KEYS
    return (registry, f"https://{registry}", f"http://{registry}")


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthError(
            f"cannot read credentials from {path}: {exc}",
            hint=f"fix or remove {path}",
        ) from exc
    return doc if isinstance(doc, dict) else {}


def _decode(entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, password) if sep else None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"])
    return None


def find_credentials(registry: str, files: list[Path] | None = None) -> Credentials | None:
    """The first credentials any known file holds for ``registry``."""
    for path in files if files is not None else auth_files():
        auths = _read(path).get("auths")
        if not isinstance(auths, dict):
            continue
        for key in _keys_for(registry):
            creds = _decode(auths.get(key))
            if creds is not None:
                return creds
        for key, entry in auths.items():  # URLs with a path: https://host/v2/
            host = str(key).removeprefix("https://").removeprefix("http://").split("/")[0]
            if host == registry and (creds := _decode(entry)) is not None:
                return creds
    return None


def _write(path: Path, doc: dict[str, Any]) -> None:
    from rootless.lifecycle import atomic_write_bytes

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode(), mode=0o600)


def store_credentials(registry: str, creds: Credentials) -> Path:
    path = rsbox_auth_file()
    doc = _read(path)
    auths = doc.setdefault("auths", {})
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[registry] = {"auth": token}
    _write(path, doc)
    return path


def remove_credentials(registry: str) -> bool:
    """Forget rsbox's credentials for ``registry``; False if it had none."""
    path = rsbox_auth_file()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict) or registry not in auths:
        return False
    del auths[registry]
    _write(path, doc)
    return True
