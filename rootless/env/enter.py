"""The lean way into a project's running environment: the shims (.rsbox/bin/TOOL) and
`rsbox shell` start here, and the full CLI (`rsbox shell --project DIR`, which builds,
starts and explains) runs only when this path misses.

`rsbox env up` (and every `rsbox shell` through the full CLI) leaves a record for the
project, `<store>/env-warm/<sha256 of the project path>`, written atomically after
the container runs with the current settings: the container's id and directory, the
sha256 of every file the environment was made from at that moment (rsbox.toml, rsbox.lock
(which a rebuild rewrites), the Containerfile or requirements file), the $HOME and the
ssh-agent socket the container was made with, and the process document the launch
saved for `exec` (with that file's stamp, so a warm entry needs no json). A warm entry
checks, with nothing but os, marshal and _sha256 imported:

- the record is this project's and every input still hashes the same (an edit of
  rsbox.toml, a rebuild, a new requirements file all miss: the full CLI rebuilds,
  recreates or says why not);
- the config is trusted (`<store>/env-trust/<K>` exists, K = sha256 hex of the config's
  absolute path, a newline and the sha256 hex of its bytes);
- $HOME and the ssh-agent socket are the ones the container was made with (the full
  CLI would make it again: they are part of its run key);
- the container's monitor holds its lock and its pid 1 exists (idle_stop, `env down`,
  a reboot all miss).

Then it joins the container through `rsbox exec`'s own path (rootless.launch.exec and
the sealed rootless.launch.become: namespaces, capabilities, no_new_privs, seccomp, a new
session), at the caller's working directory (the project's root from outside it), with
only TERM, LANG, LC_* and (with `ssh_agent`) SSH_AUTH_SOCK of the host's environment.
DISPLAY does not cross: X11 also needs its socket directory inside, which no [run] key
binds yet. Exit status, streams and signals are exec's: the command's status, 126/127
when it cannot be executed or found, SIGINT/SIGTERM/SIGHUP forwarded (Ctrl-C: 130).

The shim runs this module under `python -IS` (no site, no PYTHON* variables, the
package's own directory named in the shim): site is ~5 of a bare start's ~20 ms here
(tests/bench_env.py).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~5 ms of CPU: not on this path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from typing import Any, NoReturn

    from rootless.env.config import EnvConfig

# A project's config, in the order one wins over the other: rootless.env.config reads
# these names from here (find_project too), so the lean entry needs neither tomllib nor
# pathlib to find a project.
CONFIG_NAME = "rsbox.toml"
DEVCONTAINER_NAME = ".devcontainer/devcontainer.json"
WARM_DIR = "env-warm"
LOGIN_SHELL = ("/bin/sh", "-l")


def passed_env(agent: str) -> list[str]:
    """`-e` items of the host's environment that cross: TERM, LANG, LC_*, and
    SSH_AUTH_SOCK when `agent` (the socket the container binds) is set."""
    names = ["TERM", "LANG", *sorted(k for k in os.environ if k.startswith("LC_"))]
    items = [f"{n}={os.environ[n]}" for n in names if n in os.environ]
    return items + ([f"SSH_AUTH_SOCK={agent}"] if agent else [])


def agent_socket(asked: bool) -> str:
    """$SSH_AUTH_SOCK when asked and it names a socket, else ""."""
    import stat

    path = os.environ.get("SSH_AUTH_SOCK", "") if asked else ""
    try:
        return path if path.startswith("/") and stat.S_ISSOCK(os.stat(path).st_mode) else ""
    except OSError:
        return ""


def workdir(root: str, cwd: str) -> str:
    """The caller's directory inside (the project is bound at its host path); a caller
    outside the project starts at its root."""
    return cwd if cwd == root or cwd.startswith(root.rstrip("/") + "/") else root


def host_home() -> str:
    import pwd

    return os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir


def _sha256(data: bytes) -> str:
    from rootless.env.trust import sha256_hex

    return sha256_hex(data)


def _file_sha(path: str) -> str:
    """sha256 hex of the file, "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return _sha256(f.read())
    except OSError:
        return ""


def trusted(store: str, config: str, sha: str) -> bool:
    """rootless.env.trust's rule, for the content hash the record already holds."""
    from rootless.env.trust import canonical, record_for

    return os.path.exists(record_for(store, canonical(config), sha))


def record_path(store: str, project: str) -> str:
    return os.path.join(store, WARM_DIR, _sha256(project.encode()))


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


# --- written by `up` (the full CLI) -------------------------------------------------


def input_hashes(cfg: EnvConfig) -> dict[str, str]:
    """What the environment is made from, path -> sha256: taken before `up` looks, so
    an edit while it starts the container is a miss at the next entry."""
    from rootless.env.steps import LOCKFILE

    paths = [cfg.path, cfg.root / LOCKFILE]
    if cfg.containerfile is not None:
        paths.append(cfg.containerfile)
    if cfg.pip is not None:
        paths.append(cfg.root / cfg.pip.requirements)
    return {str(p): _file_sha(str(p)) for p in paths}


