"""READ answered in C (fs/read_shim.c) on a real mount: what it changes is where the bytes
of a READ come from, so each case forces the kernel to ask (POSIX_FADV_DONTNEED drops
the mount's clean pages, O_DIRECT bypasses them) and checks the bytes, and the harness's
counters show who answered. The same script runs with RSBOX_FS_C_READ=copy (C without
splice: through our buffer) and with RSBOX_FS_C_READ=0: the control, where Python answers
and the same cases give the same answers (but one, below).

One mount per mode runs every case (mounts cost ~1 s each); the tests read its report."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fs.layers import make_layer
from tests.fs.test_mount import run_in_mount

MIB = 1 << 20
SEED = b"rsbox read shim "


def _bytes(name: str, size: int) -> bytes:
    """Deterministic, non-repeating at page size: a wrong offset shows."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(SEED + name.encode() + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


# Runs in the mountpoint; prints one JSON object. Each case says what it saw.
CASES = r"""
import errno, hashlib, json, os, sys
MIB = 1 << 20
out = {}

def cold(fd, off=0, n=0):
    os.posix_fadvise(fd, off, n, os.POSIX_FADV_DONTNEED)

def sha(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        cold(fd)
        h = hashlib.sha256()
        while chunk := os.read(fd, MIB):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)

# 1. a lower file, read cold
out["plain"] = sha("big")

# 2. a handle opened on the lower file, read again after another handle's copy-up
r = os.open("big", os.O_RDONLY)
before = os.pread(r, 4096, 0)
w = os.open("big", os.O_RDWR)  # the copy-up: r now reads the upper copy (fs.union._reopen)
os.pwrite(w, b"X" * 4096, 0)
os.fsync(w)
cold(r)
out["after_copy_up"] = [before.hex(), os.pread(r, 4096, 0).decode(), os.pread(r, 64, MIB).hex()]
os.close(w)
os.close(r)

# 3. a file read while another process writes it through the union (its own handle)
fd = os.open("log", os.O_RDWR | os.O_CREAT, 0o644)
os.close(fd)
go_r, go_w = os.pipe()
done_r, done_w = os.pipe()
pid = os.fork()
if pid == 0:
    w = os.open("log", os.O_WRONLY)
    for g in range(1, 41):
        os.pwrite(w, bytes([g]) * 8192, 0)
        os.fsync(w)  # the dirty pages go to the server now
        os.write(done_w, bytes([g]))
        os.read(go_r, 1)
    os._exit(0)
r = os.open("log", os.O_RDONLY)
seen = []
for g in range(1, 41):
    assert os.read(done_r, 1) == bytes([g])
    cold(r)
    data = os.pread(r, 8192, 0)
    seen.append(data == bytes([g]) * 8192)
    os.write(go_w, b".")
os.waitpid(pid, 0)
out["while_written"] = seen

# 4. many readers at once, every chunk read cold
kids = []
for i in range(8):
    rd, wr = os.pipe()
    off = (i * 3 * 131072) % (4 * MIB)  # each starts elsewhere, and wraps
    pid = os.fork()
    if pid == 0:
        fd = os.open("many", os.O_RDONLY)
        h = hashlib.sha256()
        for k in range(32):
            at = (off + k * 131072) % (4 * MIB)
            cold(fd, at, 131072)
            h.update(at.to_bytes(8, "big") + os.pread(fd, 131072, at))
        os.write(wr, h.hexdigest().encode())
        os._exit(0)
    kids.append((pid, rd, off))
out["readers"] = []
for pid, rd, off in kids:
    os.waitpid(pid, 0)
    out["readers"].append([off, os.read(rd, 100).decode()])

# 5. a read error from the host file: O_DIRECT is passed on to our own open, and an
# O_DIRECT read at an offset the host filesystem cannot do fails there (EINVAL)
fd = os.open("many", os.O_RDONLY | os.O_DIRECT)
def attempt(off):
    try:
        return os.pread(fd, 4096, off).hex()
    except OSError as exc:
        return errno.errorcode[exc.errno]
out["direct"] = [attempt(0), attempt(1)]
os.close(fd)
print(json.dumps(out))
"""


