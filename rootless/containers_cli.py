"""The handlers of `rootless.commands.containers`: containers after `run`.

There is no daemon: every command reads the store and the runtime directory and acts on
the container's monitor (its P1) or its pid 1 by pid (see rootless.lifecycle).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rootless.commands import Context
from rootless.errors import ContainerError, UsageError
from rootless.launch.protocol import kill_quietly

if TYPE_CHECKING:
    from rootless.lifecycle import State
    from rootless.store import Container, Store


# --- helpers ---------------------------------------------------------------------------


def _ago(text: str | None) -> str:
    from rootless.lifecycle import parse_time

    t = parse_time(text)
    if t is None:
        return "?"
    s = max(0, int((datetime.now(UTC) - t).total_seconds()))
    if s < 60:
        return f"{s} seconds" if s != 1 else "1 second"
    if s < 3600:
        return f"{s // 60} minutes" if s >= 120 else "1 minute"
    if s < 86400:
        return f"{s // 3600} hours" if s >= 7200 else "1 hour"
    return f"{s // 86400} days" if s >= 172800 else "1 day"


def _status_text(st: State) -> str:
    if st.status == "running":
        return f"Up {_ago(st.started_at)}"
    if st.status == "exited":
        return f"Exited ({st.exit_code}) {_ago(st.finished_at or st.started_at)} ago"
    return "Created"


def _config(c: Container) -> dict[str, Any]:
    from rootless.lifecycle import CONFIG_NAME, read_json

    return read_json(c.dir / CONFIG_NAME)


def _signal_number(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"invalid signal {text!r}", hint="use a name (TERM) or number") from None


def _signal_container(c: Container, sig: int) -> bool:
    """Send sig to the container's pid 1 (host pid). False when it is not running."""
    from rootless.lifecycle import container_pid, monitor_pid

    mon = monitor_pid(c.id)
    if mon is None:
        return False
    pid = container_pid(mon) if mon > 1 else None
    target = pid if pid is not None else mon  # the monitor forwards what it can
    if target > 1:  # never 0 or -1: kill(2) would take a whole group, or everything
        kill_quietly(target, sig)
    return True


def _wait_stopped(c: Container, timeout: float | None) -> bool:
    from rootless.lifecycle import monitor_pid

    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while monitor_pid(c.id) is not None:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def stop_container(c: Container, grace: int) -> None:
    from rootless.lifecycle import runtime_dir

    with contextlib.suppress(OSError):  # tells the monitor: no --restart after this
        (runtime_dir(c.id) / "stopping").touch()
    if not _signal_container(c, signal.SIGTERM):
        return
    if _wait_stopped(c, grace):
        return
    _signal_container(c, signal.SIGKILL)
    # The monitor itself, when pid 1 could not be found (early start, lost child).
    if not _wait_stopped(c, 5):
        from rootless.lifecycle import monitor_pid

        mon = monitor_pid(c.id)
        if mon is not None and mon > 1:
            kill_quietly(mon, signal.SIGKILL)
        _wait_stopped(c, None)


# --- handlers --------------------------------------------------------------------------


