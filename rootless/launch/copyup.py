"""Fill a new volume from the image: what P3 does before it mounts the volume.

It runs in pid 1's mount namespace before pivot_root, as root of the container's user
namespace: the union rootfs shows the image's files with the owners and modes the
container sees (fs/ metadata), and root here may chown to every id the map holds. So the
copy has, on the host, the owners the container will see through the bind mount: with
the full map, uid N of the image becomes the Nth subordinate id; with the single map,
only 0 exists and everything stays the user's. An id the map lacks (the overflow id
65534) keeps the user's owner.

Never follows a symlink: entries are lstat'ed, files opened O_NOFOLLOW, directories
entered only when lstat says they are directories (nothing else runs in the container
yet, so nothing can swap them). Device nodes cannot be made in a user namespace and are
skipped; hard links inside the tree stay hard links.
"""

from __future__ import annotations

import contextlib
import os
import stat

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def copy_up(src: str, dst: str) -> None:
    """Copy the tree at `src` (a directory of the rootfs) into the empty directory `dst`,
    and give `dst` the owner and mode of `src` (Docker does the same)."""
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    links: dict[tuple[int, int], str] = {}
    _copy_dir(src, dst, links)
    _own(dst, st)


def _own(path: str, st: os.stat_result) -> None:
    with contextlib.suppress(OSError):  # EINVAL: an id this namespace does not map
        os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))  # after chown, which clears set-id bits
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_dir(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        s, d = entry.path, os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in links:
            os.link(links[key], d, follow_symlinks=False)
            continue
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir(s, d, links)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(mode):
            _copy_file(s, d)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(d, 0o600)
        else:
            continue  # device nodes, sockets: a user namespace cannot make them
        if st.st_nlink > 1 and not stat.S_ISDIR(mode):
            links[key] = d
        _own(d, st)


def _copy_file(src: str, dst: str) -> None:
    fin = os.open(src, os.O_RDONLY | _NOFOLLOW)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        try:
            while data := os.read(fin, 1 << 20):
                view = memoryview(data)
                while view:
                    view = view[os.write(fout, view) :]
        finally:
            os.close(fout)
    finally:
        os.close(fin)