def record_warm(store: Path, root_arg: str | None, cfg: EnvConfig, inputs: dict[str, str]) -> None:
    """After `up`: what the next entry checks (see the module's essay), and the process
    document the container's launch saved for `exec`, with that file's stamp: a warm
    entry then needs no json module (an exec of a container started again since reads
    the file, as `rsbox exec` does)."""
    import json
    import marshal
    from pathlib import Path

    from rootless.containers_lookup import container_dir
    from rootless.lifecycle import atomic_write_bytes
    from rootless.running import PROCESS_NAME

    cid, cdir = container_dir(root_arg, cfg.container)
    cdir = os.path.abspath(cdir)
    saved = os.path.join(cdir, PROCESS_NAME)
    stamp = _stamp(saved)
    try:
        with open(saved, "rb") as f:
            process = json.load(f)
    except (OSError, ValueError):
        stamp = process = None
    doc = {
        "project": str(cfg.root),
        "config": str(cfg.path),
        "cid": cid,
        "cdir": cdir,
        "inputs": inputs,
        "home": host_home(),
        "agent": agent_socket(True) if cfg.ssh_agent else None,
        "process": process,
        "process_stamp": stamp,
    }
    path = Path(record_path(str(store), str(cfg.root)))
    path.parent.mkdir(mode=0o700, exist_ok=True)
    # marshal: built in, unlike json (whose regular expressions cost ~5 ms to compile at
    # import under load); the file is the user's own, in the store's 0700 directory.
    atomic_write_bytes(path, marshal.dumps(doc), durable=False)  # a cache: rewritten on a miss


# --- read by the lean entry ----------------------------------------------------------


class Warm:
    """The running container a warm entry joins (`process`: its saved process document
    when that file is still the one `up` read, else None; `pid`: its pid 1)."""

    def __init__(
        self, cid: str, cdir: str, agent: str, process: dict[str, Any] | None, pid: int
    ) -> None:
        self.cid, self.cdir, self.agent, self.process, self.pid = cid, cdir, agent, process, pid


def warm(store: str, project: str) -> Warm | None:
    """The project's container when every check of the module's essay holds, else None."""
    import marshal

    try:
        with open(record_path(store, project), "rb") as f:
            doc = marshal.load(f)
        config, inputs = str(doc["config"]), dict(doc["inputs"])
        cid, cdir, home, agent = str(doc["cid"]), str(doc["cdir"]), doc["home"], doc["agent"]
        process, stamp = doc["process"], doc["process_stamp"]
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    if doc.get("project") != project or config not in inputs:
        return None
    if any(_file_sha(path) != sha for path, sha in inputs.items()):
        return None
    if not trusted(store, config, inputs[config]) or home != host_home():
        return None
    if agent is not None and agent != agent_socket(True):
        return None
    from rootless.running import container_pid, monitor_pid

    mon = monitor_pid(cid)
    pid = container_pid(mon) if mon and mon > 1 else None
    if pid is None:
        return None
    from rootless.running import PROCESS_NAME

    if stamp is None or _stamp(os.path.join(cdir, PROCESS_NAME)) != stamp:
        process = None
    return Warm(cid, cdir, agent or "", process, pid)


def enter(root_arg: str | None, project: str, cmd: Sequence[str]) -> int | None:
    """Run `cmd` (a login shell when empty) in the project's warm container: its exit
    status, or None on a miss (nothing was run)."""
    from rootless.errors import RsboxError
    from rootless.locations import root_dir

    try:
        w = warm(os.path.abspath(root_dir(root_arg)), project)
        if w is None:
            return None
        from rootless.launch.exec import exec_in

        tty = os.isatty(0) and os.isatty(1)
        argv = list(cmd) or list(LOGIN_SHELL)
        try:
            cwd = workdir(project, os.getcwd())
        except OSError:  # the caller's directory was removed: as from outside the project
            cwd = project
        env = passed_env(w.agent)
        return exec_in(w.cdir, w.cid, argv, env, cwd, None, tty, True, saved=w.process, pid=w.pid)
    except RsboxError as exc:
        print(exc.line(), file=sys.stderr)
        return exc.exit_code


def _finish(code: int) -> NoReturn:
    # As `rsbox exec` (rootless.cli): nothing is left to close; skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shim(project: str, root_arg: str | None, cli: Sequence[str], tool: str) -> NoReturn:
    """A shim's whole work: TOOL with the shim's arguments, warm or through the full CLI."""
    args = sys.argv[1:]
    try:
        code = enter(root_arg, project, [tool, *args])
    except KeyboardInterrupt:
        _finish(130)
    if code is None:
        argv = [*cli, "shell", "--project", project, "--", tool, *args]
        os.execv(argv[0], argv)
    _finish(code)


def find_project(start: str) -> str | None:
    """The nearest directory at or above `start` that holds rsbox.toml or
    .devcontainer/devcontainer.json (rootless.env.config.find_project is this rule, with
    pathlib and its error)."""
    d = os.path.abspath(start)
    while True:
        if any(os.path.isfile(os.path.join(d, n)) for n in (CONFIG_NAME, DEVCONTAINER_NAME)):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def shell_fast(args: Sequence[str]) -> None:
    """`rsbox [--root DIR] shell [--project DIR] [--] [CMD...]` when the project is warm
    (then this never returns); anything else, or a miss, returns to the full CLI."""
    root_arg, i = None, 0
    while i < len(args) and args[i] != "shell":
        if args[i] == "--root" and i + 1 < len(args):
            root_arg, i = args[i + 1], i + 2
        elif args[i].startswith("--root="):
            root_arg, i = args[i].partition("=")[2], i + 1
        else:
            return  # another global option: the full CLI's business
    try:
        rest, start = list(args[i + 1 :]), os.getcwd()
    except OSError:
        return  # no working directory: the full CLI says so
    if rest[:1] == ["--project"] and len(rest) > 1:
        start, rest = rest[1], rest[2:]
    elif rest[:1] and rest[0].startswith("--project="):
        start, rest = rest[0].partition("=")[2], rest[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    elif rest[:1] and rest[0].startswith("-"):
        return  # -h, a typo: argparse says what it means
    project = find_project(start)
    if project is None:
        return
    try:
        code = enter(root_arg, project, rest)
    except KeyboardInterrupt:
        _finish(130)
    if code is not None:
        _finish(code)
