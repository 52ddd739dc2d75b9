"""Trust, as direnv has it: a project's config runs nothing until its user said so, and
an edit takes that back.

An `rsbox.toml` (or a project's `.devcontainer/devcontainer.json`) names commands that
run with the user's files (`on_create`, `[build] run`), host paths to bind (`mounts`,
`home = "host"`) and tools to put on PATH: a config that came with a clone or an
archive must not act by being entered. `rsbox env trust` records the config as it is;
build, `up`, `shell`, the shims and the shell hook refuse an unrecorded one.

The rule (one function, `record_for`; the lean shim entry, rootless.env.enter, calls it,
so only os here and the sha256 C module when hashing): a trusted config is a file `<store root>/env-trust/<K>`, where
K = sha256 hex of (the config's path + "\\n" + sha256 hex of its bytes), and the file
holds that path and a newline (for `untrust`, `status` and `gc`). Trusted is: that file
exists. An edit changes K, so the old record no longer matches: "edited". The path is
absolute with its directory's symlinks resolved (`canonical`), so a project reached
through a symlinked directory is the same project; the shell hook resolves it the same
way (`cd -P`). The config's own name is kept: a symlinked rsbox.toml is trusted where
it is linked, with the content it points at.
"""

from __future__ import annotations

import os

DIRNAME = "env-trust"


def canonical(config: str) -> str:
    """The config's path as trust records name it."""
    config = os.path.abspath(config)
    return os.path.join(os.path.realpath(os.path.dirname(config)), os.path.basename(config))


def record_path(store_root: str, config: str, data: bytes | None = None) -> str:
    """The record that says `config` is trusted with these bytes (`data`, else read
    now). Raises OSError when the config cannot be read."""
    real = canonical(config)
    if data is None:
        with open(real, "rb") as f:
            data = f.read()
    return record_for(store_root, real, sha256_hex(data))


def record_for(store_root: str, real_config: str, content_sha: str) -> str:
    """The record for the config at `real_config` (`canonical`) whose bytes hash to
    `content_sha`: the one rule, here and in the lean entry."""
    key = sha256_hex(f"{real_config}\n{content_sha}".encode())
    return os.path.join(store_root, DIRNAME, key)


def sha256_hex(data: bytes) -> str:
    try:  # the C module alone; hashlib loads OpenSSL first (~3 ms under load)
        from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11
    except ImportError:
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def is_trusted(store_root: str, config: str) -> bool:
    try:
        return os.path.exists(record_path(store_root, config))
    except OSError:
        return False


def records(store_root: str) -> dict[str, list[str]]:
    """config path -> the record files that name it (one per trusted content)."""
    d = os.path.join(store_root, DIRNAME)
    out: dict[str, list[str]] = {}
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in names:
        if name.startswith("."):  # atomic writes' temporary files
            continue
        path = os.path.join(d, name)
        try:
            with open(path, encoding="utf-8") as f:
                config = f.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        out.setdefault(config, []).append(path)
    return out


def state(store_root: str, config: str) -> str:
    """trusted, edited (trusted once, changed since) or untrusted."""
    if is_trusted(store_root, config):
        return "trusted"
    return "edited" if canonical(config) in records(store_root) else "untrusted"


# --- the commands' side (imports here are paid by `trust`/`untrust`, not by the shims) ---


def trust(store_root: str, config: str, data: bytes | None = None) -> str:
    """Record `config` as trusted with `data` (the bytes the caller vouches for, e.g.
    the ones `env init` just wrote; else read now) and forget the records of its earlier
    contents. The caller holds the store's writer lock (concurrent trusts of one
    config leave one record). Returns the record's path."""
    from pathlib import Path

    from rootless.lifecycle import atomic_write_text

    real = canonical(config)
    record = record_path(store_root, real, data)
    os.makedirs(os.path.dirname(record), mode=0o700, exist_ok=True)
    for old in records(store_root).get(real, []):
        if old != record:
            os.unlink(old)
    atomic_write_text(Path(record), real + "\n")
    return record


def untrust(store_root: str, config: str) -> int:
    """Remove every record of `config` (any content); how many there were. The caller
    holds the store's writer lock."""
    gone = records(store_root).get(canonical(config), [])
    for path in gone:
        os.unlink(path)
    return len(gone)


def require_trusted(store_root: str, config: str) -> None:
    """Before a build, an entry, a shim or the hook acts on `config`."""
    from rootless.errors import ConfigError

    now = state(store_root, config)
    if now == "trusted":
        return
    name = f"{os.path.basename(config)} at {os.path.dirname(config)}"
    if now == "edited":
        raise ConfigError(
            f"{name} is not trusted: it changed since it was trusted",
            hint="review it, then rsbox env trust",
        )
    raise ConfigError(f"{name} is not trusted", hint="rsbox env trust")


def config_file(root: str) -> str:
    """The project directory `root`'s config: its rsbox.toml, else its
    .devcontainer/devcontainer.json (the one rule: rootless.env.config.load_config
    reads this file, and the shell hook looks for them in this order)."""
    toml = os.path.join(root, "rsbox.toml")
    dev = os.path.join(root, ".devcontainer", "devcontainer.json")
    return dev if not os.path.isfile(toml) and os.path.isfile(dev) else toml
