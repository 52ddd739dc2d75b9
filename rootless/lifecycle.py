"""Container state without a daemon: who is running, what it exited with.

Two places, as Podman keeps them:

* durable, in the container's directory of the store: ``config.json`` (what `run` was
  asked and the process it planned, so that `start` and `exec` can do it again),
  ``state.json`` (started/finished times, exit code; written by the monitor, P1, with
  tmp+fsync+rename) and ``ctr.log`` (json-file log lines of a detached container);
* runtime, in ``$XDG_RUNTIME_DIR/rsbox/<id>/`` (``/tmp/rsbox-<uid>/<id>/`` without it):
  ``monitor.lock``, which the monitor holds with flock(LOCK_EX) for its whole life and
  in which it wrote its pid.

"Running" is exactly "someone holds monitor.lock": the kernel drops the lock when the
monitor dies, however it dies, and a reboot empties the runtime directory. A monitor that
was SIGKILLed thus shows as exited, with no stale pid to trust. Two monitors for one
container are impossible: the second cannot take the lock (`ContainerError`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rootless.errors import ContainerError

LOG_NAME = "ctr.log"
STATE_NAME = "state.json"
CONFIG_NAME = "config.json"
BPF_NAME = "seccomp.bpf"  # the filter pid 1 got, for `exec` (rootless.launch.exec)
# Exit code shown for a container whose monitor died without recording one.
LOST_EXIT_CODE = 137


def restart_limit(policy: str) -> int | None:
    """`on-failure[:N]` -> N (None: no limit). Checked by RunSpec.validate."""
    _, _, n = policy.partition(":")
    return int(n) if n else None


def runtime_base() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return Path(xdg) / "rsbox"
    return Path(f"/tmp/rsbox-{os.getuid()}")


def runtime_dir(cid: str, create: bool = False) -> Path:
    d = runtime_base() / cid
    if create:
        base = d.parent
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = base.lstat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise ContainerError(
                f"the runtime directory {base} is not private to you",
                hint="set XDG_RUNTIME_DIR to a directory only you can write",
            )
        d.mkdir(mode=0o700, exist_ok=True)
    return d


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return None


def atomic_write_bytes(
    path: Path, data: bytes, *, durable: bool = True, mode: int | None = None
) -> None:
    """Readers see the old file or the new one, never a part: a temporary file beside
    `path`, renamed over it, removed if anything fails. `durable=False` skips the fsync
    for files that are rewritten at every start anyway. `mode` is the file's mode (it is
    created with it, so a secret is never readable by others); else 0666 minus umask."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
            0o666 if mode is None else mode,
        )
        with open(fd, "wb") as f:
            if mode is not None:
                os.fchmod(fd, mode)  # the umask may have taken bits `mode` asks for
            f.write(data)
            if durable:
                f.flush()
                os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode(), durable=durable)


def atomic_write_json(path: Path, doc: Any, durable: bool = True) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True), durable)


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


# --- the monitor's side ------------------------------------------------------------------


def take_monitor_lock(cid: str) -> int:
    """Called by P1: the fd (close-on-exec) whose lock marks the container running."""
    path = runtime_dir(cid, create=True) / "monitor.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ContainerError(
            f"container {cid[:12]} is already running (or being removed)",
            hint=f"stop it first: rsbox stop {cid[:12]}",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    with contextlib.suppress(FileNotFoundError):  # a `stop` of an earlier run
        (path.parent / "stopping").unlink()
    return fd


# --- everyone else's side ----------------------------------------------------------------


@dataclass(frozen=True)
class State:
    status: str  # "created", "running", "exited"
    monitor_pid: int | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    oom_killed: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"


def monitor_pid(cid: str) -> int | None:
    """The monitor's pid while it holds its lock (0 if it has not written it), else
    None."""
    path = runtime_dir(cid) / "monitor.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # Held: the monitor writes its pid right after taking the lock.
            for _ in range(100):
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                if text.isdigit() and int(text) > 1:
                    return int(text)
                time.sleep(0.01)
            return 0  # running, pid unknown
        return None
    finally:
        os.close(fd)


def state_of(cid: str, cdir: Path) -> State:
    pid = monitor_pid(cid)
    doc = read_json(cdir / STATE_NAME)
    started, finished = doc.get("started_at"), doc.get("finished_at")
    if pid is not None:
        return State("running", pid, started, None, None)
    code = doc.get("exit_code")
    if isinstance(code, int):
        return State("exited", None, started, finished, code, bool(doc.get("oom_killed")))
    if started:  # the monitor died without a word (SIGKILL, reboot)
        return State("exited", None, started, finished, LOST_EXIT_CODE)
    return State("created", None, None, None, None)


@contextlib.contextmanager
def exclusive(cid: str) -> Iterator[None]:
    """Hold the monitor lock ourselves (`rm`): no monitor runs, none can start."""
    path = runtime_dir(cid, create=True) / "monitor.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ContainerError(
                f"container {cid[:12]} is running",
                hint=f"stop it first (rsbox stop {cid[:12]}) or use rm -f",
            ) from None
        yield
    finally:
        os.close(fd)


def forget_runtime(cid: str) -> None:
    """Remove the runtime directory of a container that is not running (after a
    foreground run). Under the lock, taken without waiting: a `start` that opened the
    old lock file fails to lock it (and says so), one that comes later makes a new one."""
    d = runtime_dir(cid)
    try:
        fd = os.open(d / "monitor.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for entry in d.iterdir():
            entry.unlink()
        d.rmdir()
    except OSError:
        pass  # running again already, or not ours to clean
    finally:
        os.close(fd)


def wait_monitor(cid: str) -> None:
    """Block until no monitor holds the lock."""
    path = runtime_dir(cid) / "monitor.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def container_pid(monitor: int) -> int | None:
    """The host pid of the container's pid 1: the child (P3) of the monitor's child (P2)."""
    for p2 in children(monitor):
        for p3 in children(p2):
            return p3
    return None


def save_bpf(cdir: Path, bpf: bytes | None) -> None:
    """What `exec` installs: the very filter the container's pid 1 got."""
    path = cdir / BPF_NAME
    if bpf is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    atomic_write_bytes(path, bpf, durable=False)
