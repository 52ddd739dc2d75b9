"""The container's environment: Docker's merge of the image's Env and `-e` (pure).

Its own module because `run` (rootless.runspec) and `exec` (rootless.launch.exec) both
merge, and `exec` must not import runspec (dataclasses, pathlib: ~15 ms of its CPU).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def merge_env(
    base: Sequence[str], overrides: Sequence[str], host_env: Mapping[str, str]
) -> list[str]:
    """Image Env, then -e in order. `-e KEY` (no '=') copies KEY from the host, as Docker
    does, and is dropped when the host does not have it."""
    merged: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        merged[key] = value
    for item in overrides:
        key, eq, value = item.partition("=")
        if eq:
            merged[key] = value
        elif key in host_env:
            merged[key] = host_env[key]
    return [f"{k}={v}" for k, v in merged.items()]