def _expected_readers(many: bytes) -> list[list[Any]]:
    out = []
    for i in range(8):
        h = hashlib.sha256()
        off = (i * 3 * 131072) % (4 * MIB)
        for k in range(32):
            at = (off + k * 131072) % (4 * MIB)
            h.update(at.to_bytes(8, "big") + many[at : at + 131072])
        out.append([off, h.hexdigest()])
    return out


class Report:
    def __init__(self, stdout: str, stderr: str) -> None:
        self.cases: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        m = re.search(r"harness: READs in C (\d+), in Python (\d+)", stderr)
        assert m is not None, stderr
        self.in_c, self.passed = int(m[1]), int(m[2])
        self.cache_line = next(x for x in stderr.splitlines() if "harness: kernel cache:" in x)


@pytest.fixture(scope="module")
def data() -> dict[str, bytes]:
    return {"big": _bytes("big", 3 * MIB), "many": _bytes("many", 4 * MIB)}


def _mount_and_read(tmp: Path, data: dict[str, bytes], c_read: str) -> Report:
    layer = make_layer(tmp / "l0", {})
    for name, content in data.items():
        (layer / "fs" / name).write_bytes(content)
    script = tmp / "cases.py"
    script.write_text(CASES)
    proc = run_in_mount(
        tmp, [layer], f"{sys.executable} {script}", full_map=False, flags=("--c-read", c_read)
    )
    return Report(proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def in_c(tmp_path_factory: pytest.TempPathFactory, data: dict[str, bytes]) -> Report:
    return _mount_and_read(tmp_path_factory.mktemp("c"), data, "1")


@pytest.fixture(scope="module")
def in_c_copy(tmp_path_factory: pytest.TempPathFactory, data: dict[str, bytes]) -> Report:
    return _mount_and_read(tmp_path_factory.mktemp("copy"), data, "copy")


@pytest.fixture(scope="module")
def in_python(tmp_path_factory: pytest.TempPathFactory, data: dict[str, bytes]) -> Report:
    return _mount_and_read(tmp_path_factory.mktemp("py"), data, "0")


@pytest.fixture(params=["in_c", "in_c_copy", "in_python"])
def report(request: pytest.FixtureRequest) -> Report:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def test_every_read_is_answered_in_c_and_the_knob_moves_it_to_python(
    in_c: Report, in_c_copy: Report, in_python: Report
) -> None:
    assert "READ answered in C (spliced)" in in_c.cache_line
    assert "READ answered in C (/" in in_c_copy.cache_line  # not "(spliced)"
    for c in (in_c, in_c_copy):
        # At least one READ per round of the writer's case (the others share the page
        # cache between processes: how many READs they cause varies).
        assert c.passed == 0 and c.in_c >= 40, (c.in_c, c.passed)
    assert "READ answered in C" not in in_python.cache_line
    assert in_python.in_c == 0


def test_a_cold_read_returns_the_lower_files_bytes(report: Report, data: dict[str, bytes]) -> None:
    assert report.cases["plain"] == hashlib.sha256(data["big"]).hexdigest()


def test_a_handle_opened_before_a_copy_up_reads_the_upper_copy(
    report: Report, data: dict[str, bytes]
) -> None:
    before, after, rest = report.cases["after_copy_up"]
    assert bytes.fromhex(before) == data["big"][:4096]
    assert after == "X" * 4096  # not the lower bytes: the handle follows the copy-up
    assert bytes.fromhex(rest) == data["big"][MIB : MIB + 64]


def test_a_file_read_while_another_process_writes_it_sees_each_write(report: Report) -> None:
    assert report.cases["while_written"] == [True] * 40


def test_many_concurrent_readers_each_get_their_bytes(
    report: Report, data: dict[str, bytes]
) -> None:
    assert report.cases["readers"] == _expected_readers(data["many"])


@pytest.mark.parametrize("mode", ["in_c", "in_c_copy"])
def test_a_host_read_error_reaches_the_reader_with_its_errno(
    mode: str, request: pytest.FixtureRequest, data: dict[str, bytes]
) -> None:
    """The control: the aligned O_DIRECT read of the same handle succeeds. (Python's
    READ fails both with EINVAL: its bytes buffer is not aligned for O_DIRECT; splice
    needs no buffer of ours, and the copy's is page-aligned.)"""
    ok, bad = request.getfixturevalue(mode).cases["direct"]
    assert bytes.fromhex(ok) == data["many"][:4096]
    assert bad == "EINVAL"
