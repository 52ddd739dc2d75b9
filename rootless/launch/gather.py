"""`rsbox run` and `rsbox start`: fill a `Launch` from the spec, the store and the policy,
then hand it to P0.

Like crun's run.c this only gathers: the image, a container record, the files rsbox
provides in /etc, the capability set and the seccomp filter compiled for it, the id map.
The process tree is the rest of this package, one module per process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rootless import lifecycle
from rootless.errors import UsageError
from rootless.idmap import host_idmap
from rootless.launch.become import process_of
from rootless.launch.p0 import run as spawn_run
from rootless.launch.prefork import Helper
from rootless.launch.protocol import Launch
from rootless.runspec import ImageDefaults, ProcessPlan, RunSpec, Volume, plan_process

if TYPE_CHECKING:
    from rootless.cgroups import ContainerCgroup
    from rootless.store import Container, Image, Store


def etc_files(
    cdir: Path, hostname: str, network: str = "host", add_hosts: tuple[str, ...] = ()
) -> dict[str, Path]:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf for the container, as Docker
    provides them (resolv.conf: the host's, or slirp4netns's forwarder; see
    rootless.network), with --add-host entries."""
    from rootless.network import resolv_conf

    extra = "".join(f"{addr}\t{name}\n" for name, _, addr in (h.partition(":") for h in add_hosts))
    files = {
        "hostname": f"{hostname}\n",
        "hosts": (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.1.1\t{hostname}\n{extra}"
        ),
        "resolv.conf": resolv_conf(network),
    }
    out = {}
    for name, text in files.items():
        path = cdir / name
        lifecycle.atomic_write_text(path, text, durable=False)
        out[name] = path
    return out


def seccomp_filter(store: Store, choice: str, caps: frozenset[str]) -> bytes | None:
    """`default`, another built-in name, `unconfined` or a path to a Docker-format JSON,
    compiled for the capabilities the container will hold (Docker's `includes.caps`)."""
    from policies.errors import PolicyError
    from policies.program_cache import program_for

    try:
        return program_for(choice, store.cache_dir, caps=caps)
    except PolicyError as exc:
        raise UsageError(f"seccomp profile {choice}: {exc}", hint="check the profile") from exc
    except OSError as exc:
        raise UsageError(
            f"seccomp profile {choice}: {exc.strerror}",
            hint="use --security-opt seccomp=PATH|unconfined, or a built-in name (default)",
        ) from exc


def _defaults(image: Image) -> ImageDefaults:
    c = image.config
    return ImageDefaults(
        env=tuple(c.env),
        cmd=tuple(c.cmd),
        entrypoint=tuple(c.entrypoint),
        workdir=c.workdir,
        user=c.user,
    )


def run(store: Store, image: Image, spec: RunSpec, helper: Helper | None = None) -> int:
    """Run `image` (resolved by the caller, once) from `store` (the caller's, left open).
    `helper` is P1 when the CLI forked it early (rootless.prefork); else made here.
    Detached (`-d`): prints the container id once it runs and returns 0."""
    spec.validate()
    helper = helper or Helper()
    launched = False
    container = None
    try:
        caps = spec.capabilities()
        bpf = seccomp_filter(store, spec.seccomp, caps)
        spec = replace(spec, volumes=_named_mounts(store, spec, image))
        config: dict[str, object] = {
            "image": spec.image,
            "command": list(spec.command),
            # Written with the record: from then on `volume rm` and prune see them used.
            "volumes": [v.name for v in spec.volumes if v.kind == "volume"],
        }
        container = store.create_container(image, spec.name, config)
        if config["volumes"]:
            from rootless.volumes import Volumes

            spec = replace(spec, volumes=Volumes(store).attach(spec.volumes))
        plan = plan_process(spec, _defaults(image), container.id)
        config.update(
            spec=spec.to_json(),
            plan=plan.to_json(),
            created=lifecycle.now(),
            image_id=image.id,
            name=container.name,
        )
        lifecycle.atomic_write_json(
            container.dir / lifecycle.CONFIG_NAME, config, durable=spec.detach
        )
        launch = _launch(store, container, image, spec, plan, bpf, caps)
        _save_for_exec(launch, bpf)
        launched = True
        code = spawn_run(helper, launch)
        if spec.detach:
            print(container.id, flush=True)
        else:
            lifecycle.forget_runtime(container.id)
        return code
    finally:
        if not launched:
            helper.abort()
        if spec.remove and not spec.detach and container is not None:
            store.remove_container(container.id)
            if any(v.anonymous for v in spec.volumes):
                from rootless.volumes import remove_anonymous

                remove_anonymous(store, spec.volumes)
            with contextlib.suppress(OSError):
                shutil.rmtree(lifecycle.runtime_dir(container.id))


