"""The project's one long-running container, `rsbox-env-NAME`, and the way into it.

`up` starts it detached from the environment's image: `--init` as pid 1 over a `sleep`
that never ends (or, with `idle_stop`, a watch that ends after that long without an
entry; the next entry starts the container again), the project bound read-write at its host path, [run] mounts at theirs,
[run] env, and the host's network unless `network = "private"` (pasta). A stopped one is
started again; a running one is left alone. `up` holds an flock on a file named after the
container while it looks and starts, so two concurrent first entries start one container.

Entry (`rsbox shell`, `rsbox env exec`) is `rsbox exec` on that container, in the
directory the user is in (the same path inside, as the project is bound at its host path):
the one sealed path into a container (rootless.launch.become), never a new one.

You, inside: the container runs with `--userns keep-id` (rootless.idmap), so every process
in it (the shell, the shims, on_create) is the caller's uid and gid, with the host's name
and home path in its /etc/passwd, and what it makes in the project, the home or a mount is
the caller's on the host. `env exec --root` is `exec -u 0`: root inside needs the
subordinate range that maps container 0 (without one only your ids exist there).

The container is started and stopped by the CLI's own `run -d`, `start` and `rm -f`
(`cli` is argv of rsbox with the same --root): what `rsbox run` does for a container, a
project's container gets, and nothing is written twice.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rootless.env.config import EnvConfig
from rootless.errors import ContainerError, RsboxError, UsageError

RUN_KEY_SUFFIX = ".run-key"
# A sleep both coreutils and busybox accept (2**31 - 1 seconds, 68 years).
_FOREVER = ("sleep", "2147483647")
# idle_stop: the container's command counts the processes of its pid namespace once a
# second and exits (stopping the container) after N idle seconds in a row. Idle is two:
# the init (pid 1) and this shell, counted by its own builtins after its `sleep` exited;
# every `rsbox exec` (shell, shims) adds at least one. POSIX sh only (busybox, dash).
_IDLE_WATCH = (
    "idle=0; while sleep 1; do n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; "
    'if [ "$n" -le 2 ]; then idle=$((idle+1)); else idle=0; fi; '
    '[ "$idle" -ge {seconds} ] && exit 0; done'
)


def main_command(cfg: EnvConfig) -> tuple[str, ...]:
    if cfg.idle_stop is None:
        return _FOREVER
    return ("/bin/sh", "-c", _IDLE_WATCH.replace("{seconds}", str(cfg.idle_stop)))


def host_home() -> Path:
    from rootless.env import enter

    return Path(enter.host_home())


def home_source(cfg: EnvConfig, store_root: Path) -> Path:
    """The host directory mounted at $HOME: `isolated` (the default) is a directory of
    this environment's own in the store, so dotfiles and ~/.local neither leak into the
    environment nor out of it; `host` is the host's home; else the directory given."""
    if cfg.home == "host":
        return host_home()
    if cfg.home != "isolated":
        return Path(cfg.home)
    path = env_dir(store_root) / cfg.name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def env_dir(store_root: Path) -> Path:
    """Where the store keeps environments' homes (NAME/) and run keys (NAME.run-key)."""
    path = store_root / "env-homes"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def run_key_file(store_root: Path, cfg: EnvConfig) -> Path:
    """What `up` made the project's container from (run_key): recreated when it differs."""
    return env_dir(store_root) / f"{cfg.name}{RUN_KEY_SUFFIX}"


def run_args(cfg: EnvConfig, home: Path, ca_bundles: Sequence[str] = ()) -> list[str]:
    """`rsbox run` arguments that start the project's container. Binds are given
    outermost first (the home, then the `share` files in it, the project, the mounts), so
    a project under $HOME is bound over the home's directory, not hidden by it.
    `ca_bundles`: the image's CA bundle paths the host's replaces (rootless.env.host_ca)."""
    args = ["run", "-d", "--init", "--userns", "keep-id", "--name", cfg.container]
    args += ["--network", "host" if cfg.network == "host" else "pasta"]
    for port in cfg.ports:  # devcontainer.json's forwardPorts
        args += ["-p", f"{port}:{port}"]
    inside_home = host_home()
    args += ["-v", f"{home}:{inside_home}", "-e", f"HOME={inside_home}"]
    for m in cfg.share:
        args += ["-v", f"{m.path}:{m.path}" + (":ro" if m.readonly else "")]
    args += ["-v", f"{cfg.root}:{cfg.root}"]
    for m in cfg.mounts:
        args += ["-v", f"{m.path}:{m.inside}" + (":ro" if m.readonly else "")]
    if cfg.host_ca:
        from rootless.env.host_ca import bind_args

        args += bind_args(cfg.path, ca_bundles)
    for key, value in cfg.env.items():
        args += ["-e", f"{key}={value}"]
    agent = ssh_agent_socket(cfg)
    if agent:
        # The socket is bound at its own path and named to `exec` (exec_args); a new
        # login's socket is another path, so another run key: the container is made again.
        args += ["-v", f"{agent}:{agent}"]
    args += ["-w", str(cfg.root), cfg.image, *main_command(cfg)]
    return args


def ssh_agent_socket(cfg: EnvConfig) -> str:
    """$SSH_AUTH_SOCK when `ssh_agent = true` and it names a socket, else ""."""
    from rootless.env.enter import agent_socket

    return agent_socket(cfg.ssh_agent)


