"""Container state without a daemon: who is running, what it exited with.

Two places, as Podman keeps them:

* durable, in the container's directory of the store: ``config.json`` (what `run` was
  asked and the process it planned, so that `start` and `exec` can do it again),
  ``state.json`` (started/finished times, exit code; written by the monitor, P1, with
  tmp+fsync+rename) and ``ctr.log`` (json-file log lines of a detached container;
  ``ctr.log.1``... when `--log-opt max-size` rotates it);
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rootless import running
from rootless.errors import ContainerError, UsageError
from rootless.running import BPF_NAME as BPF_NAME  # re-exported: everyone's names for them
from rootless.running import PROCESS_NAME as PROCESS_NAME
from rootless.running import children as children
from rootless.running import container_pid as container_pid
from rootless.running import monitor_pid as monitor_pid

if TYPE_CHECKING:
    from rootless.launch.become import Process

LOG_NAME = "ctr.log"
STATE_NAME = "state.json"
CONFIG_NAME = "config.json"
# Exit code shown for a container whose monitor died without recording one.
LOST_EXIT_CODE = 137


def restart_limit(policy: str) -> int | None:
    """`on-failure[:N]` -> N (None: no limit). Checked by RunSpec.validate."""
    _, _, n = policy.partition(":")
    return int(n) if n else None


def runtime_base() -> Path:
    return Path(running.runtime_base())


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


def save_process(cdir: Path, proc: Process) -> None:
    """What `exec` starts from: the process pid 1 became (rootless.launch.exec)."""
    atomic_write_json(cdir / PROCESS_NAME, proc.to_json(), durable=False)


def save_bpf(cdir: Path, bpf: bytes | None) -> None:
    """What `exec` installs: the very filter the container's pid 1 got."""
    path = cdir / BPF_NAME
    if bpf is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    atomic_write_bytes(path, bpf, durable=False)


# --- the log of a detached container -----------------------------------------------------
#
# Docker's json-file driver, file side (moby's daemon/logger/loggerutils/logfile.go and
# jsonfilelog.go, read for the semantics; the code is ours): the live file is ctr.log,
# rotated files are ctr.log.1 (newest) ... ctr.log.N (oldest). Before an entry is written,
# a file that has reached max-size is rotated: the oldest kept file is dropped, the others
# shift up by one, ctr.log becomes ctr.log.1 and a new ctr.log is started. max-file counts
# the live file too; with max-file=1 the live file is truncated instead. Sizes take
# Docker's units (go-units FromHumanSize: k, m, g, t, p are powers of 1000).

_SIZE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
_LOG_OPT_HINT = "use --log-opt max-size=10m, and max-file=3 to keep 3 files"


@dataclass(frozen=True, slots=True)
class LogOptions:
    """`--log-opt` of the json-file log. max_size None: never rotated (Docker's default)."""

    max_size: int | None = None  # bytes
    max_file: int = 1  # files kept, the live one included

    @classmethod
    def parse(cls, opts: Iterable[str]) -> LogOptions:
        """`KEY=VALUE` items as `docker run --log-opt` takes them (a repeated key: the
        last wins). Raises UsageError."""
        import re

        given: dict[str, str] = {}
        for item in opts:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"invalid --log-opt {item!r}", hint=_LOG_OPT_HINT)
            if key not in ("max-size", "max-file"):
                raise UsageError(
                    f"unsupported --log-opt {key!r}",
                    hint="rsbox's json-file log takes max-size and max-file",
                )
            given[key] = value
        max_size = None
        if "max-size" in given:
            text = given["max-size"]
            m = re.fullmatch(r"(\d+)(?:\.(\d+))? ?([kmgtp]?)i?b?", text, re.IGNORECASE)
            max_size = 0
            if m:  # in integers: no float overflow, whatever the number of digits
                unit, frac = _SIZE_UNITS[m[3].lower()], m[2] or ""
                max_size = int(m[1]) * unit + int(frac or 0) * unit // 10 ** len(frac)
            if max_size <= 0:
                raise UsageError(
                    f"invalid --log-opt max-size={text!r}",
                    hint="give a positive size such as 10m (k, m, g: powers of 1000)",
                )
        max_file = 1
        if "max-file" in given:
            text = given["max-file"]
            if not text.isdigit() or int(text) < 1:
                raise UsageError(
                    f"invalid --log-opt max-file={text!r}", hint="give a number of files, 1 or more"
                )
            if max_size is None:
                raise UsageError(
                    "--log-opt max-file needs max-size",
                    hint="add --log-opt max-size=10m (without it the log is never rotated)",
                )
            max_file = int(text)
        return cls(max_size, max_file)


def rotated_logs(cdir: Path) -> list[Path]:
    """The rotated log files of a container, oldest first (ctr.log.N ... ctr.log.1)."""
    prefix = LOG_NAME + "."
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(cdir):
            number = entry.name[len(prefix) :]
            if entry.name.startswith(prefix) and number.isdigit():
                found.append((int(number), Path(entry.path)))
    return [path for _, path in sorted(found, reverse=True)]


def rotate_log(path: Path, max_file: int) -> None:
    """Make room for a new live file at `path`, keeping max_file - 1 rotated ones: drop
    the oldest, shift the others up, path -> path.1. Only files that exist are touched
    (never a loop up to max_file). With max_file 1 nothing is kept: the caller truncates."""
    for old in rotated_logs(path.parent):
        number = int(old.name.rpartition(".")[2])
        if number >= max_file - 1:
            old.unlink(missing_ok=True)
        else:
            old.rename(old.with_name(f"{path.name}.{number + 1}"))
    if max_file > 1:
        with contextlib.suppress(FileNotFoundError):
            path.rename(path.with_name(path.name + ".1"))


def _newlines_backwards(fd: int, end: int) -> Iterator[int]:
    """Offsets of the newlines of fd[:end], last first, read in blocks from the end."""
    pos = end
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        block = os.pread(fd, step, pos)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            yield pos + i


def tail_ranges(files: Sequence[tuple[int, int]], count: int | None) -> list[tuple[int, int]]:
    """Where the last `count` complete lines of a log are (all of them with None).

    files: (fd, end) per file, oldest first, each read up to `end` (a live file grows: the
    caller fixes its end once). Returns (start, stop) per file: the lines are the bytes
    [start, stop), ending with a newline; what follows the last newline of a file (an
    entry being written) is left out. Reads backwards, only as far as needed."""
    out: list[tuple[int, int]] = []
    wanted = count
    for fd, end in reversed(files):
        if wanted == 0 and out:  # the newest file is always scanned: its stop is needed
            out.append((0, 0))
            continue
        newlines = _newlines_backwards(fd, end)
        stop = next(newlines, -1) + 1
        start = stop if wanted == 0 else 0
        if wanted and stop:
            lines = 1
            for at in newlines:
                if lines == wanted:
                    start = at + 1
                    break
                lines += 1
            wanted -= lines
        out.append((start, stop))
    out.reverse()
    return out
