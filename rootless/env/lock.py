"""`rsbox env lock`: what is installed in the environment's image, in rsbox.lock.

`env build` writes rsbox.lock's base (as written, its image id, its registry digest),
the image id and the build key (rootless.env.steps); `env lock` adds `packages`, read
inside the image by one `rsbox run --rm --network none` (the sealed path, like any
container; no network: listing needs none), as whichever tools the image has:

- dpkg: `dpkg-query` (Debian, Ubuntu) and rpm: `rpm -qa` (Fedora, RHEL), "name=version"
  each; apk: `apk info -v` (Alpine), "name-version"; sorted;
- pip: `PYTHON -m pip freeze --all` of `[build] pip`'s python, "name==version" (a
  requirements file);
- npm: `npm ls -g --depth=0 --json` when npm is there: {name: version}.

The lists are for people and diffs (what changed between two locks), not yet an input
of the build. A rebuild that gives another image drops them (they described the old
one); a no-op rebuild keeps them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from rootless.env.config import EnvConfig
from rootless.errors import RsboxError

_MARK = "@@rsbox-lock "
# Run by the image's /bin/sh; $1 is the pip python ("" when none). Each section starts
# with a mark line and ends with its command's status. A package manager counts only
# with its database: busybox has `rpm` and `dpkg` applets in images that have neither.
_SCRIPT = f"""\
section() {{ echo "{_MARK}$1"; shift; "$@"; echo "{_MARK}status $?"; }}
has() {{ command -v "$1" >/dev/null 2>&1 && [ -e "$2" ]; }}
if has dpkg-query /var/lib/dpkg/status; then
  section dpkg dpkg-query -W -f '${{Package}}=${{Version}}\\n'
fi
if has rpm /var/lib/rpm; then
  section rpm rpm -qa --qf '%{{NAME}}=%{{VERSION}}-%{{RELEASE}}\\n'
fi
if has apk /lib/apk/db/installed; then section apk apk info -v; fi
if [ -n "$1" ]; then section pip "$1" -m pip freeze --all --disable-pip-version-check; fi
if command -v npm >/dev/null 2>&1; then section npm npm ls -g --depth=0 --json; fi
"""


def parse_sections(text: str) -> dict[str, Any]:
    """The script's output -> {kind: sorted lines} (npm: {name: version}). A section whose command failed raises."""
    out: dict[str, Any] = {}
    kind, lines = "", []
    for line in text.splitlines():
        if not line.startswith(_MARK):
            lines.append(line)
            continue
        word = line[len(_MARK) :]
        if not word.startswith("status "):
            kind, lines = word, []
            continue
        if word != "status 0":
            raise RsboxError(
                f"listing the {kind} packages of the environment failed ({word})",
                hint="run it yourself: rsbox shell",
            )
        if kind == "npm":
            deps = json.loads("\n".join(lines) or "{}").get("dependencies", {})
            out[kind] = {name: d.get("version", "") for name, d in sorted(deps.items())}
        else:
            out[kind] = sorted(line for line in lines if line.strip())
    return out


def list_packages(cli: Sequence[str], cfg: EnvConfig, image_id: str) -> dict[str, Any]:
    python = cfg.pip.python if cfg.pip is not None else ""
    argv = [*cli, "run", "--rm", "--network", "none", image_id, "/bin/sh", "-c", _SCRIPT]
    res = subprocess.run(
        [*argv, "rsbox-lock", python],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        lines = res.stderr.strip().splitlines()
        raise RsboxError(
            f"listing the packages of {cfg.image} failed: " + (lines[-1] if lines else ""),
            hint="does the image have /bin/sh? rsbox shell to look",
        )
    return parse_sections(res.stdout)


def lock_packages(cli: Sequence[str], cfg: EnvConfig, image_id: str) -> dict[str, int]:
    """Add the package lists of the (current) image to rsbox.lock; returns the count of
    each kind."""
    from rootless.env.steps import LOCKFILE, read_lock
    from rootless.lifecycle import atomic_write_json

    packages = list_packages(cli, cfg, image_id)
    doc = read_lock(cfg)
    doc["packages"] = packages
    atomic_write_json(cfg.root / LOCKFILE, doc)
    return {kind: len(items) for kind, items in packages.items()}
