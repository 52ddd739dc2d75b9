"""`rsbox build`: a Containerfile's stages, run step by step into images in the store.

The file is parsed once (rootless.images.containerfile) and each stage is walked with its
words expanded (rootless.images.evaluate). What a step does:

- FROM: the base image (pulled by --pull's policy), ``scratch`` (no layers), or the
  result of an earlier stage. ONBUILD triggers of a base image run first, in order, and
  the new image does not inherit them (Docker's rule).
- RUN: a container made from the current layers, run by the launcher exactly as
  `rsbox run` runs one (rootless.launch.gather.run_step: the sealed process tree, the
  default capabilities and the seccomp profile `run_seccomp` picks), with the stage's
  environment (ENV and ARG values, proxy build args), WORKDIR, USER and SHELL; the host's
  network unless --network none (what `podman build` does), --volume binds, and with
  --host-ca the host's CA bundle (`host_ca_binding`). A non-zero status fails the build.
- COPY/ADD: the sources become tar payloads (rootless.images.build_copy) written into
  the writable layer of a container that never starts.
- Either way the writable layer becomes one layer (rootless.images.commit's
  `store_upper_layer`: OCI whiteouts, owners from the union's metadata) and the state an
  untagged image in the store, whose id the cache remembers (rootless.images.build_cache).
- Everything else changes the image config only (and the history, as an empty layer).

The final stage (or --target) is committed once more only if metadata followed its last
file step; -t names go to it as `rsbox tag` would give them. Stages the target does not
need are not built (BuildKit's behaviour).

Not supported, each failing in one line that names the instruction and line (exit 125):
RUN --mount, RUN --security=insecure, COPY --parents/--exclude, remote ADD sources, and
a --platform other than the host's (no emulation).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rootless.errors import BuildError, RsboxError, UsageError
from rootless.idmap import IdMap
from rootless.images import build_cache
from rootless.images.build_copy import (
    ContextReader,
    Owner,
    Payload,
    digest,
    mkdirs,
    parse_chown,
    payloads,
    place,
)
from rootless.images.commit import apply_changes, consistent_history, rfc3339, store_upper_layer
from rootless.images.containerfile import parse, parse_instruction, shell_command
from rootless.images.evaluate import (
    PROXY_ARGS,
    Step,
    evaluate,
    global_scope,
    host_platform,
    parse_platform,
    platform_args,
    proxy_env,
    resolve_from,
)
from rootless.images.instructions import (
    Add,
    Arg,
    Cmd,
    Containerfile,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from rootless.images.syntax import heredoc_opener
from rootless.runspec import DEFAULT_PATH
from rootless.runspec import Volume as Bind
from rootless.store import Container, Image, Store, rmtree_forcefully

#: Where --host-ca puts the host's bundle in a RUN step, and the variables that name it.
HOST_CA_SOURCE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_CA_TARGET = "/run/rsbox/host-ca-certificates.crt"
HOST_CA_ENV = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
)
_DEFAULT_SHELL = ("/bin/sh", "-c")
SCRIPT_TARGET = "/run/rsbox/heredoc-script"


def _script(ins: Run) -> str | None:
    """The body of ``RUN <<EOF`` (the heredoc alone) when it starts with ``#!``."""
    if ins.exec_form or len(ins.heredocs) != 1 or heredoc_opener(ins.args[0].strip()) is None:
        return None
    body = ins.heredocs[0].body
    return body if body.startswith("#!") else None


class StepFailed(BuildError):
    """A RUN step's command exited non-zero; the line and status are kept so that a
    caller that generated the Containerfile (rootless.env.steps) can name its own step."""

    def __init__(self, line: int, status: int) -> None:
        super().__init__(
            f"line {line}: RUN: the command returned a non-zero code: {status}",
            hint="see its output above; fix the Containerfile and build again "
            "(the steps before it are cached)",
        )
        self.step_line = line
        self.status = status


@dataclass(frozen=True)
class BuildOptions:
    context: Path
    containerfile: Path
    names: tuple[str, ...] = ()  # normalised -t names
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: str = "missing"
    platform: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    network: str = "host"
    volumes: tuple[Bind, ...] = ()
    host_ca: bool = False
    quiet: bool = False
    userns: str = "auto"
    compression: str = "gzip"
    timestamp: int | None = None


