"""`rsbox info`: what this host lets an unprivileged user do, each with its fix.

Every probe really tries the thing (in a forked child for anything that changes the
process: unshare, mounts), rather than guessing from sysctls.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rootless import syscalls as sc
from rootless.errors import HostError
from rootless.idmap import host_idmap
from rootless.launch.initbin import init_binary

if TYPE_CHECKING:
    from rootless.store import Store


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _in_child(body: Callable[[], None]) -> tuple[bool, str]:
    """Run body in a forked child; (True, "") when it returned, else (False, reason)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            body()
        except OSError as exc:
            os.write(w, (exc.strerror or str(exc)).encode())
            code = 1
        except BaseException as exc:
            os.write(w, repr(exc).encode())
            code = 1
        os._exit(code)
    os.close(w)
    reason = os.read(r, 4096).decode(errors="replace")
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0, reason


def _userns() -> Check:
    ok, why = _in_child(lambda: sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS))
    fix = ""
    if not ok:
        fix = (
            "enable them: sysctl -w kernel.unprivileged_userns_clone=1 (Debian)"
            " and user.max_user_namespaces=15000"
        )
        if os.path.exists("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
            fix += (
                "; on Ubuntu 24.04+: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
                " or an AppArmor profile for rsbox"
            )
    return Check("user namespaces", ok, "unshare(CLONE_NEWUSER) works" if ok else why, fix)


def _fuse() -> Check:
    ok = os.access("/dev/fuse", os.R_OK | os.W_OK)
    return Check(
        "/dev/fuse",
        ok,
        "readable and writable" if ok else "not usable by you",
        ""
        if ok
        else "as root: chmod 0666 /dev/fuse (every distribution's default; modprobe fuse if missing)",
    )


def _subids() -> Check:
    m = host_idmap("auto")
    if m.full:
        assert m.subuid is not None and m.subgid is not None
        return Check(
            "subordinate ids",
            True,
            f"uids {m.subuid.start}+{m.subuid.count}, gids {m.subgid.start}+{m.subgid.count}: "
            f"full 0-{m.size - 1} map",
        )
    if not shutil.which("newuidmap"):
        return Check(
            "subordinate ids",
            False,
            "newuidmap/newgidmap not installed: single-id map only",
            "as root: apt-get install uidmap",
        )
    return Check(
        "subordinate ids",
        False,
        "no range in /etc/subuid and /etc/subgid: single-id map only",
        f"as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {os.environ.get('USER', 'USER')}",
    )


def _seccomp() -> Check:
    try:
        with open("/proc/self/status") as f:
            ok = any(line.startswith("Seccomp:") for line in f)
    except OSError:
        ok = False
    return Check(
        "seccomp",
        ok,
        "filters supported" if ok else "kernel without CONFIG_SECCOMP_FILTER",
        "" if ok else "a kernel with seccomp filters is needed for confinement",
    )


def _cgroup() -> Check:
    from rootless import cgroups

    h = cgroups.hierarchy()
    if h is None:
        return Check(
            "cgroup v2 delegation",
            False,
            "no cgroup v2 hierarchy: containers get no cgroup of their own",
            "boot with systemd.unified_cgroup_hierarchy=1 and log in through systemd --user",
        )
    mine = cgroups.default_parent(h)
    why = cgroups.delegated(mine)
    if why is not None:
        return Check(
            "cgroup v2 delegation",
            False,
            f"{why}: containers get no cgroup of their own, limits are rlimits",
            "log in through systemd (user@.service delegates a subtree), "
            "or run rsbox under `systemd-run --user --scope -p Delegate=yes`",
        )
    try:
        have = (mine / "cgroup.controllers").read_text().split()
        passed = (mine / "cgroup.subtree_control").read_text().split()
    except OSError:
        have = passed = []
    wanted = [c for c in cgroups.CONTROLLERS if c in have]
    return Check(
        "cgroup v2 delegation",
        True,
        f"{mine} is yours: each container gets a cgroup there (freeze, kill; controllers "
        f"available: {' '.join(wanted) or 'none'}, passed down now: {' '.join(passed) or 'none'})",
    )


def _overlay() -> Check:
    uid, gid = os.getuid(), os.getgid()

    def body() -> None:
        with tempfile.TemporaryDirectory() as d:
            for n in ("l", "u", "w", "m"):
                os.mkdir(os.path.join(d, n))
            sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS)
            for name, text in (
                ("uid_map", f"0 {uid} 1"),
                ("setgroups", "deny"),
                ("gid_map", f"0 {gid} 1"),
            ):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            sc.mount(
                "overlay",
                os.path.join(d, "m"),
                "overlay",
                0,
                f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w",
            )
            sc.umount2(os.path.join(d, "m"))

    ok, why = _in_child(body)
    return Check(
        "kernel overlay in a user namespace",
        ok,
        "available (used by benchmarks only)" if ok else why,
        "" if ok else "needs Linux 5.11+; rsbox does not need it",
    )


def _network() -> Check:
    from rootless.network import default_tool

    tool = default_tool()
    return Check(
        "container networking",
        tool is not None,
        (
            f"--network pasta|slirp4netns available; -p uses {tool}. Without -p a container "
            "shares the host's network (--network host); ask for a namespace with --network"
            if tool
            else "neither pasta nor slirp4netns: only --network host and none"
        ),
        "" if tool else "install passt (pasta) or slirp4netns",
    )


