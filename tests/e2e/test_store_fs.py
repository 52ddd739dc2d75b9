"""The store on the filesystem it finds: what `rsbox info` says it chose, and writable
layers on a filesystem without user.* xattrs, for real.

No NFS server runs in this kernel, so the network case is unit-tested
(tests/rootless/test_storefs.py: the f_type table, the plan, the rollback journal under
concurrent writers). What is real here: a ramfs, which keeps no user.* xattrs and which
an unprivileged user may mount inside a user and mount namespace (`unshare -rm`); rsbox
runs in there (its own namespaces nest) with `--tmp-root` on the ramfs, so the union
keeps the container's metadata in files by inode (fs.inode_meta)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fs.resolve import META_DIR, OVERRIDE_XATTR
from tests.e2e.conftest import Rsbox

UNSHARE = ("unshare", "--user", "--map-root-user", "--mount")
SCRIPT = (
    "mkdir /made && chmod 4711 /made && touch /made/f && chmod 640 /made/f && "
    "ln -s made/f /link && mknod /fifo p && ls -lnd /made /made/f /fifo /etc"
)


def _modes(listing: str) -> dict[str, str]:
    """`ls -lnd` lines -> {path: "mode uid gid"} (a symlink's " -> target" left out)."""
    out = {}
    for line in listing.splitlines():
        f = line.partition(" -> ")[0].split()
        out[f[-1]] = " ".join((f[0], f[2], f[3]))
    return out


def test_info_says_what_it_chose_for_the_store(rsbox: Rsbox, tmp_path: Path) -> None:
    text = rsbox("info", check=True).stdout
    assert f"store {rsbox.root}: " in text and "(local, with user.* xattrs)" in text
    assert "journal_mode=wal (" in text and "writable layers: in the store" in text
    other = Rsbox(tmp_path / "s")
    text = other("--tmp-root", str(tmp_path / "local"), "info", check=True).stdout
    assert f"writable layers: on local disk in {tmp_path / 'local'}" in text


# Runs as root of a fresh user and mount namespace: mount the ramfs, run the container
# with its writable layer there, look at what the union wrote, commit.
DRIVER = """
import json, os, subprocess, sys
ramfs, rsbox = sys.argv[1], sys.argv[2:]
subprocess.run(["mount", "-t", "ramfs", "none", ramfs], check=True)
try:  # the union's probe, by hand
    os.setxattr(ramfs, "user.x", b"1")
    refused = False
except OSError:
    refused = True
run = subprocess.run([*rsbox, "--tmp-root", ramfs, "run", "--name", "noxattr", IMAGE_AND_CMD],
                     capture_output=True, text=True)
uppers = [os.path.join(ramfs, d, "upper") for d in os.listdir(ramfs)]
names = os.listdir(uppers[0]) if uppers else []
files = len(os.listdir(os.path.join(uppers[0], META)))  if META in names else 0
xattrs = 0
for top, dirs, fs in os.walk(ramfs):
    for n in [top, *(os.path.join(top, f) for f in fs)]:
        if not os.path.islink(n):
            xattrs += OVERRIDE in os.listxattr(n)
commit = subprocess.run([*rsbox, "commit", "noxattr", "noxattr-img"], capture_output=True, text=True)
print(json.dumps({"refused": refused, "run": [run.returncode, run.stdout, run.stderr],
                  "names": names, "files": files, "xattrs": xattrs,
                  "commit": [commit.returncode, commit.stderr]}))
"""


def test_writable_layers_on_a_filesystem_without_xattrs_keep_modes_and_commit(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    ramfs, run_dir = tmp_path / "ramfs", tmp_path / "run"
    ramfs.mkdir()
    run_dir.mkdir(mode=0o700)
    driver = (
        DRIVER.replace("IMAGE_AND_CMD", repr([busybox, "sh", "-c", SCRIPT])[1:-1])
        .replace("META", repr(META_DIR))
        .replace("OVERRIDE", repr(OVERRIDE_XATTR))
    )
    res = subprocess.run(
        [*UNSHARE, sys.executable, "-c", driver, str(ramfs), *rsbox.argv()],
        capture_output=True,
        text=True,
        timeout=180,
        # uid 0 in there: /tmp/rsbox-0 may be another test user's (each sees it as 0)
        env={**os.environ, "XDG_RUNTIME_DIR": str(run_dir)},
    )
    assert res.returncode == 0, (res.stdout, res.stderr)
    out = json.loads(res.stdout)
    assert out["refused"] is True  # a filesystem without user.* xattrs, for real
    code, stdout, stderr = out["run"]
    assert code == 0, stderr
    shown = _modes(stdout)
    assert shown["/made"].startswith("drws--x--x 0 0"), shown
    assert shown["/made/f"].startswith("-rw-r----- 0 0"), shown
    assert shown["/fifo"].startswith("prw-r--r-- 0 0"), shown
    assert shown["/etc"].split()[1:] == ["0", "0"], shown  # the image's owner
    assert META_DIR in out["names"] and out["files"] >= 3  # a file per changed inode
    assert out["xattrs"] == 0  # and not one override xattr
    assert out["commit"][0] == 0, out["commit"][1]
    # the ramfs went with the namespace; the committed layer is in the store
    rsbox("rm", "noxattr", check=True)
    again = rsbox.run("--rm", "noxattr-img", "ls", "-lnd", "/made", "/made/f", "/fifo", "/link")
    assert again.returncode == 0, again.stderr
    after = _modes(again.stdout)
    assert after["/made"].startswith("drws--x--x 0 0"), after
    assert after["/made/f"].startswith("-rw-r----- 0 0"), after
    assert after["/fifo"].startswith("prw-r--r-- 0 0"), after
    assert after["/link"].startswith("lrwxrwxrwx"), after