def run_seccomp(idmap: IdMap) -> str:
    """The one place that decides which seccomp profile a RUN step runs under.

    With a full id map (a subordinate range) a step runs under the default profile, like
    any container: chown and set*id work for real on the mapped ids. With the single-id
    map the kernel refuses every id but 0 (EINVAL), which breaks package managers and
    chown: a step runs under `fakeroot`, whose chown and set*id calls P1 answers there,
    emulating the ids and keeping the owners in the union (rootless.launch.fakeroot), and
    the image's USER is taken on through them (rootless.launch.become)."""
    return "default" if idmap.full else "fakeroot"


def host_ca_binding(enabled: bool) -> tuple[tuple[Bind, ...], dict[str, str]]:
    """--host-ca: the host's CA bundle, read-only, at HOST_CA_TARGET, and the usual
    variables pointing at it (OpenSSL, requests/pip, curl, git, node). A file of its
    own rather than over the image's /etc/ssl/certs/ca-certificates.crt: a step that
    (re)installs ca-certificates renames a new bundle over that path, which a bind mount
    there would refuse (EBUSY). The bind's placeholder never reaches a layer
    (rootless.snapshot.mount_points), and the variables are the step's, never the
    image's."""
    if not enabled:
        return (), {}
    if not HOST_CA_SOURCE.is_file():
        raise UsageError(
            f"--host-ca: the host has no CA bundle at {HOST_CA_SOURCE}",
            hint="install ca-certificates on the host, or drop --host-ca",
        )
    source = Path(os.path.realpath(HOST_CA_SOURCE))
    return (Bind(source, HOST_CA_TARGET, True),), dict.fromkeys(HOST_CA_ENV, HOST_CA_TARGET)


@dataclass
class State:
    """A stage between steps: the image whose layers it has, the config document it
    will have, its cache key, and the environment the next step sees."""

    image: Image
    doc: dict[str, Any]
    key: str
    env: dict[str, str]
    pending: bool = False  # the config changed since `image` was made
    cmd_set: bool = False  # a CMD of this stage (ENTRYPOINT then keeps it: BuildKit)

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.doc.setdefault("config", {})
        assert isinstance(cfg, dict)
        return cfg


@dataclass
class _Progress:
    total: int
    quiet: bool
    n: int = 0

    def step(self, text: str) -> None:
        self.n += 1
        self.say(f"STEP {self.n}/{self.total}: {text}")

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


