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
from rootless.launch.p0 import run as spawn_run
from rootless.launch.prefork import Helper
from rootless.launch.protocol import Launch
from rootless.runspec import ImageDefaults, ProcessPlan, RunSpec, plan_process

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


def run(root: Path | None, spec: RunSpec, helper: Helper | None = None) -> int:
    """`helper` is P1 when the CLI forked it early (rootless.prefork); else made here.
    Detached (`-d`): prints the container id once it runs and returns 0."""
    spec.validate()
    helper = helper or Helper()
    launched = False
    container = None
    store = None
    try:
        from rootless.store import Store

        store = Store.open(root)
        image = store.resolve_image(spec.image)
        caps = spec.capabilities()
        bpf = seccomp_filter(store, spec.seccomp, caps)
        learn_program = _learn_program() if spec.seccomp_learn else None
        config: dict[str, object] = {"image": spec.image, "command": list(spec.command)}
        container = store.create_container(image, spec.name, config)
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
        launch = _launch(
            store, container, image, spec, plan, bpf, caps, learn_program=learn_program
        )
        lifecycle.save_bpf(container.dir, bpf)
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
        if spec.remove and not spec.detach and container is not None and store is not None:
            store.remove_container(container.id)
            with contextlib.suppress(OSError):
                shutil.rmtree(lifecycle.runtime_dir(container.id))


def _launch(
    store: Store,
    container: Container,
    image: Image,
    spec: RunSpec,
    plan: ProcessPlan,
    bpf: bytes | None,
    caps: frozenset[str],
    *,
    learn_program: bytes | None = None,
    restart_count: int = 0,
) -> Launch:
    """What the process tree needs for this container (run and start alike)."""
    from rootless.launch.initbin import init_binary

    cgroup = _cgroup(spec, container.id)
    return Launch(
        spec=spec,
        plan=plan,
        layers=image.layers,
        upper=container.upper,
        rootfs=container.rootfs,
        idmap=host_idmap(spec.userns),
        # Learning wants to see every syscall: no enforcing filter under it.
        bpf=None if learn_program else bpf,
        caps=caps,  # the set the filter was compiled for
        etc_files=etc_files(container.dir, plan.hostname, spec.network, spec.add_hosts),
        cid=container.id,
        cdir=container.dir,
        store_root=store.root,
        restart_count=restart_count,
        learn_program=learn_program,
        init_binary=init_binary() if spec.init else None,
        cgroup=cgroup,
    )


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


def _learn_program() -> bytes:
    from policies.learn import learn_filter

    return learn_filter()


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
        lifecycle.save_bpf(container.dir, bpf)
        restarts = int(os.environ.get("RSBOX_RESTART_COUNT", "0") or 0)
        launch = _launch(store, container, image, spec, plan, bpf, caps, restart_count=restarts)
        launched = True
        return spawn_run(helper, launch)
    finally:
        if not launched:
            helper.abort()
