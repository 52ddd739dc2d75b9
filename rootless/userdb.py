"""Resolve `-u USER[:GROUP]` against the container's /etc/passwd and /etc/group (pure).

Docker's rules: names are looked up in the image's files; a number needs no entry; a
user without a group takes the primary group of its passwd entry (0 when there is none);
supplementary groups come from /etc/group; HOME comes from the passwd entry ("/" if none,
"/root" for uid 0 without an entry).
"""

from __future__ import annotations

from rootless.errors import UsageError
from rootless.record import Record


class ExecUser(Record):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


class _Passwd(Record):
    name: str
    uid: int
    gid: int
    home: str


class _Group(Record):
    name: str
    gid: int
    members: tuple[str, ...]


def _passwd(text: str) -> list[_Passwd]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[2].isdigit() and f[3].isdigit():
            out.append(_Passwd(f[0], int(f[2]), int(f[3]), f[5]))
    return out


def _groups(text: str) -> list[_Group]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[2].isdigit():
            out.append(_Group(f[0], int(f[2]), tuple(m for m in f[3].split(",") if m)))
    return out


def resolve_user(spec: str, passwd_text: str, group_text: str) -> ExecUser:
    user_part, _, group_part = spec.partition(":")
    users = _passwd(passwd_text)
    groups = _groups(group_text)
    entry: _Passwd | None = None
    if user_part == "":
        user_part = "0"
    if user_part.isdigit():
        uid = int(user_part)
        entry = next((u for u in users if u.uid == uid), None)
    else:
        entry = next((u for u in users if u.name == user_part), None)
        if entry is None:
            raise UsageError(
                f"unable to find user {user_part}: no matching entries in passwd file",
                hint="use a numeric id (-u 1000) or a user the image defines",
            )
        uid = entry.uid
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((g for g in groups if g.name == group_part), None)
            if g is None:
                raise UsageError(
                    f"unable to find group {group_part}: no matching entries in group file",
                    hint="use a numeric id (-u UID:GID) or a group the image defines",
                )
            gid = g.gid
    else:
        gid = entry.gid if entry else 0
    supplementary: list[int] = []
    if entry is not None and not group_part:
        supplementary = [g.gid for g in groups if entry.name in g.members and g.gid != gid]
    home = entry.home if entry else ("/root" if uid == 0 else "/")
    return ExecUser(uid, gid, tuple(dict.fromkeys(supplementary)), home)
