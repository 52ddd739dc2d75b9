"""`rsbox run`: fill a `Launch` from the spec, the store and the policy, then spawn.

Like crun's run.c this only gathers: the image, a container record, the files rsbox
provides in /etc, the compiled seccomp filter, the id map. The process tree lives in
`rootless.spawn`, the container's own setup in `rootless.container_init`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rootless.errors import UsageError
from rootless.idmap import host_idmap
from rootless.prefork import Helper
from rootless.runspec import ImageDefaults, RunSpec, plan_process
from rootless.spawn import Launch
from rootless.spawn import run as spawn_run

if TYPE_CHECKING:
    from rootless.store import Image, Store


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def etc_files(cdir: Path, hostname: str) -> dict[str, Path]:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf for the container, as Docker
    provides them (the host's resolv.conf: the network is the host's or none)."""
    files = {
        "hostname": f"{hostname}\n",
        "hosts": (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.1.1\t{hostname}\n"
        ),
    }
    try:
        files["resolv.conf"] = Path("/etc/resolv.conf").read_text()
    except OSError:
        files["resolv.conf"] = ""
    out = {}
    for name, text in files.items():
        path = cdir / name
        _atomic_write(path, text)
        out[name] = path
    return out


def seccomp_filter(store: Store, choice: str) -> bytes | None:
    """`default`, another built-in name, `unconfined` or a path to a Docker-format JSON."""
    from policies.errors import PolicyError
    from policies.program_cache import program_for

    try:
        return program_for(choice, store.cache_dir)
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
    """`helper` is P1 when the CLI forked it early (rootless.prefork); else made here."""
    spec.validate()
    helper = helper or Helper()
    launched = False
    container = None
    store = None
    try:
        from rootless.store import Store

        store = Store.open(root)
        image = store.resolve_image(spec.image)
        bpf = seccomp_filter(store, spec.seccomp)
        idmap = host_idmap(spec.userns)
        container = store.create_container(
            image, spec.name, {"image": spec.image, "command": list(spec.command)}
        )
        plan = plan_process(spec, _defaults(image), container.id)
        launch = Launch(
            spec=spec,
            plan=plan,
            layers=image.layers,
            upper=container.upper,
            rootfs=container.rootfs,
            idmap=idmap,
            bpf=bpf,
            etc_files=etc_files(container.dir, plan.hostname),
        )
        launched = True
        return spawn_run(helper, launch)
    finally:
        if not launched:
            helper.abort()
        if spec.remove and container is not None and store is not None:
            store.remove_container(container.id)
