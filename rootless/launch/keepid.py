"""`--userns keep-id`: who the host user is inside (pure, but for `host_user`).

The process runs as the caller's uid:gid (runspec's default user under keep-id, as
Podman's keep-id), so it needs a name, a home and a shell. The image's /etc/passwd and
/etc/group get one entry each for the user, and the results are bound over the image's
files from P3's staging tmpfs, as /etc/hosts is (p3.py): nothing is written into the
container's writable layer, `rsbox commit` never records them, and the image's files
keep the owners the union shows from its metadata (no chown copy of anything).

The rules, decided here:
- the entry is `NAME:x:U:G:NAME:HOME:SHELL`, with the host's name and home path; the
  shell is the host's when the image has it, else /bin/sh;
- an image line with the same name or the same uid is dropped: the caller's own entry
  wins (an image's user 1000 gives way to a caller whose uid is 1000);
- the group line `GROUP:x:G:` likewise replaces an image group of the same name or gid.
"""

from __future__ import annotations

from rootless.record import Record

FALLBACK_SHELL = "/bin/sh"


class HostUser(Record):
    """The caller, as the host's user database knows them."""

    name: str
    uid: int
    gid: int
    group: str
    home: str
    shell: str


def host_user(uid: int, gid: int) -> HostUser:
    """The caller's passwd and group entries; without one (a uid only an external
    directory knows, and it is down), $USER and $HOME, else u<uid>, g<gid> and /."""
    import grp
    import os
    import pwd

    try:
        pw = pwd.getpwuid(uid)
        name, home, shell = pw.pw_name, pw.pw_dir, pw.pw_shell
    except KeyError:
        name = os.environ.get("USER") or f"u{uid}"
        home, shell = os.environ.get("HOME") or "/", FALLBACK_SHELL
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = f"g{gid}"
    return HostUser(name, uid, gid, group, home, shell or FALLBACK_SHELL)


def _kept(text: str, name: str, number: int) -> list[str]:
    """The lines of an /etc/passwd or /etc/group whose name (field 1) and id (field 3)
    are not `name` and `number`."""
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and (fields[0] == name or fields[2] == str(number)):
            continue
        out.append(line)
    return out


def passwd_text(image_passwd: str, user: HostUser, shell_in_image: bool) -> str:
    shell = user.shell if shell_in_image else FALLBACK_SHELL
    entry = f"{user.name}:x:{user.uid}:{user.gid}:{user.name}:{user.home}:{shell}"
    return "\n".join([*_kept(image_passwd, user.name, user.uid), entry]) + "\n"


def group_text(image_group: str, user: HostUser) -> str:
    entry = f"{user.group}:x:{user.gid}:"
    return "\n".join([*_kept(image_group, user.group, user.gid), entry]) + "\n"
