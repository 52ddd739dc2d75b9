"""Tests that switch between users, so they run as root (`.ci/run` does, after the
unprivileged suites): pytest only orchestrates, every rsbox command runs as its user
through `runuser -u USER --`. The users and the group are the ones `.ci/run` makes.
Run as any other user (the README's `nox -s tests`), these modules are left out, and the
end of the report says so."""

from __future__ import annotations

import os

import pytest

AS_ROOT = os.geteuid() == 0
collect_ignore_glob = [] if AS_ROOT else ["test_*.py"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not AS_ROOT:
        terminalreporter.write_line(
            "tests/multiuser: left out (they switch users: run them as root, as .ci/run does)"
        )
