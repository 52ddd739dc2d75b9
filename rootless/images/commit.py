"""`rsbox commit`: a container's writable layer becomes an image; and `rsbox history`.

The new image is the container's image plus one layer: the upper as an OCI layer tarball
(fs.changes walks it, rootless.images.layer_tar writes it). It enters the store the way
a pulled image does: the blob through `Store.add_layer` (verified, extracted into
layers/<diff_id>, under the store's per-blob lock; a layer it created is taken back if
the image cannot be added), then the config through `Store.add_image` (one writer
transaction, names moved as `docker tag` moves them). So a committed image is tagged,
pushed, saved and run like any other.

The config is the base image's, with:

- `rootfs.diff_ids` + the new layer, and a `history` entry for it. History keeps one
  non-empty entry per layer (builders such as buildah refuse a base where it does not):
  a base with fewer gets entries without `created_by` for the layers it lacks. A
  container without changes adds no layer, only an entry with `empty_layer` (what
  Docker does). `created_by` is `rsbox commit`, followed by the `--change` values;
  `-m` is the entry's `comment` and `--author` its `author` (Docker's COMMENT and
  AUTHOR), also the config's `author`.
- `--change` (`-c`) values: Containerfile instructions, parsed by
  rootless.images.containerfile.parse_instruction, applied in order as Docker's
  `commit --change` applies them: CMD, ENTRYPOINT (an ENTRYPOINT clears an inherited
  CMD unless a CMD comes in the same commit), ENV, WORKDIR (relative to the previous
  one), USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL. Words are expanded against the
  image's environment as the build does (`ENV PATH=$PATH:/opt/bin`). The shell form of
  CMD and ENTRYPOINT runs under the image's `Shell`, else `/bin/sh -c`.
- `created`: now, or with a timestamp (`--timestamp`, else SOURCE_DATE_EPOCH) that
  time, which also clamps every mtime in the layer: the same changes then give the same
  layer and the same image id.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rootless.errors import BuildError, UsageError
from rootless.images.containerfile import parse_instruction
from rootless.images.instructions import (
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Instruction,
    Label,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from rootless.images.layer_tar import check_compression, write_layer
from rootless.images.shellwords import expand, expand_words
from rootless.store import Container, Image, Store, rmtree_forcefully

SUPPORTED = (Cmd, Entrypoint, Env, Expose, Label, StopSignal, User, Volume, Workdir)
DEFAULT_SHELL = ("/bin/sh", "-c")
EPOCH_ENV = "SOURCE_DATE_EPOCH"


@dataclass(frozen=True)
class CommitOptions:
    changes: tuple[str, ...] = ()  # --change values, as given
    message: str = ""
    author: str = ""
    compression: str = "gzip"
    timestamp: int | None = None  # seconds since the epoch: created, and the mtime clamp
    pause: bool = True


def timestamp_option(value: str | None, env: Mapping[str, str]) -> int | None:
    """`--timestamp` if given, else SOURCE_DATE_EPOCH if set: whole seconds."""
    text, where = (value, "--timestamp") if value is not None else (env.get(EPOCH_ENV), EPOCH_ENV)
    if text is None or text == "":
        return None
    try:
        seconds = int(text)
    except ValueError:
        raise UsageError(
            f"{where} {text!r} is not a number of seconds",
            hint="give seconds since 1970-01-01 UTC, such as $(date +%s)",
        ) from None
    if seconds < 0:
        raise UsageError(f"{where} {text!r} is before 1970", hint="give a positive number")
    return seconds


def parse_changes(texts: Sequence[str]) -> list[Instruction]:
    out: list[Instruction] = []
    for text in texts:
        ins = parse_instruction(text)
        if not isinstance(ins, SUPPORTED):
            raise BuildError(
                f"commit --change does not take {ins.keyword}: {text!r}",
                hint="use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR",
            )
        out.append(ins)
    return out


def _env_map(env: Sequence[str]) -> dict[str, str]:
    return dict(e.partition("=")[::2] for e in env)


def _command(args: tuple[str, ...], exec_form: bool, shell: list[str]) -> list[str]:
    return list(args) if exec_form else [*shell, *args]


def apply_changes(
    config: Mapping[str, Any], changes: Sequence[Instruction], *, expanded: bool = False
) -> dict[str, Any]:
    """The image config's `config` object after `changes` (see the module docstring).
    With `expanded` the words are taken as they are: `rsbox build` expanded them once
    already (rootless.images.evaluate), and expanding twice would change ``$$`` or a
    quoted ``$``."""
    expand_words_: Callable[[str, Mapping[str, str]], list[str]]
    expand_: Callable[[str, Mapping[str, str]], str]
    if expanded:
        expand_words_ = _as_words
        expand_ = _as_is
    else:
        expand_words_ = expand_words
        expand_ = expand
    cfg: dict[str, Any] = json.loads(json.dumps(dict(config)))  # a deep copy
    shell = list(cfg.get("Shell") or DEFAULT_SHELL)
    cmd_set = False
    for ins in changes:
        env = _env_map(cfg.get("Env") or [])
        if isinstance(ins, Cmd):
            cfg["Cmd"] = _command(ins.args, ins.exec_form, shell)
            cmd_set = True
        elif isinstance(ins, Entrypoint):
            cfg["Entrypoint"] = _command(ins.args, ins.exec_form, shell) or None
            if not cmd_set:
                cfg["Cmd"] = None
        elif isinstance(ins, Env):
            pairs = [(expand_(k, env), expand_(v, env)) for k, v in ins.pairs]
            merged = _env_map(cfg.get("Env") or [])
            merged.update(pairs)
            cfg["Env"] = [f"{k}={v}" for k, v in merged.items()]
        elif isinstance(ins, Workdir):
            path = expand_(ins.path, env)
            cfg["WorkingDir"] = posixpath.normpath(
                posixpath.join("/", cfg.get("WorkingDir") or "/", path)
            )
        elif isinstance(ins, User):
            cfg["User"] = expand_(ins.user, env)
        elif isinstance(ins, Label):
            labels = dict(cfg.get("Labels") or {})
            labels.update((expand_(k, env), expand_(v, env)) for k, v in ins.pairs)
            cfg["Labels"] = labels
        elif isinstance(ins, Expose):
            ports = dict(cfg.get("ExposedPorts") or {})
            for word in ins.ports:
                for port in expand_words_(word, env):
                    ports[port if "/" in port else f"{port}/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif isinstance(ins, Volume):
            volumes = dict(cfg.get("Volumes") or {})
            volumes.update((expand_(p, env), {}) for p in ins.paths)
            cfg["Volumes"] = volumes
        elif isinstance(ins, StopSignal):
            cfg["StopSignal"] = expand_(ins.signal, env)
    return {k: v for k, v in cfg.items() if v is not None}


def _as_is(text: str, env: Mapping[str, str]) -> str:
    return text


def _as_words(text: str, env: Mapping[str, str]) -> list[str]:
    return [text]


def rfc3339(seconds: int | None) -> str:
    if seconds is None:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def consistent_history(doc: Mapping[str, Any], layers: int) -> list[dict[str, Any]]:
    """The config's history with one non-empty entry per layer (padded at the start)."""
    history = [dict(h) for h in doc.get("history") or () if isinstance(h, dict)]
    missing = layers - sum(1 for h in history if not h.get("empty_layer"))
    created = str(doc.get("created") or "")
    pad = [{"created": created} if created else {} for _ in range(max(0, missing))]
    return pad + history