def _env_list(env: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def _env_map(items: Sequence[str]) -> dict[str, str]:
    return dict(e.partition("=")[::2] for e in items)


class Builder:
    def __init__(self, store: Store, opts: BuildOptions, idmap: IdMap) -> None:
        self.store = store
        self.opts = opts
        self.idmap = idmap
        self.results: dict[int, State] = {}
        self.created = rfc3339(opts.timestamp)

    # -- the file ----------------------------------------------------------------------

    def build(self) -> Image:
        text = _read(self.opts.containerfile)
        cf = parse(text)
        target = self._target_stage(cf)
        plat = host_platform()
        if self.opts.platform:
            asked = parse_platform(self.opts.platform)
            if (asked.os, asked.arch) != (plat.os, plat.arch):
                raise UsageError(
                    f"--platform {asked} is not this machine's ({plat})",
                    hint="rsbox builds for the host's platform only (no emulation)",
                )
        scope = global_scope(cf, self.opts.build_args, platform_args(plat))
        needed = self._needed(cf, target)
        from rootless.images.dockerignore import load

        rules = load(self.opts.context, self.opts.containerfile)
        self.context = ContextReader(self.opts.context, list(rules.walk(self.opts.context)))
        stages = [s for s in cf.stages if s.index in needed]
        progress = _Progress(
            total=sum(1 + len(s.instructions) for s in stages), quiet=self.opts.quiet
        )
        final: State | None = None
        for stage in stages:
            final = self._stage(cf, stage, scope, progress)
            self.results[stage.index] = final
        assert final is not None
        return self._finish(final, progress)

    def _target_stage(self, cf: Containerfile) -> Stage:
        if self.opts.target is None:
            return cf.stages[-1]
        stage = cf.find_stage(self.opts.target)
        if stage is None:
            names = ", ".join(s.name for s in cf.stages if s.name) or "none"
            raise UsageError(
                f"--target {self.opts.target}: no stage of that name",
                hint=f"the stages named in {self.opts.containerfile.name}: {names}",
            )
        return stage

    def _needed(self, cf: Containerfile, target: Stage) -> set[int]:
        needed: set[int] = set()
        todo = [target]
        while todo:
            s = todo.pop()
            if s.index in needed:
                continue
            needed.add(s.index)
            deps = [cf.find_stage(s.base)] + [
                cf.find_stage(i.from_, index_ok=True)
                for i in s.instructions
                if isinstance(i, Copy) and i.from_ is not None
            ]
            todo += [d for d in deps if d is not None and d.index < s.index]
        return needed

    # -- one stage ---------------------------------------------------------------------

    def _stage(
        self,
        cf: Containerfile,
        stage: Stage,
        scope: Mapping[str, str],
        progress: _Progress,
    ) -> State:
        stage = resolve_from(cf, stage, scope)
        progress.step(f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else ""))
        state = self._base(cf, stage)
        triggers = self._onbuild_triggers(state)
        if triggers:
            stage = replace(stage, instructions=(*triggers, *stage.instructions))
            progress.total += len(triggers)
        for step in evaluate(
            cf, stage, build_args=self.opts.build_args, scope=scope, base_env=state.env
        ):
            ins = step.instruction
            progress.step(ins.source)
            self._step(cf, state, step)
        return state

    def _base(self, cf: Containerfile, stage: Stage) -> State:
        earlier = cf.find_stage(stage.base)
        if earlier is not None and earlier.index < stage.index:
            prev = self.results[earlier.index]
            image = self._materialise(prev)
            return State(image, json.loads(json.dumps(prev.doc)), prev.key, dict(prev.env))
        if stage.base.lower() == "scratch":
            plat = host_platform()
            doc: dict[str, Any] = {
                "architecture": plat.arch,
                "os": plat.os,
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            if plat.variant:
                doc["variant"] = plat.variant
            image = self.store.add_image(json.dumps(doc).encode(), [], [])
            return State(image, doc, build_cache.chain("scratch"), {})
        image = self._image(stage.base)
        doc = json.loads(self.store.image_config_bytes(image.id))
        for legacy in ("container", "container_config", "docker_version"):
            doc.pop(legacy, None)
        doc["history"] = consistent_history(doc, len(image.layers))
        env = _env_map(doc.get("config", {}).get("Env") or [])
        return State(image, doc, build_cache.chain("image", image.id), env)

    def _image(self, ref: str) -> Image:
        from rootless.image_commands import ensure_image

        ensure_image(self.store, ref, self.opts.pull)
        return self.store.resolve_image(ref)

    def _onbuild_triggers(self, state: State) -> list[Instruction]:
        exprs = state.config.pop("OnBuild", None) or []
        out: list[Instruction] = []
        for expr in exprs:
            try:
                out.append(parse_instruction(str(expr)))
            except BuildError as exc:
                raise BuildError(
                    f"ONBUILD trigger {expr!r} of the base image: {exc.message}", hint=exc.hint
                ) from None
        if exprs:
            state.pending = True
            state.key = build_cache.chain(state.key, "onbuild", json.dumps(exprs))
        return out

    # -- one step ----------------------------------------------------------------------

    def _step(self, cf: Containerfile, state: State, step: Step) -> None:
        ins = step.instruction
        text = repr(replace(ins, line=0))
        if isinstance(ins, Run):
            self._run(state, step, text)
        elif isinstance(ins, Copy | Add):
            self._copy(cf, state, ins, text)
        else:
            _metadata(state, ins, self.created)
            state.key = build_cache.chain(state.key, text)
            if isinstance(ins, Arg) and ins.default is not None:
                state.env[ins.name] = ins.default
            elif isinstance(ins, Env):
                state.env.update(ins.pairs)
            state.pending = True

    def _cached(self, state: State, key: str) -> bool:
        if self.opts.no_cache:
            return False
        hit = build_cache.lookup(self.store, key)
        if hit is None:
            return False
        state.image = hit
        state.doc = json.loads(self.store.image_config_bytes(hit.id))
        state.key = key
        state.pending = False
        self._say(f"--> Using cache {hit.id}")
        return True

    def _say(self, text: str) -> None:
        if not self.opts.quiet:
            print(text, flush=True)

    def _run(self, state: State, step: Step, text: str) -> None:
        ins = step.instruction
        assert isinstance(ins, Run)
        if ins.mounts:
            raise BuildError(
                f"line {ins.line}: RUN: --mount is not supported",
                hint="use rsbox build --volume SRC:DST for a build-time cache",
            )
        if ins.security not in (None, "sandbox"):
            raise BuildError(
                f"line {ins.line}: RUN: --security={ins.security} is not supported",
                hint="RUN steps run as normal containers; drop --security",
            )
        network = self.opts.network
        if ins.network not in (None, "default"):
            if ins.network not in ("none", "host"):
                raise BuildError(
                    f"line {ins.line}: RUN: --network={ins.network} is not supported",
                    hint="use --network=none, host or default",
                )
            network = ins.network
        shell = tuple(state.config.get("Shell") or _DEFAULT_SHELL)
        script = _script(ins)
        if script is not None:
            argv: tuple[str, ...] = (SCRIPT_TARGET,)
        else:
            argv = tuple(ins.args) if ins.exec_form else (*shell, shell_command(ins))
        if not argv or not argv[0]:
            raise BuildError(f"line {ins.line}: RUN: no command", hint="give RUN a command")
        env = dict(step.env)
        env.update(proxy_env(self.opts.build_args))
        env.setdefault("PATH", DEFAULT_PATH)
        # The cache key: the command, its environment (proxy args excepted, as BuildKit),
        # user, directory and network; the file state is in the parent key.
        keyed = {k: v for k, v in env.items() if k not in PROXY_ARGS}
        key = build_cache.chain(
            state.key,
            text,
            json.dumps(keyed, sort_keys=True),
            str(state.config.get("User") or ""),
            str(state.config.get("WorkingDir") or ""),
            network,
        )
        if self._cached(state, key):
            return
        binds, ca_env = host_ca_binding(self.opts.host_ca)
        for k, v in ca_env.items():
            env.setdefault(k, v)
        created_by = "RUN " + (json.dumps(list(argv)) if ins.exec_form else " ".join(argv))
        with self._script_file(script) as script_bind:
            binds = (*binds, *script_bind)
            self._commit_step(
                state,
                key,
                created_by if script is None else f"RUN {ins.source}",
                lambda c, image: self._launch(c, image, state, ins, argv, env, network, binds),
            )

    @contextlib.contextmanager
    def _script_file(self, script: str | None) -> Iterator[tuple[Bind, ...]]:
        """A ``RUN <<EOF`` body that starts with ``#!``: BuildKit runs it as a file, with
        its interpreter. It is bound read-only into the step (never into the layer)."""
        if script is None:
            yield ()
            return
        fd, name = tempfile.mkstemp(prefix="script-", dir=self.store.tmp)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(script)
            os.chmod(name, 0o755)
            yield (Bind(Path(name), SCRIPT_TARGET, True),)
        finally:
            os.unlink(name)

    def _launch(
        self,
        c: Container,
        image: Image,
        state: State,
        ins: Run,
        argv: tuple[str, ...],
        env: Mapping[str, str],
        network: str,
        binds: tuple[Bind, ...],
    ) -> None:
        from rootless.launch.gather import run_step
        from rootless.runspec import ProcessPlan, RunSpec

        workdir = str(state.config.get("WorkingDir") or "/")
        user = str(state.config.get("User") or "")
        spec = RunSpec(
            image=image.id,
            command=argv,
            env=tuple(_env_list(env)),
            volumes=(*self.opts.volumes, *binds),
            workdir=workdir,
            user=user or None,
            network=network,
            userns=self.opts.userns,
            seccomp=run_seccomp(self.idmap),
        )
        plan = ProcessPlan(
            argv=argv, env=tuple(_env_list(env)), cwd=workdir, user=user, hostname=c.id[:12]
        )
        try:
            with _quiet_output(self.opts.quiet):
                code = run_step(self.store, c, image, spec, plan)
        except RsboxError as exc:
            raise type(exc)(f"line {ins.line}: RUN: {exc.message}", hint=exc.hint) from exc
        if code != 0:
            raise StepFailed(ins.line, code)

    def _copy(self, cf: Containerfile, state: State, ins: Copy | Add, text: str) -> None:
        from fs.changes import Stack

        workdir = str(state.config.get("WorkingDir") or "/")
        owner = self._owner(state, ins) if ins.chown else None
        stack = None
        empty = None
        from_ = ins.from_ if isinstance(ins, Copy) else None
        try:
            if from_ is not None:
                src_stage = cf.find_stage(from_, index_ok=True)
                if src_stage is not None:
                    if src_stage.index not in self.results:
                        raise BuildError(
                            f"line {ins.line}: COPY: --from={from_} names a later stage",
                            hint="a stage can copy only from stages above it",
                        )
                    layers = self._materialise(self.results[src_stage.index]).layers
                else:
                    layers = self._image(from_).layers
                empty = self.store.mkdtemp("from-")
                stack = Stack.of(layers, empty)
            items = payloads(
                ins,
                workdir=workdir,
                tmp=self.store.tmp,
                context=self.context if stack is None else None,
                stage=stack,
                owner=owner,
            )
        finally:
            if empty is not None:
                rmtree_forcefully(empty)
        try:
            key = build_cache.chain(state.key, text, digest(items), workdir)
            if self._cached(state, key):
                return
            self._commit_step(
                state, key, ins.source, lambda c, image: self._place(ins, c, image, items, owner)
            )
        finally:
            for p in items:
                p.tar.unlink(missing_ok=True)

    def _place(
        self,
        ins: Copy | Add,
        c: Container,
        image: Image,
        items: Sequence[Payload],
        owner: Owner | None,
    ) -> None:
        from rootless.cp import UnionTarget

        try:
            place(UnionTarget(image.layers, c.upper), items, owner)
        except RsboxError as exc:
            raise BuildError(f"line {ins.line}: {ins.keyword}: {exc.message}", exc.hint) from exc
        except OSError as exc:
            raise BuildError(
                f"line {ins.line}: {ins.keyword}: cannot write {exc.filename or 'the layer'}: "
                f"{exc.strerror or exc}",
                hint="check the destination path, and the free space of the store",
            ) from exc

    def _owner(self, state: State, ins: Copy | Add) -> Owner:
        assert ins.chown is not None
        passwd = self._image_file(state, "etc/passwd")
        group = self._image_file(state, "etc/group")
        try:
            return parse_chown(ins.chown, passwd, group)
        except UsageError as exc:
            raise BuildError(
                f"line {ins.line}: {ins.keyword}: --chown={ins.chown}: {exc.message}",
                hint="use numeric ids, or create the user in an earlier RUN step",
            ) from None

    def _image_file(self, state: State, path: str) -> str:
        from fs.changes import Stack

        empty = self.store.mkdtemp("read-")
        try:
            stack = Stack.of(state.image.layers, empty)
            found = stack.lookup(path)
            if found is None or found.dirs:
                return ""
            with stack.entry(path, found).open() as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        finally:
            rmtree_forcefully(empty)

    # -- images ------------------------------------------------------------------------

    def _commit_step(
        self, state: State, key: str, created_by: str, work: Callable[[Container, Image], None]
    ) -> None:
        """A container from the current layers; `work(container, image)` changes its
        writable layer; that layer and the config become the next image."""
        c = self.store.create_container(
            state.image, None, {"image": state.image.id, "build_step": created_by}
        )
        try:
            workdir = str(state.config.get("WorkingDir") or "/")
            if workdir != "/":
                from rootless.cp import UnionTarget

                mkdirs(UnionTarget(state.image.layers, c.upper), workdir, None)
            work(c, state.image)
            diff_id, created = store_upper_layer(
                self.store, c, compression=self.opts.compression, clamp=self.opts.timestamp
            )
            try:
                entry: dict[str, Any] = {"created": self.created, "created_by": created_by}
                if diff_id is None:
                    entry["empty_layer"] = True
                state.doc.setdefault("history", []).append(entry)
                diff_ids = [p.name for p in state.image.layers]
                if diff_id is not None:
                    diff_ids.append(diff_id)
                state.doc["created"] = self.created
                rootfs = state.doc.setdefault("rootfs", {"type": "layers"})
                rootfs["diff_ids"] = [f"sha256:{d}" for d in diff_ids]
                image = self.store.add_image(_config_bytes(state.doc), diff_ids, [])
            except BaseException:
                self.store.discard_layers(created)
                raise
        finally:
            self.store.remove_container(c.id)
        build_cache.remember(self.store, key, image)
        state.image, state.key, state.pending = image, key, False
        self._say(f"--> {image.id[:12]}")

    def _materialise(self, state: State) -> Image:
        """The state as an image (its layers, its config): made once, cached by key."""
        if not state.pending:
            return state.image
        key = build_cache.chain(state.key, "commit")
        if not self._cached(state, key):
            state.doc["created"] = self.created
            diff_ids = [p.name for p in state.image.layers]
            image = self.store.add_image(_config_bytes(state.doc), diff_ids, [])
            build_cache.remember(self.store, key, image)
            state.image, state.pending = image, False
        state.key = key
        return state.image

    def _finish(self, state: State, progress: _Progress) -> Image:
        if self.opts.labels:
            labels = dict(state.config.get("Labels") or {})
            labels.update(self.opts.labels)
            state.config["Labels"] = labels
            state.key = build_cache.chain(state.key, "labels", json.dumps(self.opts.labels))
            state.pending = True
        names = ", ".join(self.opts.names)
        progress.say("COMMIT" + (f" {names}" if names else ""))
        image = self._materialise(state)
        for name in self.opts.names:
            image = self.store.tag_image(image.id, name)
            progress.say(f"Successfully tagged {name}")
        return image


def _metadata(state: State, ins: Instruction, created: str) -> None:
    """What a metadata instruction does to the config, and its history entry."""
    cfg = state.config
    if isinstance(
        ins, Cmd | Entrypoint | Env | Expose | Label | StopSignal | User | Volume | Workdir
    ):
        cmd = cfg.get("Cmd")
        applied = apply_changes(cfg, [ins], expanded=True)
        if isinstance(ins, Entrypoint) and state.cmd_set and cmd is not None:
            applied["Cmd"] = cmd  # ENTRYPOINT clears only a CMD the stage did not set
        state.cmd_set = state.cmd_set or isinstance(ins, Cmd)
        cfg.clear()
        cfg.update(applied)
    elif isinstance(ins, Shell):
        cfg["Shell"] = list(ins.args)
    elif isinstance(ins, Healthcheck):
        check: dict[str, Any] = {"Test": list(ins.test)}
        for field_, value_ in (
            ("Interval", ins.interval),
            ("Timeout", ins.timeout),
            ("StartPeriod", ins.start_period),
            ("StartInterval", ins.start_interval),
            ("Retries", ins.retries),
        ):
            if value_:
                check[field_] = value_
        cfg["Healthcheck"] = check
    elif isinstance(ins, Onbuild):
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), ins.expression]
    elif isinstance(ins, Maintainer):
        state.doc["author"] = ins.name
    if isinstance(ins, Arg):
        return  # ARG leaves no history entry (BuildKit)
    state.doc.setdefault("history", []).append(
        {"created": created, "created_by": ins.source, "empty_layer": True}
    )


def _config_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise UsageError(
            f"cannot read {path}: {exc.strerror}",
            hint="give the Containerfile with -f, or put a Containerfile in the context",
        ) from exc


@contextlib.contextmanager
def _quiet_output(quiet: bool) -> Iterator[None]:
    """--quiet: RUN output goes nowhere (the processes inherit fds 1 and 2)."""
    if not quiet:
        sys.stdout.flush()
        sys.stderr.flush()
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def find_containerfile(context: Path, given: Path | None) -> Path:
    if given is not None:
        return given if given.is_absolute() or given.exists() else context / given
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise UsageError(
        f"no Containerfile or Dockerfile in {context}",
        hint="give one with -f FILE",
    )


def build(store: Store, opts: BuildOptions) -> Image:
    from rootless.idmap import host_idmap

    return Builder(store, opts, host_idmap(opts.userns)).build()
