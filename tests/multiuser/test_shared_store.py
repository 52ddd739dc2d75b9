"""One image store, three kinds of users, for real (run as root by .ci/run; see conftest).

The setup the README's shared-store section describes: `rsbox-owner` makes the store
group-writable for the group of those who fill it (`chgrp rsbox-images; chmod 2775`, the
setgid bit so that what any member writes belongs to the group) and pulls an image into
it from a real registry (tests/registry.py); `rsbox-puller`, a member of that group,
pulls a second image into it while `rsbox-ci` (a subordinate id range) and
`rsbox-single` (none), who may not write there, run containers from it with
`--image-store`: short runs and image listings in a loop, and one long-running container
that reads the image's files before and after the pull.

Nothing is written by a reader: inotifywait watches the whole store while the readers run
(the puller too, who could write there, as a reader) and sees nothing until a control
write by the puller; every entry keeps its mode, size and mtime; and after the concurrent
pull no entry of the store belongs to a reader."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.images import make_busybox_rootfs
from tests.registry import running_registry
from tests.rootless.test_image_stores import snapshot
from tests.shared import need_tools, unavailable

OWNER, PULLER, GROUP = "rsbox-owner", "rsbox-puller", "rsbox-images"
READERS = ("rsbox-ci", "rsbox-single")
RUNUSER = "/usr/sbin/runuser"  # util-linux; root's PATH has it, a user's may not
REPO = Path(__file__).resolve().parents[2]


def _as(user: str, *argv: str) -> list[str]:
    """`argv` as `user`, in the clean environment .ci/run gives its users."""
    env = [f"HOME=/home/{user}", f"USER={user}", f"LOGNAME={user}", "LANG=C.UTF-8"]
    env += ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"]
    return [RUNUSER, "-u", user, "--", "env", "-i", *env, *argv]


def _rsbox(user: str, root: Path, *args: str) -> list[str]:
    return _as(user, sys.executable, "-m", "rootless", "--root", str(root), *args)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    if check and res.returncode != 0:
        raise AssertionError(f"{argv} -> {res.returncode}: {res.stderr}")
    return res


@dataclass
class Shared:
    base: Path  # readable by all; base/USER belongs to USER
    store: Path  # the shared store, group rsbox-images, mode 2775
    first: str  # in the store from the start
    second: str  # in the registry only, until the puller pulls it

    def own(self, user: str) -> Path:
        """`user`'s own store (where a reader's containers live)."""
        return self.base / user / "own"

    def reader(self, user: str, *args: str) -> list[str]:
        return _rsbox(user, self.own(user), "--image-store", str(self.store), *args)


def _users_or_unavailable() -> None:
    need_tools((RUNUSER, "inotifywait", "/usr/bin/docker-registry"), "the shared-store test")
    try:
        members = grp.getgrnam(GROUP).gr_mem
        for user in (OWNER, PULLER, *READERS):
            pwd.getpwnam(user)
    except KeyError as exc:
        unavailable(f"no user or group {exc} (.ci/run makes them)")
    if sorted(members) != sorted((OWNER, PULLER)):
        unavailable(f"the group {GROUP} should hold {OWNER} and {PULLER}, has {members}")


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    _users_or_unavailable()
    base = Path(tempfile.mkdtemp(prefix="rsbox-multiuser.", dir="/tmp"))
    try:
        base.chmod(0o755)
        for user in (OWNER, PULLER, *READERS):
            (base / user).mkdir(mode=0o700)
            shutil.chown(base / user, user, user)
        with running_registry(base / "registry") as reg:
            refs = []
            for name in ("first", "second"):  # made here, imported and pushed by the owner
                rootfs = make_busybox_rootfs(base / f"rootfs-{name}")
                (rootfs / "etc" / "which.txt").write_text(f"{name}\n")
                scratch = base / OWNER / "scratch"
                _run(_rsbox(OWNER, scratch, "import", str(rootfs), name))
                refs.append(f"{reg.host}/shared/{name}:1")
                _run(_rsbox(OWNER, scratch, "push", name, refs[-1]))
            store = base / OWNER / "images"
            (base / OWNER).chmod(0o755)
            # what an owner does, without root: a directory for the group of its writers
            _run(_as(OWNER, "mkdir", str(store)))
            _run(_as(OWNER, "chgrp", GROUP, str(store)))
            _run(_as(OWNER, "chmod", "2775", str(store)))
            _run(_rsbox(OWNER, store, "pull", "-q", refs[0]))
            yield Shared(base, store, *refs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def watching(store: Path) -> Iterator[subprocess.Popen[str]]:
    """inotifywait over every directory of `store`, for every kind of write, once its
    watches are set up; one `PATH EVENTS` line per event on its stdout."""
    events = "modify,attrib,close_write,move,create,delete,delete_self"
    with subprocess.Popen(
        ["inotifywait", "-m", "-r", "-e", events, "--format", "%w%f %e", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "Watches established" in line:
                    break
            else:
                pytest.fail(f"inotifywait exited: {proc.wait()}")
            yield proc
        finally:
            proc.terminate()


def _names(listing: str) -> set[str]:
    """The image names of an `rsbox images` table."""
    return {row.split()[0].rpartition("/")[2] for row in listing.splitlines()[1:]}


def test_readers_write_nothing_into_the_store(shared: Shared) -> None:
    store = shared.store
    # the kernel refuses the readers a write there, and allows it in their own directory
    for user in READERS:
        assert _run(_as(user, "touch", str(store / "probe")), check=False).returncode != 0
        _run(_as(user, "touch", str(shared.base / user / "probe")))
    before = snapshot(store)
    with watching(store) as watch:
        # every reader at once, and the puller too (who could write there), as a reader
        users = (*READERS, PULLER)
        runs = [
            subprocess.Popen(
                shared.reader(user, "run", "--rm", shared.first, "cat", "/etc/which.txt"),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for user in users
        ]
        outs = [(p.communicate(timeout=300), p.returncode) for p in runs]
        assert [(out, rc) for (out, _), rc in outs] == [("first\n", 0)] * len(users), outs
        for user in users:
            listing = _run(shared.reader(user, "images")).stdout
            assert _names(listing) == {"first"} and "R/O" in listing, listing
        assert snapshot(store) == before
        # the control: a write into the store, by the one allowed to, is seen
        probe = store / "tmp" / "probe"
        _run(_as(PULLER, "touch", str(probe)))
        _run(_as(PULLER, "rm", str(probe)))
        seen = []
        assert watch.stdout is not None
        for line in watch.stdout:
            seen.append(line.strip())
            if line.startswith(f"{probe} DELETE"):
                break
    assert all(line.startswith(f"{probe} ") for line in seen), seen
    assert f"{probe} CREATE" in seen, seen


def test_a_member_of_the_group_pulls_while_the_readers_run(shared: Shared) -> None:
    store = shared.store
    # one long-running container per reader: it reads the image before and after the pull
    # (`read` waits for our line)
    script = "cat /etc/which.txt; read x; cat /etc/which.txt"
    long = [
        subprocess.Popen(
            shared.reader(user, "run", "--rm", "-i", shared.first, "sh", "-c", script),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user in READERS
    ]
    try:
        for proc in long:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "first\n", proc.stderr
        pulled = threading.Event()

        def runs(user: str) -> list[tuple[int, str, set[str]]]:
            """Short runs and listings until the pull is done (at least one)."""
            seen = []
            while not seen or not pulled.is_set():
                res = _run(
                    shared.reader(user, "run", "--rm", shared.first, "cat", "/etc/which.txt"),
                    check=False,
                )
                images = _run(shared.reader(user, "images"), check=False)
                seen.append((res.returncode + images.returncode, res.stdout, _names(images.stdout)))
            return seen

        with ThreadPoolExecutor(len(READERS)) as pool:
            loops = [pool.submit(runs, user) for user in READERS]
            try:
                pull = _run(_rsbox(PULLER, store, "pull", "-q", shared.second), check=False)
            finally:
                pulled.set()
            seen = {user: loop.result() for user, loop in zip(READERS, loops, strict=True)}
        assert pull.returncode == 0, pull.stderr
        outs = [proc.communicate("go\n", timeout=300) for proc in long]
    finally:
        for proc in long:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [(proc.returncode, out) for proc, (out, _) in zip(long, outs, strict=True)] == [
        (0, "first\n")
    ] * len(READERS), outs
    # every run succeeded and saw the image whole; every listing, one image or both
    for user, results in seen.items():
        for rc, out, names in results:
            assert (rc, out) == (0, "first\n"), (user, results)
            assert names in ({"first"}, {"first", "second"}), (user, results)

    # what the pull wrote belongs to the puller, nothing to a reader
    readers = {pwd.getpwnam(user).pw_uid for user in READERS}
    owners = {os.lstat(p).st_uid for p in (store, *store.rglob("*"))}
    assert pwd.getpwnam(PULLER).pw_uid in owners and not owners & readers, owners

    # the new image, for the readers, from the store
    for user in READERS:
        res = _run(shared.reader(user, "run", "--rm", shared.second, "cat", "/etc/which.txt"))
        assert res.stdout == "second\n"
        listing = _run(shared.reader(user, "images")).stdout
        assert _names(listing) == {"first", "second"}, listing
    # ...and a consistent database, as its owner sees it and as SQLite checks it
    assert _names(_run(_rsbox(OWNER, store, "images")).stdout) == {"first", "second"}
    db = sqlite3.connect(f"file:{store / 'store.db'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("SELECT count(*) FROM images").fetchone() == (2,)
    finally:
        db.close()
