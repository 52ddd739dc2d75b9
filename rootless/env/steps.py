"""`rsbox env build`: an EnvConfig's [env] base and [build] steps -> the image
`localhost/rsbox-env-NAME:latest`, built by the one builder (rootless.images.build).

The steps become Containerfile text, one instruction per entry so that each is a cached
layer of its own and an edit reruns it and what follows, in this fixed order: apt (one
`apt-get install` of the whole list), every `run` entry, the pip requirements file (COPY
then `PYTHON -m pip install -r`), the npm globals. The build context is a fresh directory
holding that text and the files the steps read (the requirements file), never the whole
project: a project's node_modules or data would otherwise be walked and hashed at every
build, and the cache keys on exactly the content the steps see. `containerfile = FILE`
builds that file with the project as its context instead.

rsbox.lock (JSON, beside rsbox.toml, written atomically) records what the build used:
the base as written, the image id it resolved to, its registry manifest digest when it
was pulled, and the environment's image id.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rootless.env.config import EnvConfig
from rootless.errors import ConfigError, RsboxError
from rootless.store import Image, Store

LOCKFILE = "rsbox.lock"
# dpkg fsyncs every file it unpacks; in a build step that buys nothing (a step that does
# not finish leaves no layer), and through the union's FUSE mount each fsync is a round
# trip to the server. Docker's Debian images turn it off the same way.
_UNSAFE_IO = "-o Dpkg::Options::=--force-unsafe-io"
REQUIREMENTS_TARGET = "/opt/rsbox-env/requirements.txt"


def containerfile_text(cfg: EnvConfig) -> str:
    """The Containerfile of the [build] steps (the base must be set)."""
    return "".join(line + "\n" for _, line in _instructions(cfg))


def _instructions(cfg: EnvConfig) -> list[tuple[str, str]]:
    """(the [build] key, its instruction), one a line: line N is the (N-1)th step."""
    assert cfg.base is not None
    lines = [("base", f"FROM {cfg.base}")]
    if cfg.apt:
        pkgs = " ".join(shlex.quote(p) for p in cfg.apt)
        lines.append((
            "apt",
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            f"--no-install-recommends {_UNSAFE_IO} {pkgs} && rm -rf /var/lib/apt/lists/*",
        ))  # fmt: skip
    lines += [("run", f"RUN {_one_line(cmd)}") for cmd in cfg.run]
    if cfg.pip is not None:
        lines.append(("pip", f"COPY requirements.txt {REQUIREMENTS_TARGET}"))
        python = shlex.quote(cfg.pip.python)
        lines.append(
            ("pip", f"RUN {python} -m pip install --no-cache-dir -r {REQUIREMENTS_TARGET}")
        )
    if cfg.npm_global:
        pkgs = " ".join(shlex.quote(p) for p in cfg.npm_global)
        lines.append(("npm", f"RUN npm install --global --no-audit --no-fund {pkgs}"))
    return lines


def step_failed(cfg: EnvConfig, line: int, status: int) -> RsboxError:
    """A generated step that exited non-zero -> one error naming its [build] key; a
    command that is not in the image (status 127, the shell's "not found") says what
    to add."""
    from rootless.errors import BuildError

    key = _instructions(cfg)[line - 1][0]
    where = f"{cfg.path}: [build] {key}"
    if status == 127 and key == "npm":
        return ConfigError(
            f"{where}: npm is not in the image",
            hint='add "nodejs" and "npm" to [build] apt (or install them in a run step)',
        )
    if status == 127 and key == "pip" and cfg.pip is not None:
        return ConfigError(
            f"{where}: {cfg.pip.python} is not in the image",
            hint='make it in a run step, e.g. run = ["python3 -m venv /opt/venv"]',
        )
    return BuildError(
        f"{where}: the step exited with {status}",
        hint="see its output above; fix it and run `rsbox env build` (earlier steps are cached)",
    )


def _one_line(cmd: str) -> str:
    # A Containerfile instruction ends at the newline; a multi-line `run` entry is one
    # shell script, so it goes through `sh -c` as a single quoted word.
    return cmd if "\n" not in cmd else f"/bin/sh -c {shlex.quote(cmd)}"


def build_key(cfg: EnvConfig) -> str:
    """What decides the image, as a sha256: the generated Containerfile and the
    requirements file, or the given Containerfile's text (its context's files are the
    builder's cache's business). Compared on entry with the key rsbox.lock holds."""
    import hashlib

    h = hashlib.sha256()
    try:
        if cfg.containerfile is not None:
            h.update(b"file\0" + cfg.containerfile.read_bytes())
            if cfg.build_args or cfg.target:  # devcontainer.json's build.args, build.target
                extra = json.dumps([sorted(cfg.build_args.items()), cfg.target])
                h.update(b"\0" + extra.encode())
        else:
            h.update(b"steps\0" + containerfile_text(cfg).encode())
            if cfg.pip is not None:
                h.update(b"\0" + (cfg.root / cfg.pip.requirements).read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"{cfg.path}: cannot read {exc.filename}: {exc.strerror}",
            hint="the files rsbox.toml names are relative to it",
        ) from exc
    return h.hexdigest()


def read_lock(cfg: EnvConfig) -> dict[str, Any]:
    from rootless.lifecycle import read_json

    return read_json(cfg.root / LOCKFILE)  # {} when there is none


def check_built(cfg: EnvConfig, image_id: str) -> None:
    """On entry: the image exists and was built from rsbox.toml as it is now."""
    from rootless.errors import ImageNotFound

    if not image_id:
        raise ImageNotFound(f"the environment {cfg.image} is not built", hint="rsbox env build")
    lock = read_lock(cfg)
    if lock.get("build_key") != build_key(cfg):
        raise ConfigError(
            f"{cfg.path} changed since the environment was built", hint="rsbox env build"
        )
    if lock.get("image") != f"sha256:{image_id}":
        # Names come from directory names by default: two projects called `app` share
        # the tag, and the other one's build must not be entered silently.
        raise ConfigError(
            f"{cfg.image} is not the image {cfg.root / LOCKFILE} records "
            "(another project of that name built it?)",
            hint="give this project its own [env] name, then rsbox env build",
        )


def unchanged(store: Store, cfg: EnvConfig) -> str:
    """The environment's image id when a build would run no step, else "": a [build]
    project whose key, base image and environment image are the ones rsbox.lock
    recorded. Checked before the builder is imported (2/3 of a no-op build's time). A
    Containerfile project always goes to the builder: the files it COPYs are not in
    the key."""
    from rootless.errors import ImageNotFound

    lock = read_lock(cfg)
    if cfg.containerfile is not None or cfg.base is None or lock.get("build_key") != build_key(cfg):
        return ""
    try:
        image, base = store.resolve_image(cfg.image), store.resolve_image(cfg.base)
    except ImageNotFound:
        return ""
    recorded_base = lock.get("base")
    if not isinstance(recorded_base, dict) or recorded_base.get("id") != f"sha256:{base.id}":
        return ""
    return image.id if lock.get("image") == f"sha256:{image.id}" else ""


def pin_base(store: Store, cfg: EnvConfig, *, pull: bool = False) -> None:
    """rsbox.lock pins the base: when the base as written is not in the store and the
    lock recorded a registry digest for it, pull that digest and give it the written
    name, so a clone of the project (or a machine after `rmi`) builds on the base the
    lock names, not on whatever the tag points at today. `pull` (`env build --pull`)
    asks the registry for the tag again instead; the lock then records its new digest.
    A base that is in the store is used as it is (Docker's and Podman's `FROM`)."""
    from rootless.errors import ImageError, ImageNotFound
    from rootless.image_commands import ensure_image

    if cfg.base is None or cfg.containerfile is not None:
        return
    if pull:
        ensure_image(store, cfg.base, "always")
        return
    try:
        store.resolve_image(cfg.base)
        return
    except ImageNotFound:
        pass
    recorded = read_lock(cfg).get("base")
    if not isinstance(recorded, dict) or recorded.get("ref") != cfg.base:
        return  # nothing pinned for this base: the builder pulls the tag
    digest = recorded.get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        return  # a base that was never pulled (built or loaded here): nothing to pin
    from rootless.image_commands import cmd_pull
    from rootless.registry.client import TransportOptions, insecure_from_env
    from rootless.registry.reference import parse_reference

    ref = parse_reference(cfg.base)
    try:
        image = cmd_pull(store, ref.at(digest), opts=TransportOptions(insecure=insecure_from_env()))
    except ImageError as exc:  # the registry's errors and "no such manifest"
        raise type(exc)(
            f"{cfg.path}: the base {cfg.base} pinned by {cfg.root / LOCKFILE} "
            f"({digest}): {exc.message}",
            hint="rsbox env build --pull takes what the tag names now and pins that",
        ) from None
    store.tag_image(image.id, ref.name)


def build_env(store: Store, cfg: EnvConfig, *, no_cache: bool = False, pull: bool = False) -> Image:
    from rootless.images.build import BuildOptions, StepFailed, build

    key = build_key(cfg)  # before the build: an edit during it is seen at the next entry
    pin_base(store, cfg, pull=pull)
    with tempfile.TemporaryDirectory(prefix="rsbox-env-") as tmp:
        if cfg.containerfile is not None:
            context, containerfile = cfg.context or cfg.root, cfg.containerfile
            if not containerfile.is_file():
                raise ConfigError(
                    f"{cfg.path}: [env] containerfile: no file {containerfile}",
                    hint="give a file of the project, relative to rsbox.toml",
                )
        else:
            context = Path(tmp)
            containerfile = context / "Containerfile"
            containerfile.write_text(containerfile_text(cfg))
            if cfg.pip is not None:
                source = cfg.root / cfg.pip.requirements
                try:
                    shutil.copyfile(source, context / "requirements.txt")
                    # COPY's cache key includes the mtime, and this copy is new at every
                    # build: a fixed one keys the pip step on the file's content alone.
                    os.utime(context / "requirements.txt", (0, 0))
                except OSError as exc:
                    raise ConfigError(
                        f"{cfg.path}: [build] pip: cannot read {source}: {exc.strerror}",
                        hint="requirements is a file of the project, relative to rsbox.toml",
                    ) from exc
        opts = BuildOptions(
            context=context,
            containerfile=containerfile,
            names=(cfg.image,),
            build_args=cfg.build_args,
            target=cfg.target,
            no_cache=no_cache,
            host_ca=cfg.host_ca,
            # An environment's image stays on this machine: zstd writes its layers several
            # times faster than gzip (Debian's nodejs + npm is a 400 MB layer).
            compression="zstd",
        )
        try:
            image = build(store, opts)
        except StepFailed as exc:
            if cfg.containerfile is not None:
                raise
            raise step_failed(cfg, exc.step_line, exc.status) from None
    write_lock(store, cfg, image, key)
    return image


def lock_doc(store: Store, cfg: EnvConfig, image: Image, key: str) -> dict[str, Any]:
    from rootless.env.host_ca import image_bundles

    doc: dict[str, Any] = {"image": f"sha256:{image.id}", "build_key": key}
    doc["ca_bundles"] = list(image_bundles(store, image))  # rootless.env.host_ca
    if cfg.base is not None:
        base = store.resolve_image(cfg.base)
        digest = _digest(store, cfg.base, base.id)
        doc["base"] = {"ref": cfg.base, "id": f"sha256:{base.id}", "digest": digest}
    return doc


def _digest(store: Store, base: str, image_id: str) -> str | None:
    """The registry digest rsbox.lock pins the base to: the one its repository served
    it under, else the manifest the image came from; None for a base never pulled."""
    from rootless.errors import UsageError
    from rootless.registry.reference import parse_reference

    try:
        ref = parse_reference(base)
    except UsageError:  # an id or a local name
        return None
    found = store.repo_digest(image_id, ref.repo)
    manifest = store.image_manifest_digest(image_id)
    return found or (f"sha256:{manifest}" if manifest else None)


def write_lock(store: Store, cfg: EnvConfig, image: Image, key: str) -> None:
    from rootless.lifecycle import atomic_write_json

    doc = lock_doc(store, cfg, image, key)
    old = read_lock(cfg)
    if "packages" in old and old.get("image") == doc["image"]:
        doc["packages"] = old["packages"]  # `env lock`'s lists still describe this image
    atomic_write_json(cfg.root / LOCKFILE, doc)
