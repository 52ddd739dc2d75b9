"""Errors raised by `policies`.

`policies` never imports `rootless`: the launcher maps `PolicyError` onto its own error
tree with `raise ... from exc`.
"""

from __future__ import annotations


class PolicyError(ValueError):
    """A seccomp profile is malformed or cannot be compiled.

    `path` is the JSON path of the offending value (`syscalls[3].action`), empty when the
    problem is the document as a whole; `str(err)` reads `syscalls[3].action: unknown
    action "SCMP_ACT_FOO"`.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)