def run_step(
    store: Store, container: Container, image: Image, spec: RunSpec, plan: ProcessPlan
) -> int:
    """One `rsbox build` RUN step in `container` (made by the build from `image`, whose
    layers it runs on): the same Launch and process tree as `rsbox run`, in the
    foreground, with the plan the build computed. Returns the command's status."""
    spec.validate()
    helper = Helper()  # forked here: the build process has no thread running now
    launched = False
    try:
        caps = spec.capabilities()
        bpf = seccomp_filter(store, spec.seccomp, caps)
        config = lifecycle.read_json(container.dir / lifecycle.CONFIG_NAME)
        config.update(spec=spec.to_json(), plan=plan.to_json(), created=lifecycle.now())
        config.update(image_id=image.id, name=container.name)
        lifecycle.atomic_write_json(container.dir / lifecycle.CONFIG_NAME, config, durable=False)
        launch = _launch(store, container, image, spec, plan, bpf, caps)
        launched = True
        code = spawn_run(helper, launch)
        lifecycle.forget_runtime(container.id)
        return code
    finally:
        if not launched:
            helper.abort()


def _named_mounts(store: Store, spec: RunSpec, image: Image) -> tuple[Volume, ...]:
    """The user's mounts plus the image's VOLUMEs, every anonymous volume named."""
    from rootless.volumes import image_volume_paths, name_anonymous

    paths = image_volume_paths(store, image.id)
    if not paths and not any(v.kind == "volume" for v in spec.volumes):
        return spec.volumes
    return name_anonymous(spec.volumes, paths)


def _launch(
    store: Store,
    container: Container,
    image: Image,
    spec: RunSpec,
    plan: ProcessPlan,
    bpf: bytes | None,
    caps: frozenset[str],
    *,
    restart_count: int = 0,
) -> Launch:
    """What the process tree needs for this container (run and start alike)."""
    from rootless.launch.initbin import init_binary
    from rootless.launch.keepid import host_user

    idmap = host_idmap(spec.userns)
    notify_program = _notify_program(store, spec, caps, idmap.full)
    cgroup = _cgroup(spec, container.id)
    return Launch(
        spec=spec,
        plan=plan,
        layers=image.layers,
        upper=container.upper,
        rootfs=container.rootfs,
        idmap=idmap,
        # Learning wants to see every syscall: no enforcing filter under it; fakeroot's
        # notifying filter is the enforcing one (policies.fakeroot).
        bpf=None if notify_program else bpf,
        caps=caps,  # the set the filter was compiled for
        etc_files=etc_files(container.dir, plan.hostname, spec.network, spec.add_hosts),
        cid=container.id,
        cdir=container.dir,
        store_root=store.root,
        restart_count=restart_count,
        notify_program=notify_program,
        init_binary=init_binary() if spec.init else None,
        cgroup=cgroup,
        keep_id_user=host_user(idmap.uid, idmap.gid) if idmap.keep_id else None,
    )


def _save_for_exec(launch: Launch, bpf: bytes | None) -> None:
    """What `exec` starts from, in the container's directory: the filter and the process
    of pid 1 (so that exec neither recomputes them nor imports what computing takes)."""
    lifecycle.save_bpf(launch.cdir, bpf)
    lifecycle.save_process(launch.cdir, process_of(launch))


def _cgroup(spec: RunSpec, cid: str) -> ContainerCgroup | None:
    """The container's own cgroup when ours is delegated (rootless.cgroups), and the one
    line saying which limit is enforced by what."""
    from rootless import cgroups

    cg = None
    if spec.cgroups == "enabled":
        cg, _ = cgroups.for_container(cid, spec.limits(), spec.cgroup_parent)
    if spec.has_limits:
        if cg is None:
            line = spec.limits().describe()
        else:
            missing = "its cgroup has no controller for it"
            line = spec.limits().describe(cg.enforced, missing)
        print(line, file=sys.stderr, flush=True)
    return cg


def _notify_program(
    store: Store, spec: RunSpec, caps: frozenset[str], full_idmap: bool
) -> bytes | None:
    """The filter P3 installs with a listener that P1 answers: --seccomp-learn's, or, for
    `fakeroot` under a single-id map, the one that keeps true owners (policies.fakeroot;
    the saved filter `exec` uses stays plain `fakeroot`: nobody answers an exec's calls)."""
    if spec.seccomp_learn:
        from policies.learn import learn_filter

        return learn_filter()
    if spec.seccomp == "fakeroot" and not full_idmap:
        from policies.fakeroot import owner_program

        return owner_program(store.cache_dir, caps)
    return None


def start(store: Store, ref: str, helper: Helper | None = None, attach: bool = False) -> int:
    """`rsbox start`: the same container (config, writable layer) run again, detached
    unless `attach`. Returns the command's status when attached, else 0."""
    container = store.container(ref)
    config = lifecycle.read_json(container.dir / lifecycle.CONFIG_NAME)
    if "spec" not in config:
        raise UsageError(
            f"container {container.name} has no saved configuration",
            hint="it was made by an older rsbox; run a new one",
        )
    spec = RunSpec.from_json(config["spec"])
    spec = replace(spec, detach=not attach, interactive=spec.interactive and attach)
    plan = ProcessPlan.from_json(config["plan"])
    image = store.resolve_image(str(config.get("image_id") or spec.image))
    helper = helper or Helper()
    launched = False
    try:
        caps = spec.capabilities()
        bpf = seccomp_filter(store, spec.seccomp, caps)
        restarts = int(os.environ.get("RSBOX_RESTART_COUNT", "0") or 0)
        launch = _launch(store, container, image, spec, plan, bpf, caps, restart_count=restarts)
        _save_for_exec(launch, bpf)
        launched = True
        return spawn_run(helper, launch)
    finally:
        if not launched:
            helper.abort()