def _ps(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.lifecycle import state_of

    rows = []
    with ctx.store() as store:
        for c in store.containers():
            st = state_of(c.id, c.dir)
            if not ns.all and not st.running:
                continue
            cfg = _config(c)
            plan = cfg.get("plan") or {}
            argv = plan.get("argv") or cfg.get("command") or []
            rows.append((c, st, cfg, " ".join(argv)))
    if ns.quiet:
        for c, *_ in rows:
            print(c.id if ns.no_trunc else c.id[:12])
        return 0
    if ns.format == "json":
        doc = [
            {
                "Id": c.id,
                "Names": [c.name],
                "Image": cfg.get("image", ""),
                "ImageID": c.image_id,
                "Command": cmd,
                "Created": cfg.get("created"),
                "State": st.status,
                "Status": _status_text(st),
                "ExitCode": st.exit_code if st.exit_code is not None else 0,
                "Pid": st.monitor_pid or 0,
                "StartedAt": st.started_at,
                "FinishedAt": st.finished_at,
            }
            for c, st, cfg, cmd in rows
        ]
        print(json.dumps(doc, indent=2))
        return 0
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for c, st, cfg, cmd in rows:
        shown = cmd if ns.no_trunc or len(cmd) <= 20 else cmd[:19] + "…"
        table.append(
            (
                c.id if ns.no_trunc else c.id[:12],
                str(cfg.get("image", c.image_id[:12])),
                f'"{shown}"',
                f"{_ago(cfg.get('created'))} ago",
                _status_text(st),
                c.name,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _print_log_line(line: bytes, timestamps: bool) -> None:
    try:
        doc = json.loads(line)
        text, stream = str(doc["log"]), str(doc["stream"])
    except (ValueError, KeyError, TypeError):
        return
    if timestamps:
        text = f"{doc.get('time', '')} {text}"
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()


def _logs(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.lifecycle import LOG_NAME, monitor_pid

    with ctx.store() as store:
        c = store.container(ns.container)
    tail: int | None = None
    if ns.tail != "all":
        if not str(ns.tail).isdigit():
            raise UsageError(f"invalid --tail {ns.tail!r}", hint="give a number or 'all'")
        tail = int(ns.tail)
    path = c.dir / LOG_NAME
    if not ns.follow and not path.exists():
        return 0
    while not path.exists():  # -f on a container that has not logged yet
        if monitor_pid(c.id) is None and not path.exists():
            return 0
        time.sleep(0.1)
    with open(path, "rb") as f:
        lines = f.readlines()
        if tail is not None:
            lines = lines[-tail:] if tail else []
        pending = b""
        for line in lines:
            if line.endswith(b"\n"):
                _print_log_line(line, ns.timestamps)
            else:
                pending = line
        if not ns.follow:
            return 0
        while True:
            running = monitor_pid(c.id) is not None
            chunk = f.read()
            if chunk:
                pending += chunk
                *done, pending = pending.split(b"\n")
                for line in done:
                    _print_log_line(line, ns.timestamps)
                continue
            if not running:
                return 0
            time.sleep(0.1)


def _each(ctx: Context, refs: list[str]) -> list[tuple[str, Container | ContainerError]]:
    out: list[tuple[str, Container | ContainerError]] = []
    with ctx.store() as store:
        for ref in refs:
            try:
                out.append((ref, store.container(ref)))
            except ContainerError as exc:
                out.append((ref, exc))
    return out


def _report(results: list[tuple[str, Container | ContainerError]], act: Any) -> int:
    """Docker's way: act on each, print each ref done, errors on stderr, 125 if any."""
    code = 0
    for ref, c in results:
        try:
            if isinstance(c, ContainerError):
                raise c
            act(c)
        except ContainerError as exc:
            print(exc.line(), file=sys.stderr)
            code = 125
            continue
        print(ref, flush=True)
    return code


def _stop(ns: argparse.Namespace, ctx: Context) -> int:
    return _report(_each(ctx, ns.containers), lambda c: stop_container(c, ns.time))


def _kill(ns: argparse.Namespace, ctx: Context) -> int:
    sig = _signal_number(ns.signal)

    def act(c: Container) -> None:
        if not _signal_container(c, sig):
            raise ContainerError(f"container {c.name} is not running", hint="rsbox ps -a")

    return _report(_each(ctx, ns.containers), act)


def _start(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.launch.gather import start
    from rootless.lifecycle import monitor_pid

    if ns.attach and len(ns.containers) != 1:
        raise UsageError("start -a takes one container", hint="start them one by one")
    with ctx.store() as store:
        if ns.attach:
            return start(store, ns.containers[0], ctx.helper, attach=True)
        code = 0
        for ref in ns.containers:
            c = store.container(ref)
            if monitor_pid(c.id) is None:
                start(store, ref)
            else:
                code = _start_running(c)
            print(ref, flush=True)
        return code


def _start_running(c: Container) -> int:
    """Docker: starting a running container is no error and does nothing."""
    return 0


def _restart(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.launch.gather import start

    with ctx.store() as store:
        for ref in ns.containers:
            c = store.container(ref)
            stop_container(c, ns.time)
            start(store, c.id)
            print(ref, flush=True)
    return 0


def remove_container(store: Store, c: Container, force: bool) -> None:
    import shutil

    from rootless.lifecycle import exclusive, runtime_dir

    if force:
        stop_container(c, 0)
    for attempt in range(50):
        try:
            with exclusive(c.id):
                store.remove_container(c.id)
            break
        except ContainerError:
            if attempt == 49 or not force:
                raise
            time.sleep(0.05)
    from rootless.network import stop_pasta

    stop_pasta(runtime_dir(c.id))  # when the monitor was killed before it could
    with contextlib.suppress(OSError):
        shutil.rmtree(runtime_dir(c.id))


def _rm(ns: argparse.Namespace, ctx: Context) -> int:
    with ctx.store() as store:
        return _report(_each(ctx, ns.containers), lambda c: remove_container(store, c, ns.force))


def _wait(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.lifecycle import state_of, wait_monitor

    code = 0
    for _ref, c in _each(ctx, ns.containers):
        if isinstance(c, ContainerError):
            print(c.line(), file=sys.stderr)
            code = 125
            continue
        wait_monitor(c.id)
        st = state_of(c.id, c.dir)
        print(st.exit_code if st.exit_code is not None else 0, flush=True)
    return code


def _inspect(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.lifecycle import (
        LOG_NAME,
        STATE_NAME,
        container_pid,
        read_json,
        runtime_dir,
        state_of,
    )
    from rootless.runspec import RunSpec

    docs = []
    code = 0
    for _ref, c in _each(ctx, ns.containers):
        if isinstance(c, ContainerError):
            print(c.line(), file=sys.stderr)
            code = 125
            continue
        st = state_of(c.id, c.dir)
        cfg = _config(c)
        pid = container_pid(st.monitor_pid) if st.monitor_pid else None
        spec = cfg.get("spec") or {}
        docs.append(
            {
                "Id": c.id,
                "Name": c.name,
                "Created": cfg.get("created"),
                "Image": c.image_id,
                "ImageName": cfg.get("image"),
                "State": {
                    "Status": st.status,
                    "Running": st.running,
                    "Pid": pid or 0,
                    "MonitorPid": st.monitor_pid or 0,
                    "ExitCode": st.exit_code if st.exit_code is not None else 0,
                    "OOMKilled": st.oom_killed,
                    "StartedAt": st.started_at,
                    "FinishedAt": st.finished_at,
                },
                "RestartCount": read_json(c.dir / STATE_NAME).get("restart_count", 0),
                "Config": {"Spec": cfg.get("spec"), "Process": cfg.get("plan")},
                "HostConfig": {
                    "CapAdd": spec.get("cap_add") or [],
                    "CapDrop": spec.get("cap_drop") or [],
                    "Privileged": bool(spec.get("privileged")),
                },
                # What pid 1 and every exec run with (root; a non-root user has none).
                "EffectiveCaps": sorted(RunSpec.from_json(spec).capabilities()) if spec else [],
                "LogPath": str(c.dir / LOG_NAME),
                "UpperDir": str(c.upper),
                "RuntimeDir": str(runtime_dir(c.id)),
            }
        )
    print(json.dumps(docs, indent=2))
    return code


def _top(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.lifecycle import children, container_pid, monitor_pid

    with ctx.store() as store:
        c = store.container(ns.container)
    mon = monitor_pid(c.id)
    pid = container_pid(mon) if mon else None
    if pid is None:
        raise ContainerError(f"container {c.name} is not running", hint="rsbox ps -a")
    pids, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        pids.append(p)
        todo.extend(children(p))
    print(f"{'PID':>8}  {'STATUS':<6}  COMMAND")
    for p in pids:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        print(f"{p:>8}  {state:<6}  {cmd}")
    return 0


def _exec(ns: argparse.Namespace, ctx: Context) -> int:
    from rootless.launch.exec import exec_in

    if not ns.cmd:
        raise UsageError("exec needs a command", hint="rsbox exec CONTAINER COMMAND [ARG...]")
    if ns.workdir is not None and not ns.workdir.startswith("/"):
        raise UsageError(f"working directory {ns.workdir!r} is not absolute", hint="use -w /path")
    with ctx.store() as store:
        c = store.container(ns.container)
    return exec_in(c.dir, c.id, ns.cmd, ns.env, ns.workdir, ns.user, ns.tty, ns.interactive)


def _port(ns: argparse.Namespace, ctx: Context) -> int:
    """Docker's format: `80/tcp -> 0.0.0.0:8080`."""
    from rootless.network import Port

    with ctx.store() as store:
        c = store.container(ns.container)
    spec = _config(c).get("spec") or {}
    for text in spec.get("publish") or []:
        p = Port.parse(str(text))
        print(f"{p.container}/{p.proto} -> 0.0.0.0:{p.host}")
    return 0
