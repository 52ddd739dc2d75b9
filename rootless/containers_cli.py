"""The handlers of `rootless.commands.containers`: containers after `run`.

There is no daemon: every command reads the store and the runtime directory and acts on
the container's monitor (its P1) or its pid 1 by pid (see rootless.lifecycle).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from rootless.commands import Context
from rootless.errors import ContainerError, UsageError
from rootless.launch.protocol import kill_quietly

if TYPE_CHECKING:
    from rootless.runspec import Volume
    from rootless.store import Container, Store


# --- helpers ---------------------------------------------------------------------------


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
    """Docker's `ps`: the default table, `-q`, a Go template (rootless.listing has the
    fields), or `--format json`, the JSON array rsbox printed before (Podman's shape)."""
    from rootless.errors import ImageNotFound
    from rootless.filters import ContainerFilter
    from rootless.format import OutputFormat
    from rootless.listing import CONTAINER, container_row, container_views, status_text

    wanted = ContainerFilter.parse(ns.filter)
    fmt = None if ns.quiet else OutputFormat.parse(ns.format, CONTAINER, legacy_json=True)
    with ctx.store() as store:
        views = container_views(store)
        ancestors = []
        for ref in wanted.ancestors:
            with contextlib.suppress(ImageNotFound, UsageError):
                ancestors.append([p.name for p in store.resolve_image(ref).layers])
    show_all = ns.all or wanted.shows_stopped
    views = [
        v
        for v in views
        if (show_all or v.state.running)
        and wanted.matches(
            cid=v.container.id,
            name=v.container.name,
            status=v.state.status,
            exit_code=v.state.exit_code,
            labels=v.labels,
            image_layers=v.layers,
            ancestors=ancestors,
        )
    ]
    if fmt is None:
        for v in views:
            print(v.container.id if ns.no_trunc else v.container.id[:12])
        return 0
    if fmt.legacy_json:
        doc = [
            {
                "Id": v.container.id,
                "Names": [v.container.name],
                "Image": v.image_name,
                "ImageID": v.container.image_id,
                "Command": v.command,
                "Created": v.created_text,
                "State": v.state.status,
                "Status": status_text(v.state),
                "ExitCode": v.state.exit_code if v.state.exit_code is not None else 0,
                "Pid": v.state.monitor_pid or 0,
                "StartedAt": v.state.started_at,
                "FinishedAt": v.state.finished_at,
            }
            for v in views
        ]
        print(json.dumps(doc, indent=2))
        return 0
    with_size = ".Size" in fmt.source
    rows = [container_row(v, trunc=not ns.no_trunc, with_size=with_size) for v in views]
    sys.stdout.write(fmt.render(rows, CONTAINER))
    return 0


class _LogPrinter:
    """json-file entries -> the container's bytes on our stdout/stderr. Partial entries
    (no newline at the end of "log") simply run on into the next one. Written in batches,
    flushed when the stream changes and before waiting, so that stdout and stderr keep
    their order for a reader of both."""

    def __init__(self, timestamps: bool) -> None:
        self.timestamps = timestamps
        self._out: BinaryIO | None = None
        self._chunks: list[bytes] = []
        self._size = 0

    def lines(self, data: bytes) -> None:
        """Entries, one per line; an entry that is not json-file's is skipped."""
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                doc = json.loads(line)
                text, stream = str(doc["log"]), str(doc["stream"])
            except (ValueError, KeyError, TypeError):
                continue
            out = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
            if out is not self._out:
                self.flush()
                self._out = out
            if self.timestamps:
                text = f"{doc.get('time', '')} {text}"
            chunk = text.encode(errors="replace")
            self._chunks.append(chunk)
            self._size += len(chunk)
            if self._size >= 1 << 16:
                self.flush()

    def flush(self) -> None:
        if self._out is not None and self._chunks:
            self._out.write(b"".join(self._chunks))
            self._out.flush()
        self._chunks, self._size = [], 0

    def copy(self, fd: int, start: int, stop: int) -> None:
        """The entries in fd[start:stop] (whole lines), in blocks."""
        while start < stop:
            block = os.pread(fd, min(1 << 20, stop - start), start)
            if not block:
                return
            cut = block.rfind(b"\n") + 1 or len(block)
            self.lines(block[:cut])
            start += cut


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _open_log(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")  # the caller closes it
    except FileNotFoundError:
        return None


def _older_logs(cdir: Path, than: int | None, after: int | None = None) -> list[BinaryIO]:
    """The rotated files older than the file with inode `than` (all with None) and, with
    `after`, newer than that one; opened, oldest first. Files are known by their inodes:
    their names change under us. They are opened newest first, so that a rotation
    meanwhile (every name shifts up by one) shows a file twice, which is seen, rather
    than hides one; one number more than listed covers that shift."""
    from rootless.lifecycle import LOG_NAME, rotated_logs

    listed = rotated_logs(cdir)
    highest = int(listed[0].name.rpartition(".")[2]) if listed else 0
    newest_first: list[BinaryIO] = []
    seen: set[int] = set()
    for number in range(1, highest + 2):
        f = _open_log(cdir / f"{LOG_NAME}.{number}")
        if f is None:
            continue
        ino = os.fstat(f.fileno()).st_ino
        if ino == after:
            f.close()
            break
        if ino == than:  # what came before is newer than `than`
            for g in [f, *newest_first]:
                g.close()
            newest_first = []
        elif ino in seen:
            f.close()
        else:
            newest_first.append(f)
        seen.add(ino)
    return newest_first[::-1]


def _logs(ns: argparse.Namespace, ctx: Context) -> int:
    """Docker's `logs` over the json-file log and its rotated files (oldest first)."""
    from rootless.lifecycle import LOG_NAME

    with ctx.store() as store:
        c = store.container(ns.container)
    tail: int | None = None
    if ns.tail != "all":
        if not str(ns.tail).isdigit():
            raise UsageError(f"invalid --tail {ns.tail!r}", hint="give a number or 'all'")
        tail = int(ns.tail)
    try:
        _print_logs(c.id, c.dir / LOG_NAME, tail, ns.follow, _LogPrinter(ns.timestamps))
    except BrokenPipeError:  # `rsbox logs CTR | head`: end as quietly as `cat` would
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        return 128 + signal.SIGPIPE
    return 0


def _print_logs(cid: str, path: Path, tail: int | None, follow: bool, out: _LogPrinter) -> None:
    from rootless.lifecycle import monitor_pid, tail_ranges

    with contextlib.ExitStack() as stack:
        live = _open_log(path)
        while live is None and follow:  # not logged yet, or a rotation under way
            if monitor_pid(cid) is None and not path.exists():
                return
            time.sleep(0.1)
            live = _open_log(path)
        if live is not None:
            stack.enter_context(live)
        ino = os.fstat(live.fileno()).st_ino if live is not None else None
        files = [stack.enter_context(f) for f in _older_logs(path.parent, ino)]
        if live is not None:
            files.append(live)
        ranges = tail_ranges([(f.fileno(), os.fstat(f.fileno()).st_size) for f in files], tail)
        for f, (start, stop) in zip(files, ranges, strict=True):
            out.copy(f.fileno(), start, stop)
        out.flush()
        if follow and live is not None:
            _follow(live, ranges[-1][1], path, cid, out)


def _whole_lines(out: _LogPrinter, data: bytes) -> bytes:
    """Print the complete lines of data; return the rest (an entry still being written)."""
    cut = data.rfind(b"\n") + 1
    out.lines(data[:cut])
    return data[cut:]


def _follow(f: BinaryIO, pos: int, path: Path, cid: str, out: _LogPrinter) -> None:
    """`logs -f`: print what is appended until the monitor is gone; when the live file is
    rotated away, finish it, then print the rotated files newer than it and go on with
    the new live file."""
    from rootless.lifecycle import monitor_pid

    with contextlib.ExitStack() as stack:
        f.seek(pos)
        pending = b""
        while True:
            running = monitor_pid(cid) is not None
            if chunk := f.read(1 << 20):
                pending = _whole_lines(out, pending + chunk)
                continue
            st = os.fstat(f.fileno())
            if st.st_size < f.tell():  # max-file=1 truncates in place
                f.seek(0)
                pending = b""
                continue
            if _inode(path) not in (st.st_ino, None):
                # Rotated: the monitor writes nothing to f after the rename, so f is
                # complete once read to its end (it may have grown since the read above).
                while chunk := f.read(1 << 20):
                    pending = _whole_lines(out, pending + chunk)
                nxt = _open_log(path)
                if nxt is None:
                    continue
                stack.enter_context(nxt)
                newer = _older_logs(path.parent, os.fstat(nxt.fileno()).st_ino, after=st.st_ino)
                for g in newer:
                    with g:
                        out.copy(g.fileno(), 0, os.fstat(g.fileno()).st_size)
                f, pending = nxt, b""
                continue
            out.flush()
            if not running:
                return
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


def remove_container(store: Store, c: Container, force: bool, volumes: bool = False) -> None:
    """`rm [-f] [-v]`: -v also removes the container's anonymous volumes (Docker's rule:
    named volumes stay)."""
    import shutil

    from rootless.lifecycle import exclusive, runtime_dir

    mounts = _anonymous_volumes(c) if volumes else ()
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
    from rootless.cgroups import recorded
    from rootless.network import stop_pasta

    stop_pasta(runtime_dir(c.id))  # when the monitor was killed before it could
    cg = recorded(runtime_dir(c.id))  # a detached container's, left for us to remove
    if cg is not None:
        cg.remove()
    with contextlib.suppress(OSError):
        shutil.rmtree(runtime_dir(c.id))
    if mounts:
        from rootless.volumes import remove_anonymous

        remove_anonymous(store, mounts)


def _anonymous_volumes(c: Container) -> tuple[Volume, ...]:
    from rootless.runspec import Volume

    spec = _config(c).get("spec") or {}
    return tuple(
        v
        for v in (Volume.from_json(doc) for doc in spec.get("volumes") or ())
        if v.kind == "volume" and v.anonymous
    )


def _rm(ns: argparse.Namespace, ctx: Context) -> int:
    with ctx.store() as store:
        return _report(
            _each(ctx, ns.containers),
            lambda c: remove_container(store, c, ns.force, ns.volumes),
        )


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
    from rootless.gotemplate import Template
    from rootless.lifecycle import (
        LOG_NAME,
        STATE_NAME,
        container_pid,
        read_json,
        runtime_dir,
        state_of,
    )
    from rootless.runspec import RunSpec

    template = Template.parse(ns.format) if ns.format and ns.format != "json" else None
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
                "Config": {
                    "Image": cfg.get("image"),
                    "Spec": cfg.get("spec"),
                    "Process": cfg.get("plan"),
                },
                "HostConfig": {
                    "CapAdd": spec.get("cap_add") or [],
                    "CapDrop": spec.get("cap_drop") or [],
                    "Privileged": bool(spec.get("privileged")),
                },
                # What pid 1 and every exec run with (root; a non-root user has none).
                "EffectiveCaps": sorted(RunSpec.from_json(spec).capabilities()) if spec else [],
                "Mounts": _mounts(spec),
                "NetworkSettings": {"Ports": _published(spec)},
                "LogPath": str(c.dir / LOG_NAME),
                "UpperDir": str(c.upper),
                "RuntimeDir": str(runtime_dir(c.id)),
            }
        )
    if template is not None:
        # Docker: the template for each container, a newline after each.
        print("\n".join(template.execute(doc) for doc in docs))
    else:
        print(json.dumps(docs, indent=2))
    return code


