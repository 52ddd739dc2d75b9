"""fs.server's handlers without a mount: copy-ups of big files on a worker thread, one per
file, and the requests that must wait for them. (The real mount: test_mount.py.)"""

from __future__ import annotations

import errno
import math
import os
import threading
from pathlib import Path
from typing import Any

import pyfuse3
import pytest
import trio

from fs import copyup, server
from fs.union import ROOT_INODE, Union, UnionSpec
from tests.fs.layers import make_layer

BIG = 3 * server.ASYNC_COPY_BYTES
CTX: Any = None  # these handlers do not read the request context


class SlowCopies:
    """fs.copyup._copy_data of big files, counted, each held until the test lets it go."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished: list[str] = []
        real = copyup._copy_data

        def slow(src: str, dst: str) -> None:
            if os.path.getsize(src) < server.ASYNC_COPY_BYTES:
                return real(src, dst)  # copied on the trio thread, at once
            self.calls += 1
            assert threading.current_thread() is not threading.main_thread()
            self.entered.set()
            self.release.wait(10)
            real(src, dst)
            self.finished.append(src)

        monkeypatch.setattr(copyup, "_copy_data", slow)

    async def running(self) -> None:
        """Until a copy is under way on its thread and every task waits."""
        await trio.to_thread.run_sync(self.entered.wait, 10)
        await trio.testing.wait_all_tasks_blocked()


def _ops(tmp_path: Path) -> tuple[server.UnionOps, trio.MemoryReceiveChannel[None]]:
    layer = make_layer(tmp_path / "l0", {"d/big": "x" * BIG, "d/small": "s", "other": "o"})
    ops = server.UnionOps(Union(UnionSpec((layer,), tmp_path / "upper")))
    ops.readers, wanted = trio.open_memory_channel[None](math.inf)
    return ops, wanted


def _ino(ops: server.UnionOps, path: str) -> int:
    ino = ROOT_INODE
    for part in path.split("/"):
        ino = ops.union.lookup(ino, part).ino
    return ino


async def test_two_opens_for_writing_make_one_copy_and_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops, wanted = _ops(tmp_path)
    slow = SlowCopies(monkeypatch)
    big = _ino(ops, "d/big")
    handles: list[int] = []

    async def opener() -> None:
        info = await ops.open(big, os.O_WRONLY | os.O_APPEND, CTX)
        handles.append(info.fh)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(opener)
        nursery.start_soon(opener)
        await slow.running()
        # Both wait (one for its thread, one for that copy); the rest is answered.
        assert handles == [] and slow.calls == 1
        assert (await ops.getattr(_ino(ops, "other"), CTX)).st_size == 1
        small = await ops.open(_ino(ops, "d/small"), os.O_RDWR, CTX)  # below the bar: at once
        await ops.release(small.fh)
        slow.release.set()
    assert slow.calls == 1 and len(handles) == 2
    assert (tmp_path / "upper/d/big").stat().st_size == BIG
    assert wanted.statistics().current_buffer_used >= 2  # a second loop asked each time
    for i, fh in enumerate(handles):  # both handles write the one upper copy
        await ops.write(fh, BIG + i, b"!")
        await ops.release(fh)
    data = (tmp_path / "upper/d/big").read_bytes()
    assert len(data) == BIG + 2 and data[-3:] == b"x!!"
    assert not list((tmp_path / "upper/d").glob(".wh..wh..rsbox-tmp.*"))


async def test_moving_or_removing_a_file_waits_for_its_copy_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops, _ = _ops(tmp_path)
    slow = SlowCopies(monkeypatch)
    big, d = _ino(ops, "d/big"), _ino(ops, "d")
    order: list[str] = []

    async def write_it() -> None:
        info = await ops.open(big, os.O_WRONLY, CTX)
        order.append("opened")
        await ops.release(info.fh)

    async def rename_dir() -> None:
        await ops.rename(ROOT_INODE, b"d", ROOT_INODE, b"d2", 0, CTX)
        order.append("renamed")

    async def unlink_it() -> None:
        await ops.unlink(_ino(ops, "d2"), b"big", CTX)
        order.append("unlinked")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_it)
        await slow.running()
        nursery.start_soon(rename_dir)
        await trio.testing.wait_all_tasks_blocked()
        await ops.unlink(d, b"small", CTX)  # a sibling: not held
        assert order == [] and slow.finished == []
        slow.release.set()
    assert order == ["opened", "renamed"]
    assert (tmp_path / "upper/d2/big").stat().st_size == BIG
    slow.release.clear()
    await unlink_it()  # nothing pending: at once
    assert order[-1] == "unlinked"


async def test_a_failed_copy_up_leaves_nothing_and_the_next_one_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops, _ = _ops(tmp_path)
    big = _ino(ops, "d/big")
    real = copyup._copy_data
    fail = [True]

    def flaky(src: str, dst: str) -> None:
        real(src, dst)
        if fail.pop():
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(copyup, "_copy_data", flaky)
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await ops.open(big, os.O_RDWR, CTX)
    assert exc.value.errno == errno.ENOSPC
    assert list((tmp_path / "upper/d").iterdir()) == []
    fail.append(False)
    info = await ops.open(big, os.O_RDWR, CTX)
    await ops.release(info.fh)
    assert (tmp_path / "upper/d/big").stat().st_size == BIG


async def test_security_capability_is_answered_from_memory_until_it_may_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel asks for it before every write (no SB_NOSEC with libfuse 3.14)."""
    ops, _ = _ops(tmp_path)
    f = _ino(ops, "other")
    asked: list[str] = []
    real = ops.union.getxattr

    def counted(ino: int, name: str) -> bytes:
        asked.append(name)
        return real(ino, name)

    monkeypatch.setattr(ops.union, "getxattr", counted)

    async def caps() -> bytes | int:
        try:
            return await ops.getxattr(f, server.CAPS, CTX)
        except pyfuse3.FUSEError as exc:
            return int(exc.errno)

    assert await caps() == errno.ENODATA and await caps() == errno.ENODATA
    assert len(asked) == 1
    await ops.setxattr(f, server.CAPS, b"\x01\x00\x00\x02", CTX)
    assert await caps() == b"\x01\x00\x00\x02" and await caps() == b"\x01\x00\x00\x02"
    assert len(asked) == 2
    await ops.removexattr(f, server.CAPS, CTX)
    assert await caps() == errno.ENODATA
    assert len(asked) == 3
    for _ in range(2):  # other names are not remembered
        with pytest.raises(pyfuse3.FUSEError):
            await ops.getxattr(f, b"user.other", CTX)
    assert asked[3:] == ["user.other", "user.other"]