def new_config(
    base: Mapping[str, Any],
    base_layers: int,
    diff_id: str | None,
    changes: Sequence[Instruction],
    opts: CommitOptions,
) -> bytes:
    doc: dict[str, Any] = json.loads(json.dumps(dict(base)))
    for legacy in ("container", "container_config", "docker_version"):
        doc.pop(legacy, None)  # about the container that built the base, not this one
    created = rfc3339(opts.timestamp)
    doc["created"] = created
    if opts.author:
        doc["author"] = opts.author
    doc["config"] = apply_changes(doc.get("config") or {}, changes)
    rootfs = dict(doc.get("rootfs") or {"type": "layers"})
    diff_ids = list(rootfs.get("diff_ids") or [])
    if diff_id is not None:
        diff_ids.append(f"sha256:{diff_id}")
    rootfs["type"], rootfs["diff_ids"] = "layers", diff_ids
    doc["rootfs"] = rootfs
    entry: dict[str, Any] = {
        "created": created,
        "created_by": " ".join(
            ["rsbox commit", *(f"--change {shlex.quote(c)}" for c in opts.changes)]
        ),
    }
    if opts.author:
        entry["author"] = opts.author
    if opts.message:
        entry["comment"] = opts.message
    if diff_id is None:
        entry["empty_layer"] = True
    doc["history"] = [*consistent_history(base, base_layers), entry]
    return json.dumps(doc, separators=(",", ":")).encode()