def state(root_arg: str | None, cfg: EnvConfig) -> str:
    """absent, stopped or running."""
    from rootless.containers_lookup import container_dir
    from rootless.running import monitor_pid

    try:
        cid, _ = container_dir(root_arg, cfg.container)
    except ContainerError:
        return "absent"
    return "stopped" if monitor_pid(cid) is None else "running"


@contextmanager
def _starting(cfg: EnvConfig) -> Iterator[None]:
    from rootless.running import runtime_base

    os.makedirs(runtime_base(), mode=0o700, exist_ok=True)
    fd = os.open(
        os.path.join(runtime_base(), f"{cfg.container}.up.lock"),
        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
        0o600,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _cli(cli: Sequence[str], *args: str) -> None:
    res = subprocess.run([*cli, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if res.returncode != 0:
        lines = res.stderr.decode(errors="replace").strip().splitlines()
        raise RsboxError(
            f"rsbox {args[0]} of {cfg_name(args)} failed: " + (lines[-1] if lines else ""),
            hint="see `rsbox env status`",
        )


def cfg_name(args: Sequence[str]) -> str:
    return next((a for a in args if a.startswith("rsbox-env-")), "the environment")


def run_key(cfg: EnvConfig, home: Path, image_id: str, ca_bundles: Sequence[str] = ()) -> str:
    """What the container was made from: the image and the `rsbox run` arguments."""
    import hashlib

    text = "\0".join(
        [image_id, *run_args(cfg, home, ca_bundles), cfg.on_create or "", cfg.on_start or ""]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def up(
    cli: Sequence[str],
    root_arg: str | None,
    cfg: EnvConfig,
    home: Path,
    image_id: str,
    key_file: Path,
    ca_bundles: Sequence[str] = (),
) -> str:
    """Make the project's container run; returns what was done. A container made from
    another image or other [run] settings (its `run_key`, kept in `key_file`) is removed and made again: [run] edits and rebuilds take effect at the
    next entry, and the image is kept. `on_create` runs once in a new container, as the
    user, in the project; the key is written only after it succeeded, so a failed
    on_create is tried again with a new container at the next entry."""
    key = run_key(cfg, home, image_id, ca_bundles)
    with _starting(cfg):
        now = state(root_arg, cfg)
        current = key_file.read_text() if key_file.exists() else ""
        if now != "absent" and current != key:
            _cli(cli, "rm", "-f", cfg.container)
            now = "absent"
        if now == "running":
            return "running"
        if now == "stopped":
            _cli(cli, "start", cfg.container)
            _on_create(cli, cfg, "on_start", cfg.on_start)
            return "started"
        key_file.unlink(missing_ok=True)
        _cli(cli, *run_args(cfg, home, ca_bundles))
        _on_create(cli, cfg, "on_create", cfg.on_create)
        _on_create(cli, cfg, "on_start", cfg.on_start)
        from rootless.lifecycle import atomic_write_text

        atomic_write_text(key_file, key)
        return "created"


def _on_create(cli: Sequence[str], cfg: EnvConfig, what: str, command: str | None) -> None:
    """on_create (once per container) or on_start (devcontainer.json's postStartCommand,
    after every start), as the user, in the project. Its output goes to stderr: the entry
    that started the container may be a shim whose stdout is piped (`jq . | ...`)."""
    if not command:
        return
    argv = [*cli, "exec", "-w", str(cfg.root), cfg.container, "/bin/sh", "-c", command]
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=2)
    if res.returncode != 0:
        raise RsboxError(
            f"{cfg.path}: {what} of {cfg.container} exited with {res.returncode}",
            hint=f"fix the command in {cfg.path.name}; the next entry runs it again",
        )


def down(cli: Sequence[str], root_arg: str | None, cfg: EnvConfig) -> bool:
    """Remove the project's container (its image stays); False if there was none."""
    with _starting(cfg):
        if state(root_arg, cfg) == "absent":
            return False
        _cli(cli, "rm", "-f", cfg.container)
        return True


def exec_args(
    cfg: EnvConfig, cwd: Path, cmd: Sequence[str], tty: bool, *, root: bool = False
) -> list[str]:
    """`rsbox exec` arguments for a command (a login shell when empty) at `cwd`: the
    same directory, environment and command as the lean entry (rootless.env.enter);
    `root`: as root inside (the caller checks that the map has a root:
    `root_needs_a_range`)."""
    from rootless.env.enter import LOGIN_SHELL, passed_env, workdir

    args = ["exec", "-i"] + (["-t"] if tty else []) + (["-u", "0:0"] if root else [])
    for item in passed_env(ssh_agent_socket(cfg)):
        args += ["-e", item]
    args += ["-w", workdir(str(cfg.root), str(cwd.absolute())), cfg.container]
    return args + (list(cmd) if cmd else list(LOGIN_SHELL))


def root_needs_a_range() -> None:
    """`env exec --root` without a subordinate range: refused before anything starts (the
    keep-id map `U U 1` has no root: rootless.idmap)."""
    from rootless.idmap import host_idmap

    if not host_idmap("keep-id").full:
        raise UsageError(
            "--root needs a subordinate id range: without one the environment maps only "
            "your own uid and gid, and no root",
            hint="ask an admin to add your user to /etc/subuid and /etc/subgid "
            "(see rsbox info), or run the command as yourself",
        )
