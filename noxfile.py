"""Developer sessions. They run in the environment nox itself is installed in (the
`.venv` that `./setup.sh` makes from Debian's /usr/bin/python3), so that the unprivileged
test user can run them and no session downloads anything.

    nox -s tests            the whole suite (pass pytest arguments after --)
    nox -s lint             ruff + mypy --strict
    nox -s bench            benchmarks against peers, printed as ratios
"""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests", "lint"]
PACKAGES = ["rootless", "fs", "policies"]


def _python(session: nox.Session, *args: str) -> None:
    """Every session runs the interpreter nox runs on: the project's venv."""
    session.run(sys.executable, *args, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    _python(session, "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    _python(session, "-m", "ruff", "check", *PACKAGES, "tests", "noxfile.py")
    _python(session, "-m", "ruff", "format", "--check", *PACKAGES)
    _python(session, "-m", "mypy", "--strict", *PACKAGES)


@nox.session
def bench(session: nox.Session) -> None:
    _python(session, "-m", "tests.bench", *session.posargs)
