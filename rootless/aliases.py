"""Docker's management-command forms as aliases: `rsbox container ls` is `rsbox ps`.

`expand` rewrites argv before anything parses it, so that an alias is the plain verb in
every respect (its parser, its help, `run`'s early fork of P1 in rootless.cli). It is
imported on the start path of every `rsbox run`: no imports here.

Verbs that exist only in the management form (`container prune`, `image prune`,
`image inspect`, `system df|prune|info`) are real subcommands (rootless.commands).
"""

from __future__ import annotations

CONTAINER = {
    "ls": "ps",
    "list": "ps",
    "ps": "ps",
    "rm": "rm",
    "remove": "rm",
    **{
        verb: verb
        for verb in (
            "run",
            "exec",
            "start",
            "stop",
            "kill",
            "restart",
            "logs",
            "inspect",
            "rename",
            "stats",
            "top",
            "port",
            "wait",
            "pause",
            "unpause",
        )
    },
}

IMAGE = {
    "ls": "images",
    "list": "images",
    "rm": "rmi",
    "remove": "rmi",
    **{verb: verb for verb in ("pull", "push", "tag", "load", "save", "import", "build")},
}

GROUPS = {"container": CONTAINER, "image": IMAGE}


def _command_index(argv: list[str]) -> int:
    """Where the command is: after the global options (`--root DIR`, `--root=DIR`)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--root" else 1
    return i


def command_of(argv: list[str]) -> str | None:
    """The command word of an expanded argv (`run`, `exec`, `system`...), None if there is
    none (`rsbox`, `rsbox --help`)."""
    i = _command_index(argv)
    return argv[i] if i < len(argv) else None


def expand(argv: list[str]) -> list[str]:
    """`[--root DIR] container ls ...` -> `[--root DIR] ps ...`; anything else as it is."""
    i = _command_index(argv)
    if i + 1 >= len(argv):
        return argv
    verbs = GROUPS.get(argv[i])
    if verbs is None or argv[i + 1] not in verbs:
        return argv
    return [*argv[:i], verbs[argv[i + 1]], *argv[i + 2 :]]