def commit(store: Store, c: Container, names: Sequence[str], opts: CommitOptions) -> Image:
    """Make the image (see the module docstring); `names` are normalised."""
    check_compression(opts.compression)
    changes = parse_changes(opts.changes)
    base = store.resolve_image(c.image_id)
    adopted = store.adopt_layers(base)  # an image of a read-only store: see there
    base_doc = json.loads(store.image_config_bytes(base.id))
    base_layers = len(store.image_layers(base.id))
    diff_id, created = store_upper_layer(
        store, c, compression=opts.compression, clamp=opts.timestamp, pause=opts.pause
    )
    created = [*adopted, *created]
    try:
        config = new_config(base_doc, base_layers, diff_id, changes, opts)
        diff_ids = [info.diff_id for info in store.image_layers(base.id)]
        if diff_id is not None:
            diff_ids.append(diff_id)
        return store.add_image(config, diff_ids, names)
    except BaseException:
        store.discard_layers(created)
        raise


def store_upper_layer(
    store: Store, c: Container, *, compression: str, clamp: int | None, pause: bool = False
) -> tuple[str | None, list[str]]:
    """The container's changes as a layer in the store: (its diff_id, or None when there
    is nothing to commit; the diff_ids this call put into the store, for
    `Store.discard_layers` if the image that should use them cannot be added)."""
    from fs.changes import upper_changes
    from rootless.snapshot import container_stack, mount_points, settled

    work = store.mkdtemp("commit-")
    try:
        blob = work / "layer"
        written = None
        with settled(c, pause=pause):
            found = upper_changes(container_stack(store, c), mount_points(c))
            if found:
                with open(blob, "wb") as f:
                    try:
                        written = write_layer(found.items, f, compression=compression, clamp=clamp)
                    except OSError as exc:
                        raise _read_error(c, exc) from exc
                    f.flush()
                    os.fsync(f.fileno())
        created: list[str] = []
        if written is None:
            return None, created
        store.add_layer(blob, digest=written.digest, diff_id=written.diff_id, created=created)
        return written.diff_id, created
    finally:
        rmtree_forcefully(work)


def _read_error(c: Container, exc: OSError) -> Exception:
    from rootless.errors import ContainerError, StoreError

    if exc.filename and str(exc.filename).startswith(str(c.dir)):
        return ContainerError(
            f"cannot read {exc.filename}: {exc.strerror or exc}",
            hint="a file changed while it was read; stop the container, or try again",
        )
    return StoreError(
        f"cannot write the layer: {exc.strerror or exc}",
        hint="check the free space of the store (rsbox system df)",
    )


# --- history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    image_id: str | None  # hex id of the local image this entry is the top of, if any
    created: str
    created_by: str
    size: int
    comment: str


def _prefix_key(history: Sequence[Any], diff_ids: Sequence[str]) -> str:
    return json.dumps([list(history), list(diff_ids)], sort_keys=True)


def history_rows(store: Store, image: Image) -> list[HistoryRow]:
    """`docker history`: newest first. An entry gets an image id where a local image's
    history and layers are exactly those up to it (the committed or built image's base,
    for instance), `<missing>` otherwise, as Docker shows layers of pulled images."""
    doc = json.loads(store.image_config_bytes(image.id))
    layers = store.image_layers(image.id)
    history = consistent_history(doc, len(layers))
    known: dict[str, str] = {}
    for other in store.images():
        with contextlib.suppress(Exception):
            odoc = json.loads(store.image_config_bytes(other.id))
            ids = [i.diff_id for i in store.image_layers(other.id)]
            known.setdefault(_prefix_key(consistent_history(odoc, len(ids)), ids), other.id)
    rows = []
    n = 0  # layers seen so far
    for i, h in enumerate(history):
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty:
            size = layers[n].size if n < len(layers) else 0
            n += 1
        key = _prefix_key(history[: i + 1], [x.diff_id for x in layers[:n]])
        image_id = image.id if i == len(history) - 1 else known.get(key)
        rows.append(
            HistoryRow(
                image_id=image_id,
                created=str(h.get("created") or ""),
                created_by=str(h.get("created_by") or ""),
                size=size,
                comment=str(h.get("comment") or ""),
            )
        )
    rows.reverse()
    return rows


def intermediate_ids(store: Store) -> set[str]:
    """Untagged images another image is built on (its history and layers continue
    them): the states a build leaves behind, and untagged bases of later commits.
    `rsbox images` hides them unless -a, as `docker images` and `podman images` do."""
    prefixes: set[str] = set()
    own: dict[str, str] = {}
    for image in store.images():
        with contextlib.suppress(Exception):
            doc = json.loads(store.image_config_bytes(image.id))
            ids = [i.diff_id for i in store.image_layers(image.id)]
            history = consistent_history(doc, len(ids))
            n = 0
            for i in range(len(history) + 1):  # every prefix, the empty one included
                n += 1 if i and not history[i - 1].get("empty_layer") else 0
                key = _prefix_key(history[:i], ids[:n])
                if i < len(history):
                    prefixes.add(key)
                elif not image.names:
                    own[image.id] = key
    return {image_id for image_id, key in own.items() if key in prefixes}