def _limits() -> Check:
    from rootless import cgroups

    h = cgroups.hierarchy()
    mine = cgroups.default_parent(h) if h is not None else None
    available: list[str] = []
    if mine is not None and cgroups.delegated(mine) is None:
        with contextlib.suppress(OSError):
            available = (mine / "cgroup.controllers").read_text().split()
    by_cgroup = [
        f"{flag} (cgroup {file})"
        for flag, ctl, file in (
            ("--memory", "memory", "memory.max"),
            ("--pids-limit", "pids", "pids.max"),
            ("--cpus", "cpu", "cpu.max"),
            ("--cpu-shares", "cpu", "cpu.weight"),
        )
        if ctl in available
    ]
    rest = [
        text
        for ctl, text in (
            ("pids", "--pids-limit (RLIMIT_NPROC per user namespace)"),
            ("memory", "--memory (RLIMIT_AS per process)"),
        )
        if ctl not in available
    ]
    detail = "; ".join(
        [
            *([", ".join(by_cgroup)] if by_cgroup else []),
            ", ".join([*rest, "--ulimit"]) + " as rlimits",
            *(
                []
                if "cpu" in available
                else ["--cpus, --cpu-shares not enforced (no cpu controller)"]
            ),
        ]
    )
    return Check("resource limits", True, detail, "")


def _init() -> Check:
    try:
        path = init_binary()
    except HostError as exc:
        return Check("init", False, exc.message, exc.hint or "")
    return Check("init", True, f"rsbox-init at {path} (pid 1 of --init)")


def _fs_cache() -> Check:
    from fs import kcache

    ok, detail = kcache.report()
    fix = "" if ok else "reinstall rsbox with gcc, pkg-config and libfuse3-dev: ./setup.sh venv"
    return Check("fs kernel cache", ok, detail, fix)


def _warm() -> Check:
    """Whether `rsbox run` is done by the warm helper (rootless.launch.warm)."""
    from rootless.config import load_settings
    from rootless.errors import RsboxError
    from rootless.launch import warm

    name = "warm helper"
    if not warm.enabled():
        return Check(name, True, f"off ({warm.ENV_KNOB}={os.environ[warm.ENV_KNOB]})")
    with contextlib.suppress(RsboxError):
        if not load_settings().warm_helper:
            return Check(name, True, "off ([run] warm-helper = false in rsbox's config file)")
    path = warm.socket_path(warm.context())
    pid = warm.helper_pid(path)
    if pid is not None:
        return Check(name, True, f"in use: pid {pid}, socket {path}")
    idle = os.environ.get(warm.IDLE_ENV) or f"{warm.DEFAULT_IDLE:.0f}"
    return Check(
        name,
        True,
        f"not running (the next `rsbox run` without a terminal starts one at {path}; "
        f"it exits after {idle} s without a container)",
    )


def checks() -> list[Check]:
    return [
        _userns(),
        _fuse(),
        _fs_cache(),
        _subids(),
        _seccomp(),
        _cgroup(),
        _overlay(),
        _network(),
        _limits(),
        _init(),
        _warm(),
    ]


def render_info() -> str:
    lines = [
        f"rsbox on {platform.system()} {platform.release()} ({platform.machine()}), uid {os.getuid()}"
    ]
    for c in checks():
        mark = "ok  " if c.ok else "MISSING"
        lines.append(f"  {mark:8} {c.name}: {c.detail}")
        if c.fix:
            lines.append(f"  {'':8}   fix: {c.fix}")
    lines.append("files read:")
    lines += [f"  {what}: {text}" for what, text in config_files_read()]
    return "\n".join(lines)


def render_store(store: Store) -> str:
    """What `rsbox info` says about the store: its filesystem and the choices made for
    it (rootless.storefs), and the read-only image stores behind it."""
    fs, choice = store.fs, store.plan
    assert fs is not None and choice is not None  # the user's own store, not read-only
    xattrs = "with" if fs.user_xattrs else "without"
    uppers = f"on local disk in {store.tmp_root}" if choice.local_uppers else "in the store"
    lines = [
        f"store {store.root}: {fs.name} ({fs.kind.value}, {xattrs} user.* xattrs)",
        f"  {'ok':8} database: journal_mode={choice.journal_mode} ({choice.journal_why})",
        f"  {'ok':8} writable layers: {uppers} ({choice.uppers_why})",
    ]
    for other in store.image_stores:
        count = len(other.images())
        lines.append(f"  {'ok':8} image store (read-only): {other.root}, {count} images")
    return "\n".join(lines)


def config_files_read() -> list[tuple[str, str]]:
    """Each kind of configuration file rsbox reads: the files, in their reading order, or
    why they cannot be used."""
    from rootless.config import load_settings
    from rootless.errors import ConfigError
    from rootless.registry import conf

    out = []
    loaders: list[tuple[str, Callable[[], tuple[Path, ...]]]] = [
        ("rsbox config", lambda: load_settings().files),
        ("registries.conf", lambda: conf.load().files),
    ]
    for what, files in loaders:
        try:
            out.append((what, ", ".join(map(str, files())) or "none"))
        except ConfigError as exc:
            out.append((what, f"UNUSABLE {exc.message}"))
    return out