def _mounts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Docker's inspect `Mounts` (what `{{range .Mounts}}{{.Name}} {{.Destination}}{{end}}`
    reads): volumes with their name and driver, binds, tmpfs."""
    from rootless.runspec import Volume

    out: list[dict[str, Any]] = []
    for v in (Volume.from_json(doc) for doc in spec.get("volumes") or ()):
        m: dict[str, Any] = {"Type": v.kind}
        if v.kind == "volume":
            m |= {"Name": v.name, "Source": str(v.source), "Driver": "local"}
        else:
            m["Source"] = str(v.source) if v.kind == "bind" else ""
        m |= {
            "Destination": v.target,
            "Mode": "ro" if v.readonly else "",
            "RW": not v.readonly,
            "Propagation": "rprivate" if v.kind == "bind" else "",
        }
        out.append(m)
    return out


def _published(spec: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Docker's NetworkSettings.Ports: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort":
    "8080"}]} (what `{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}`
    reads)."""
    from rootless.network import Port

    ports: dict[str, list[dict[str, str]]] = {}
    for text in spec.get("publish") or []:
        p = Port.parse(str(text))
        ports.setdefault(f"{p.container}/{p.proto}", []).append(
            {"HostIp": "0.0.0.0", "HostPort": str(p.host)}
        )
    return ports


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
